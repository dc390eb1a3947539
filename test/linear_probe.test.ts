// The converged linear probe: L-BFGS on known problems, parity of the fitted probe (objective at the
// optimum, test accuracy) with torch.optim.LBFGS(line_search_fn='strong_wolfe') in float64 on a fixed,
// non-toy feature set, and the L2 sweep that extends past a winning edge.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Generator, randn, tensor, tidy, type Tensor } from '../src/tensor/index.js';
import { lbfgs, cubicInterpolate } from '../src/eval/lbfgs.js';
import { linearProbe, trainLinear, linearObjective, choleskyInverse, type ProbeFitEvent } from '../src/eval/linear_probe.js';
import { runTorch } from './util/pytorch.js';

/** Rosenbrock in n dims: sum 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2, minimum 0 at all ones. */
function rosenbrock(x: Float64Array): { f: number; grad: Float64Array } {
  const n = x.length, g = new Float64Array(n);
  let f = 0;
  for (let i = 0; i < n - 1; i++) {
    const a = x[i + 1]! - x[i]! * x[i]!, b = 1 - x[i]!;
    f += 100 * a * a + b * b;
    g[i] += -400 * a * x[i]! - 2 * b;
    g[i + 1] += 200 * a;
  }
  return { f, grad: g };
}

test('L-BFGS: Rosenbrock (2 and 20 dims) to the minimum; a convex quadratic in few iterations; caps are honoured', () => {
  for (const n of [2, 20]) {
    const x = Float64Array.from({ length: n }, (_, i) => (i % 2 ? 1 : -1.2));
    const r = lbfgs(rosenbrock, x, { tolGrad: 1e-9, tolChange: 0 });
    assert.equal(r.reason, 'gradient', `n=${n}: ${r.reason} after ${r.iterations}`);
    assert.ok(r.f < 1e-14, `n=${n}: f ${r.f}`);
    for (const v of r.x) assert.ok(Math.abs(v - 1) < 1e-6, `n=${n}: x ${Array.from(r.x)}`);
    assert.ok(r.iterations < 200 && r.evaluations <= 1.25 * r.iterations + 30, `n=${n}: ${r.iterations} iterations, ${r.evaluations} evaluations`);
  }
  // f = 1/2 sum_i i (x_i - i)^2: L-BFGS with enough history solves it in about n iterations
  const quad = (x: Float64Array) => {
    let f = 0;
    const g = x.map((v, i) => (i + 1) * (v - i));
    x.forEach((v, i) => { f += 0.5 * (i + 1) * (v - i) ** 2; });
    return { f, grad: g };
  };
  const q = lbfgs(quad, new Float64Array(10), { tolGrad: 1e-10, tolChange: 0, history: 20 });
  assert.ok(q.iterations <= 25, `quadratic: ${q.iterations} iterations`);
  q.x.forEach((v, i) => assert.ok(Math.abs(v - i) < 1e-9));
  const capped = lbfgs(rosenbrock, Float64Array.from([-1.2, 1]), { maxIter: 3 });
  assert.deepEqual([capped.reason, capped.iterations], ['max-iter', 3]);
  // already optimal: no iteration
  assert.equal(lbfgs(rosenbrock, Float64Array.from([1, 1])).iterations, 0);
  // the cubic step is the minimiser of the interpolating cubic: exact for a quadratic
  assert.ok(Math.abs(cubicInterpolate(0, 4, -4, 4, 4, 4) - 2) < 1e-12);
  assert.throws(() => lbfgs(() => ({ f: NaN, grad: new Float64Array(1) }), new Float64Array(1)), /objective is NaN/);
});

// ---------------------------------------------------------------- parity with PyTorch
// 4,000 rows (3,000 train / 1,000 test) of 64 dims in 10 overlapping classes, columns on scales 0.1..10
// with offsets (standardisation matters), from a seeded libtorch generator.
const NTR = 3000, NTE = 1000, D = 64, C = 10, L2S = [1e-4, 1e-2];
const g = new Generator(2024);
const Y = Int32Array.from({ length: NTR + NTE }, (_, i) => (i * 7 + (i >> 3)) % C);
const X = tidy(() => {
  const centres = randn([C, D], { generator: g }).mul(0.35);
  const scale = tensor(Float32Array.from({ length: D }, (_, d) => 0.1 * 100 ** (d / (D - 1))), [D]);
  const offset = randn([D], { generator: g }).mul(3);
  return centres.index(tensor(Y, [Y.length]).long()).add(randn([NTR + NTE, D], { generator: g })).mul(scale).add(offset);
});
const trX = X.narrow(0, 0, NTR), teX = X.narrow(0, NTR, NTE);
const trY = Y.slice(0, NTR), teY = Y.slice(NTR);
let ref: Record<string, Tensor> = {};

