// One rank of the binding test (test/distributed.test.ts): all-reduce, all-gather with gradient,
// broadcast, barrier; prints one JSON line of results for the parent to check.
import { ProcessGroup } from '../../src/distributed/process_group.js';
import { tensor, tidy, randn, Generator, type Tensor } from '../../src/tensor/index.js';
import { Expander } from '../../src/nn/expander.js';
import { vicregLoss } from '../../src/method/losses.js';

// Usage: node dist_binding_child.js <rank> <world size> <port>. The test runner also loads this file
// (it lives under test/), without arguments: it then does nothing.
const args = process.argv.slice(2);
if (args.length === 3) run(...(args.map(Number) as [number, number, number]));

function run(rank: number, world: number, port: number): void {
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

  // Data-parallel gradient of VICReg behind a BatchNorm expander: each rank's loss on its rows (global
  // statistics through all-gather, SyncBatchNorm), gradients averaged over ranks, against the gradient
  // one process computes on the whole global batch (every rank can compute it: the data is seeded).
  tidy(() => {
    const B = 4, G = B * world;
    const gen = new Generator(11);
    const X = randn([G, 6], { generator: gen }), Y = randn([G, 6], { generator: gen });
    const grads = (e: Expander) => e.parameters().map((p) => Array.from(p.grad!.data<'float32'>()));
    const single = new Expander([6, 8, 5], 7);
    vicregLoss(single.forward(X), single.forward(Y)).loss.backward();
    const ref = grads(single);
    const dist = new Expander([6, 8, 5], 7);
    dist.syncBatchNorm({ rank, allGather: (x: Tensor) => pg.allGather(x) });
    const rows = (t: Tensor) => t.narrow(0, rank * B, B);
    vicregLoss(dist.forward(rows(X)), dist.forward(rows(Y)), undefined, (x) => pg.allGather(x)).loss.backward();
    pg.allReduceMean(dist.parameters().map((p) => p.grad!));
    const got = grads(dist);
    // relative to the largest gradient entry: the bias before a BatchNorm has a true gradient of 0
    const scale = Math.max(...ref.flat().map(Math.abs));
    let worst = 0;
    ref.forEach((r, i) => r.forEach((v, k) => { worst = Math.max(worst, Math.abs(v - got[i]![k]!) / scale); }));
    out.vicregGradRelErr = worst;
    out.vicregGradMax = scale;
    // control: per-rank statistics (no all-gather, no SyncBatchNorm) give another gradient
    const local = new Expander([6, 8, 5], 7);
    vicregLoss(local.forward(rows(X)), local.forward(rows(Y))).loss.backward();
    pg.allReduceMean(local.parameters().map((p) => p.grad!));
    const loc = grads(local);
    out.localStatsRelErr = Math.max(...ref.flatMap((r, i) => r.map((v, k) => Math.abs(v - loc[i]![k]!) / scale)));
    local.dispose();
    // BatchNorm running statistics: from the global batch, as in one process
    out.runningMeanErr = Math.max(...Array.from(single.norms[0]!.runningMean.sub(dist.norms[0]!.runningMean).abs().data<'float32'>()));
    single.dispose(); dist.dispose();
  });

  pg.barrier();
  out.barrier = true;
  pg.destroy();
  console.log(JSON.stringify(out));
}
