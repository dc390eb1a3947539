// The linear probe on an embeddings file (`cjepa embed` output, labelled): time, L-BFGS iterations and
// final loss of each fit, held-out and test accuracy; optionally the same final fit by PyTorch's
// L-BFGS (strong Wolfe, float64) for comparison.
//
//   node dist/bench/linear_probe.js --embeddings emb.safetensors [--val-split 0.1] [--seed 0]
//        [--dtype float64|float32] [--l2 1e-5,1e-4,...] [--torch]
//
// The test set is the seeded --val-split of the rows, as `cjepa eval --val-split` takes it from a dataset.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tensor, tidy } from '../src/tensor/index.js';
import { loadTensors, saveTensors } from '../src/io/tensors.js';
import { permutation } from '../src/data/rng.js';
import { linearProbe } from '../src/eval/linear_probe.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const file = arg('embeddings');
if (!file) throw new Error('usage: linear_probe.js --embeddings <file.safetensors> [--val-split 0.1] [--seed 0] [--dtype float64|float32] [--l2 list] [--torch]');
const valSplit = Number(arg('val-split') ?? 0.1), seed = Number(arg('seed') ?? 0);
const dtype = (arg('dtype') ?? 'float64') as 'float64' | 'float32';
const l2Grid = arg('l2')?.split(',').map(Number);

const { tensors } = loadTensors(file);
const x = tensors['embeddings']!, labels = tensors['labels']!.to('int32').data<'int32'>();
const N = x.size(0), nTe = Math.round(N * valSplit);
const perm = permutation(N, seed, -1);
const teIdx = perm.slice(0, nTe).sort(), trIdx = perm.slice(nTe).sort();
const rows = (idx: Int32Array) => tidy(() => x.indexSelect(0, tensor(idx, [idx.length]).long()));
const trX = rows(trIdx), teX = rows(teIdx);
const trY = Int32Array.from(trIdx, (i) => labels[i]!), teY = Int32Array.from(teIdx, (i) => labels[i]!);
console.log(`features ${N} x ${x.size(1)}: train ${trIdx.length}, test ${nTe}, dtype ${dtype}`);

const t0 = performance.now();
const r = linearProbe(trX, trY, teX, teY, {
  dtype, ...(l2Grid ? { l2Grid } : {}),
  onFit: (e) => console.log(`  ${e.phase} l2 ${e.l2}: ${e.iterations} iterations (${e.reason}), loss ${e.loss.toFixed(6)}, ${e.seconds.toFixed(1)} s` +
    (e.valTop1 !== undefined ? `, held-out ${(100 * e.valTop1).toFixed(2)}%` : '')),
});
console.log(`probe: test ${(100 * r.top1).toFixed(2)}%, train ${(100 * r.trainTop1).toFixed(2)}%, l2 ${r.l2}${r.atEdge ? ' (at edge)' : ''}, ` +
  `final fit ${r.iterations} iterations, loss ${r.finalLoss.toFixed(6)}; total ${((performance.now() - t0) / 1000).toFixed(1)} s`);

if (process.argv.includes('--torch')) {
  const dir = mkdtempSync(join(tmpdir(), 'cjepa-probe-'));
  try {
    const inp = join(dir, 'in.safetensors');
    saveTensors(inp, { trX, teX, trY: tensor(trY, [trY.length]).long(), teY: tensor(teY, [teY.length]).long() });
    const py = `
import sys, time, torch, torch.nn.functional as F
sys.path.insert(0, 'test/py'); import st
d = st.load('${inp}'); l2 = ${r.l2}
xtr, xte = d['trX'].double(), d['teX'].double()
m, s = xtr.mean(0), xtr.std(0, unbiased=False).clamp_min(1e-6)
xtr, xte = (xtr - m) / s, (xte - m) / s
C = int(max(d['trY'].max(), d['teY'].max())) + 1
W = torch.zeros(C, xtr.shape[1], dtype=torch.float64, requires_grad=True); b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
opt = torch.optim.LBFGS([W, b], lr=1, max_iter=1000, tolerance_grad=1e-6, tolerance_change=1e-10, history_size=20, line_search_fn='strong_wolfe')
obj = lambda: F.cross_entropy(xtr @ W.t() + b, d['trY']) + l2 / 2 * (W ** 2).sum()
def closure():
    opt.zero_grad(); l = obj(); l.backward(); return l
t = time.time(); opt.step(closure); t = time.time() - t
with torch.no_grad():
    acc = ((xte @ W.t() + b).argmax(1) == d['teY']).double().mean().item()
    print(f"torch LBFGS final fit: {opt.state[opt._params[0]]['n_iter']} iterations, loss {obj().item():.6f}, test {100 * acc:.2f}%, {t:.1f} s")
`;
    const p = spawnSync(process.env.CJEPA_TEST_PYTHON ?? '/usr/bin/python3', ['-c', py], { encoding: 'utf8' });
    process.stdout.write(p.stdout + p.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