before(() => {
  ref = runTorch(`
import torch.nn.functional as F
x = inp['x'].double(); y = inp['y']
xtr, ytr, xte, yte = x[:${NTR}], y[:${NTR}], x[${NTR}:], y[${NTR}:]
mean, std = xtr.mean(0), xtr.std(0, unbiased=False).clamp_min(1e-6)
xtr, xte = (xtr - mean) / std, (xte - mean) / std
for l2 in ${JSON.stringify(L2S)}:
    W = torch.zeros(${C}, ${D}, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(${C}, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=20000, max_eval=40000, tolerance_grad=1e-13, tolerance_change=1e-16,
                            history_size=20, line_search_fn='strong_wolfe')
    objective = lambda: F.cross_entropy(xtr @ W.t() + b, ytr) + l2 / 2 * (W ** 2).sum()
    def closure():
        opt.zero_grad()
        l = objective()
        l.backward()
        return l
    opt.step(closure)
    with torch.no_grad():
        out[f'{l2}.objective'] = objective().reshape(1)
        out[f'{l2}.test_top1'] = ((xte @ W.t() + b).argmax(1) == yte).double().mean().reshape(1)
        out[f'{l2}.train_top1'] = ((xtr @ W.t() + b).argmax(1) == ytr).double().mean().reshape(1)
        out[f'{l2}.iterations'] = torch.tensor([opt.state[opt._params[0]]['n_iter']], dtype=torch.float64)
`, { x: X, y: tensor(Y, [Y.length]).long() });
});

test('linear probe parity with torch.optim.LBFGS (strong Wolfe, float64): objective at the optimum and top-1', () => {
  for (const l2 of L2S) {
    const r = linearProbe(trX, trY, teX, teY, { l2Grid: [l2] });
    const best = ref[`${l2}.objective`]!.item(), theirTop1 = ref[`${l2}.test_top1`]!.item();
    const rel = (r.finalLoss - best) / best;
    if (process.env.CJEPA_TEST_VERBOSE) console.error(`l2 ${l2}: rel ${rel}, ours ${r.iterations} its (${r.stopReason}), torch ${ref[`${l2}.iterations`]!.item()}`);
    assert.ok(Math.abs(rel) < 1e-6, `l2 ${l2}: objective ${r.finalLoss} vs PyTorch ${best} (rel ${rel.toExponential(2)}, ${r.iterations} iterations, ${r.stopReason})`);
    assert.ok(Math.abs(r.top1 - theirTop1) <= 0.005, `l2 ${l2}: top-1 ${r.top1} vs PyTorch ${theirTop1}`);
    assert.ok(Math.abs(r.trainTop1 - ref[`${l2}.train_top1`]!.item()) <= 0.005);
    assert.ok(r.iterations > 5 && r.iterations < 1000, `${r.iterations} iterations`);
    assert.ok(r.gradMax <= 1e-6 || r.stopReason === 'change', `${r.stopReason}, max |g| ${r.gradMax}`);
    // the task is not trivial: well above chance (0.1), well below perfect
    assert.ok(r.top1 > 0.3 && r.top1 < 0.9, `top-1 ${r.top1}`);
  }
});

test('trainLinear: float32 lands near the float64 optimum; a warm start needs fewer iterations; capped fits are worse', () => {
  const x = tidy(() => { const m = trX.mean(0), s = trX.std(0, { correction: 0 }); return trX.sub(m).div(s); });
  const l2 = 1e-3;
  const f64 = trainLinear(x, trY, C, { l2 });
  const f32 = trainLinear(x, trY, C, { l2, dtype: 'float32' });
  assert.equal(f32.weight.dtype, 'float32');
  const o64 = linearObjective(f64, x, trY, l2), o32 = linearObjective(f32, x, trY, l2);
  assert.ok(Math.abs(o64 - f64.loss) < 1e-9 * o64, `reported loss ${f64.loss} vs recomputed ${o64}`);
  assert.ok(o32 - o64 < 1e-5 * o64 && o32 >= o64 - 1e-9, `float32 ${o32} vs float64 ${o64}`);
  const warm = trainLinear(x, trY, C, { l2: 2e-3, init: f64 }), cold = trainLinear(x, trY, C, { l2: 2e-3 });
  assert.ok(warm.iterations < cold.iterations, `warm ${warm.iterations} vs cold ${cold.iterations}`);
  assert.ok(Math.abs(warm.loss - cold.loss) < 1e-8 * cold.loss);
  const short = trainLinear(x, trY, C, { l2, maxIter: 3 });
  assert.equal(short.reason, 'max-iter');
  assert.ok(short.loss - f64.loss > 1e-3, `3 iterations: ${short.loss} vs ${f64.loss}`);
  assert.throws(() => trainLinear(x, trY, 5, { l2 }), /label \d outside \[0, 5\)/);
  for (const m of [f64, f32, warm, cold, short]) { m.weight.dispose(); m.bias.dispose(); }
  x.dispose();
});

