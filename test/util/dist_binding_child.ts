// One rank of the binding test (test/distributed.test.ts): all-reduce, all-gather with gradient,
// broadcast, barrier; prints one JSON line of results for the parent to check.
import { ProcessGroup } from '../../src/distributed/process_group.js';
import { tensor, tidy } from '../../src/tensor/index.js';

const [rank, world, port] = process.argv.slice(2).map(Number) as [number, number, number];
const pg = ProcessGroup.init({ rank, worldSize: world, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 20_000 });
const out: Record<string, unknown> = { rank };

// all-reduce: rank r contributes [r+1, 10(r+1)]
const a = tensor(new Float32Array([rank + 1, 10 * (rank + 1)]), [2]);
pg.allReduce(a);
out.allReduce = Array.from(a.data<'float32'>());
const m = tensor(new Float32Array([rank]), [1]);
pg.allReduce(m, 'max');
out.allReduceMax = m.item();

// bucketed mean over tensors of different shapes, with a tiny bucket cap (several buckets)
const ts = [tensor(new Float32Array([rank, 2 * rank, 3]), [3]), tensor(new Float32Array([4 * rank, 1, 1, rank]), [2, 2])];
out.buckets = pg.allReduceMean(ts, 8);
out.mean = ts.map((t) => Array.from(t.data<'float32'>()));

// broadcast from rank 1 (when there is one)
const b = tensor(new Float32Array([rank * 7 + 1, -rank]), [2]);
pg.broadcast([b], world - 1);
out.broadcast = Array.from(b.data<'float32'>());

// all-gather with gradient: x_r (2, 3) = r + row/10 + col/100; loss = sum(w * gathered) with fixed w,
// so d loss / d x_r = sum over ranks of w's rows of rank r (each rank's loss uses the gathered tensor)
tidy(() => {
  const n = 2, d = 3;
  const xs = new Float32Array(n * d).map((_, i) => rank + Math.floor(i / d) / 10 + (i % d) / 100);
  const x = tensor(xs, [n, d], { requiresGrad: true });
  const g = pg.allGather(x);
  out.gathered = Array.from(g.data<'float32'>());
  out.gatheredShape = g.shape;
  const w = tensor(new Float32Array(world * n * d).map((_, i) => (i + 1) * (rank + 1)), [world * n, d]);
  g.mul(w).sum().backward();
  out.grad = Array.from(x.grad!.data<'float32'>());
});

pg.barrier();
out.barrier = true;
pg.destroy();
console.log(JSON.stringify(out));
