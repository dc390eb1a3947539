// Gloo all-reduce of one gradient-sized fp32 buffer between local ranks (loopback): the transfer part of
// the per-step communication, without the waiting for a slower rank that a training step adds.
//   node dist/bench/allreduce.js <floats> [iterations]   (starts 2 ranks itself)
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ProcessGroup } from '../src/distributed/process_group.js';
import { freePort } from '../src/distributed/launch.js';
import { zeros } from '../src/tensor/index.js';

const [n = 4_271_808, iters = 20] = process.argv.slice(2, 4).map(Number);
if (process.env.RANK === undefined) {
  const port = String(await freePort());
  const self = fileURLToPath(import.meta.url);
  await Promise.all([0, 1].map((r) => new Promise((res) => spawn(process.execPath, [self, String(n), String(iters)], {
    stdio: 'inherit', env: { ...process.env, RANK: String(r), WORLD_SIZE: '2', MASTER_PORT: port, CJEPA_THREADS: '1' },
  }).on('exit', res))));
} else {
  const rank = Number(process.env.RANK);
  const pg = ProcessGroup.init({ rank, worldSize: 2, masterAddr: '127.0.0.1', masterPort: Number(process.env.MASTER_PORT) });
  const g = zeros([n]);
  const ms: number[] = [];
  for (let i = 0; i < iters + 2; i++) {
    pg.barrier();
    const t0 = performance.now();
    pg.allReduceMean([g]);
    if (i >= 2) ms.push(performance.now() - t0); // the first two set up Gloo's buffers
  }
  ms.sort((a, b) => a - b);
  if (rank === 0) console.log(`all-reduce of ${n} fp32 (${(n * 4 / 2 ** 20).toFixed(1)} MiB), 2 ranks, loopback: median ${ms[ms.length >> 1]!.toFixed(1)} ms, min ${ms[0]!.toFixed(1)} ms over ${iters}`);
  pg.destroy();
}