test('preconditioning (W = V L^-1, L L^T = X^T X / N + C l2 I): same optimum, far fewer iterations on correlated features', () => {
  // A: random SPD; L^-1 (A + delta I) L^-T = I
  const Dm = 12, R = randn([Dm, Dm], { generator: g });
  const A = tidy(() => R.mm(R.t()).to('float64')), Ad = A.contiguous().data<'float64'>();
  const Li = tensor(choleskyInverse(Ad, Dm, 0.5), [Dm, Dm]);
  const I = tidy(() => Li.mm(A.add(tensor(Float64Array.from({ length: Dm * Dm }, (_, k) => (k % (Dm + 1) === 0 ? 0.5 : 0)), [Dm, Dm]))).mm(Li.t()));
  I.toArray().forEach((v, k) => assert.ok(Math.abs(v - (k % (Dm + 1) === 0 ? 1 : 0)) < 1e-10, `entry ${k}: ${v}`));
  Li.toArray().forEach((v, k) => { if (k % Dm > Math.floor(k / Dm)) assert.equal(v, 0); });
  // features mixed by a matrix with singular values 1 .. 1e-2: standardising does not undo the correlation
  const x = tidy(() => {
    const U = randn([D, D], { generator: g }).div(Math.sqrt(D));
    const s = tensor(Float32Array.from({ length: D }, (_, d) => 0.01 ** (d / (D - 1))), [D]);
    const mixed = trX.sub(trX.mean(0)).div(trX.std(0)).mm(U.mul(s));
    return mixed.sub(mixed.mean(0)).div(mixed.std(0, { correction: 0 })).to('float64');
  });
  const l2 = 1e-4;
  const pre = trainLinear(x, trY, C, { l2 }), plain = trainLinear(x, trY, C, { l2, precondition: false, maxIter: 5000 });
  assert.ok(Math.abs(pre.loss - plain.loss) < 1e-7 * plain.loss, `preconditioned ${pre.loss} vs plain ${plain.loss}`);
  assert.ok(Math.abs(linearObjective(pre, x, trY, l2) - pre.loss) < 1e-9 * pre.loss, 'the weights map back to W');
  assert.ok(pre.iterations * 3 < plain.iterations, `iterations: preconditioned ${pre.iterations}, plain ${plain.iterations}`);
  // a warm start goes through the change of variables too
  const warm = trainLinear(x, trY, C, { l2, init: pre });
  assert.ok(warm.iterations <= 2 && Math.abs(warm.loss - pre.loss) < 1e-9 * pre.loss, `warm restart: ${warm.iterations} iterations`);
  for (const m of [pre, plain, warm]) { m.weight.dispose(); m.bias.dispose(); }
  for (const t of [R, A, Li, I, x]) t.dispose();
});

test('L2 sweep: extends past a winning edge until the choice is interior, reports atEdge when capped', () => {
  // a heavy penalty under-fits these features, so a grid of strong penalties wins at its low edge
  const fits: ProbeFitEvent[] = [];
  const r = linearProbe(trX, trY, teX, teY, { l2Grid: [10, 100], onFit: (e) => fits.push(e) });
  const l2s = r.sweep.map((s) => s.l2);
  assert.ok(l2s[0]! < r.l2 && r.l2 < l2s.at(-1)!, `chosen ${r.l2} interior of ${l2s.join(', ')}`);
  assert.equal(r.atEdge, false);
  assert.ok(r.sweep.length > 2 && l2s.every((v, i) => i === 0 || v > l2s[i - 1]!), `sweep ${l2s.join(', ')}`);
  for (const s of r.sweep) assert.ok(Math.abs(Math.log10(s.l2) - Math.round(Math.log10(s.l2))) < 1e-9, `factor-10 grid: ${s.l2}`);
  assert.deepEqual(fits.map((f) => f.phase), [...r.sweep.map(() => 'sweep'), 'final']);
  assert.equal(fits.at(-1)!.iterations, r.iterations);
  const best = Math.max(...r.sweep.map((s) => s.valTop1));
  assert.equal(r.sweep.find((s) => s.l2 === r.l2)!.valTop1, best);
  // no extension allowed: the edge winner is reported
  const capped = linearProbe(trX, trY, teX, teY, { l2Grid: [10, 100], maxExtend: 0 });
  assert.deepEqual([capped.l2, capped.atEdge, capped.sweep.length], [10, true, 2]);
  // one value: no sweep, no edge
  const one = linearProbe(trX, trY, teX, teY, { l2Grid: [1e-3] });
  assert.deepEqual([one.sweep.length, one.atEdge, one.nVal], [0, false, 0]);
});
