// Linear probe on frozen features: multinomial logistic regression (softmax + cross-entropy) with an
// L2 penalty on the weights, on standardised features, fitted to convergence by full-batch L-BFGS.
//
// Protocol:
//  1. A seeded validation split is carved from the TRAIN features (valFraction, default 0.2).
//  2. For each L2 strength of a log grid, standardise with the fit part's mean/std, fit on the fit part,
//     measure accuracy on the validation part. The best strength wins (ties: the stronger one). While
//     the winner is the smallest (largest) strength tried, the grid is extended by a factor of 10 below
//     (above), at most maxExtend times per side; a winner still on an edge is reported (atEdge).
//  3. Standardise with the mean/std of ALL train features (never the test set's), refit with the
//     chosen strength on all train features, report the accuracy on the test features.
// Fitting: objective = mean cross-entropy + l2 / 2 * ||W||^2 (the bias is not penalised), convex;
// L-BFGS (lbfgs.ts) from zero (the sweep warm-starts each strength from its nearest neighbour's
// solution), in float64 by default, gradient computed in closed form: dL/dlogits = (softmax - onehot) / N.
// The fit runs in preconditioned coordinates (see trainLinear): features of low-rank encoders are so
// correlated that plain L-BFGS (ours or PyTorch's) stalls far from the optimum within 1,000 iterations.
import { Tensor, tensor, tidy, noGrad, cat, F } from '../tensor/index.js';
import { permutation } from '../data/rng.js';
import { lbfgs, type LbfgsOptions, type StopReason } from './lbfgs.js';

export interface Standardizer {
  /** (D) float64 */
  mean: Tensor;
  /** (D) float64, population std clamped below at 1e-6 */
  std: Tensor;
}

/** Per-dimension mean and std of `x` (N, D), in float64. The caller owns the result. */
export function fitStandardizer(x: Tensor): Standardizer {
  return noGrad(() => tidy(() => {
    const xd = x.to('float64');
    return { mean: xd.mean(0), std: xd.std(0, { correction: 0 }).clampMin(1e-6) };
  }));
}

/** (x - mean) / std in float64. */
export function standardize(x: Tensor, s: Standardizer): Tensor {
  return noGrad(() => tidy(() => x.to('float64').sub(s.mean).div(s.std)));
}

export interface TrainLinearOptions extends Pick<LbfgsOptions, 'maxIter' | 'tolGrad' | 'tolChange' | 'history'> {
  /** L2 penalty strength on the weights (default 0). */
  l2?: number;
  /** Arithmetic of the fit (default float64; float32 halves memory and time on large features). */
  dtype?: 'float64' | 'float32';
  /** Starting point (a warm start); default zeros. */
  init?: LinearModel;
  /** Precondition by the features' second moment (a change of variables; same optimum). Default true. */
  precondition?: boolean;
  /** Called after every L-BFGS iteration. */
  onIter?: (iter: number, loss: number) => void;
}

export interface LinearModel {
  /** (C, D) */
  weight: Tensor;
  /** (C) */
  bias: Tensor;
}

/** A fitted probe and how the optimiser ended. */
export interface LinearFit extends LinearModel {
  /** L-BFGS iterations and objective evaluations. */
  iterations: number;
  evaluations: number;
  /** The regularised objective at the solution (mean CE + l2/2 ||W||^2). */
  loss: number;
  /** max |gradient| at the solution. */
  gradMax: number;
  reason: StopReason;
}

function labelsTensor(y: Int32Array, device: string): Tensor {
  return tidy(() => tensor(Int32Array.from(y), [y.length]).long().to(null, device));
}

/** The regularised objective mean CE + l2/2 ||W||^2 on (x, y), in float64. */
export function linearObjective(m: LinearModel, x: Tensor, y: Int32Array, l2 = 0): number {
  return noGrad(() => tidy(() => {
    const w = m.weight.to('float64');
    const ce = F.crossEntropy(F.linear(x.to('float64'), w, m.bias.to('float64')), labelsTensor(y, x.device));
    return ce.add(w.square().sum().mul(l2 / 2)).item();
  }));
}

/**
 * L^-1 for the Cholesky factor L (lower) of A + delta I, A symmetric positive semi-definite (D x D,
 * row-major); delta grows tenfold while the factorisation meets a non-positive pivot.
 */
export function choleskyInverse(A: Float64Array, D: number, delta: number): Float64Array {
  for (let tries = 0; tries < 20; tries++, delta = Math.max(delta * 10, 1e-12)) {
    const L = new Float64Array(D * D);
    let ok = true;
    for (let j = 0; j < D && ok; j++) {
      for (let i = j; i < D; i++) {
        let s = A[i * D + j]! + (i === j ? delta : 0);
        for (let k = 0; k < j; k++) s -= L[i * D + k]! * L[j * D + k]!;
        if (i === j) {
          if (!(s > 0)) { ok = false; break; }
          L[j * D + j] = Math.sqrt(s);
        } else L[i * D + j] = s / L[j * D + j]!;
      }
    }
    if (ok) return triangularInverse(L, D);
  }
  throw new Error('linear probe: the feature second-moment matrix has no Cholesky factor (non-finite features?)');
}

/** V with V Linv = W, Linv lower triangular (back substitution over the columns, on tensors). */
function solveRight(W: Tensor, Linv: Tensor): Tensor {
  // V = W L where L = Linv^-1; L is recovered from Linv by the same triangular inversion
  const D = Linv.size(0);
  const inv = tidy(() => Linv.to('float64', 'cpu').contiguous().data<'float64'>());
  const L = triangularInverse(inv, D);
  return tidy(() => W.mm(tensor(L, [D, D]).to(W.dtype, W.device)));
}

/** Inverse of a lower-triangular D x D matrix (row-major). */
function triangularInverse(L: Float64Array, D: number): Float64Array {
  const M = new Float64Array(D * D);
  for (let j = 0; j < D; j++) {
    M[j * D + j] = 1 / L[j * D + j]!;
    for (let i = j + 1; i < D; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += L[i * D + k]! * M[k * D + j]!;
      M[i * D + j] = -s / L[i * D + i]!;
    }
  }
  return M;
}

/**
 * Fits a softmax classifier on (x (N, D), y) with numClasses classes by full-batch L-BFGS to
 * convergence. The caller owns the model (weight and bias in the fit's dtype).
 */
export function trainLinear(x: Tensor, y: Int32Array, numClasses: number, o: TrainLinearOptions = {}): LinearFit {
  const [N, D] = x.shape as [number, number];
  const C = numClasses;
  if (x.ndim !== 2) throw new Error(`linear probe: features must be (N, D), got [${x.shape.join(', ')}]`);
  if (y.length !== N) throw new Error(`linear probe: ${y.length} labels for ${N} feature rows`);
  const l2 = o.l2 ?? 0, dtype = o.dtype ?? 'float64';
  if (!(l2 >= 0) || !Number.isFinite(l2)) throw new Error(`linear probe: l2 must be a finite number >= 0, got ${l2}`);
  for (const l of y) if (!(l >= 0 && l < C)) throw new Error(`linear probe: label ${l} outside [0, ${C})`);
  const device = x.device;
  const X = noGrad(() => x.to(dtype));
  const onehot = noGrad(() => tidy(() => labelsTensor(y, device).oneHot(C).to(dtype)));
  // Preconditioning by a change of variables W = V L^-1, with L L^T = X^T X / N + delta I (Cholesky):
  // logits = Z V^T + b with Z = X L^-T (about whitened), the penalty is l2/2 ||V L^-1||^2. The objective
  // is the same function, only the coordinates change, so the optimum and the loss are unchanged; but
  // correlated features (low-rank encoders) no longer make it ill-conditioned. delta = C l2 balances
  // the two curvatures (the softmax Hessian is ~ 1/C of the second moment).
  const Linv = o.precondition === false ? null : noGrad(() => tidy(() => {
    const M = X.t().mm(X).div(N).to('float64', 'cpu').contiguous().data<'float64'>();
    let trace = 0;
    for (let i = 0; i < D; i++) trace += M[i * D + i]!;
    return tensor(choleskyInverse(M, D, C * l2 + 1e-10 * (trace / D || 1)), [D, D]).to(dtype, device);
  }));
  const Z = Linv ? noGrad(() => tidy(() => X.mm(Linv.t()))) : X;
  const theta = new Float64Array(C * (D + 1));
  if (o.init) {
    // V0 = W0 L (L = the inverse of Linv)
    const w0 = tidy(() => o.init!.weight.to(dtype, device));
    theta.set(tidy(() => (Linv ? solveRight(w0, Linv) : w0).to('float64', 'cpu').contiguous().data<'float64'>()), 0);
    w0.dispose();
    theta.set(tidy(() => o.init!.bias.to('float64', 'cpu').contiguous().data<'float64'>()), C * D);
  }
  const weightOf = (V: Tensor) => (Linv ? V.mm(Linv) : V);
  // theta = [V (C x D, row-major), b (C)]; without preconditioning V = W, the order of torch's flat [W, b]
  const objective = (th: Float64Array) => noGrad(() => tidy(() => {
    const p = tensor(th, [C * (D + 1)]).to(dtype, device);
    const V = p.narrow(0, 0, C * D).view([C, D]), b = p.narrow(0, C * D, C);
    const W = weightOf(V);
    const logp = F.logSoftmax(Z.mm(V.t()).add(b), 1);
    const f = logp.mul(onehot).sum().div(-N).add(W.square().sum().mul(l2 / 2)).item();
    const G = logp.exp().sub(onehot).div(N);
    const penalty = Linv ? W.mul(l2).mm(Linv.t()) : W.mul(l2);
    const grad = cat([G.t().mm(Z).add(penalty).flatten(), G.sum(0)]);
    return { f, grad: grad.to('float64', 'cpu').contiguous().data<'float64'>() };
  }));
  try {
    const r = lbfgs(objective, theta, {
      maxIter: o.maxIter, tolGrad: o.tolGrad, tolChange: o.tolChange, history: o.history,
      ...(o.onIter ? { onIter: (i: number, f: number) => o.onIter!(i, f) } : {}),
    });
    const weight = tidy(() => weightOf(tensor(r.x.subarray(0, C * D), [C, D]).to(dtype, device)));
    const bias = tidy(() => tensor(r.x.subarray(C * D), [C]).to(dtype, device));
    return { weight, bias, iterations: r.iterations, evaluations: r.evaluations, loss: r.f, gradMax: r.gradMax, reason: r.reason };
  } finally {
    if (Z !== X) Z.dispose();
    Linv?.dispose();
    if (X !== x) X.dispose();
    onehot.dispose();
  }
}

/** Predicted class of each row. */
export function predictLinear(m: LinearModel, x: Tensor): Int32Array {
  return noGrad(() => tidy(() => F.linear(x.to(m.weight.dtype), m.weight, m.bias).argmax(1).to('int32', 'cpu').data<'int32'>()));
}

export function accuracy(pred: Int32Array, y: Int32Array): number {
  if (pred.length !== y.length) throw new Error(`accuracy: ${pred.length} predictions for ${y.length} labels`);
  let c = 0;
  for (let i = 0; i < y.length; i++) if (pred[i] === y[i]) c++;
  return y.length ? c / y.length : NaN;
}

export const DEFAULT_L2_GRID: readonly number[] = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1];

export interface LinearProbeOptions extends Omit<TrainLinearOptions, 'l2' | 'init' | 'onIter'> {
  /** L2 strengths to start the sweep from (default DEFAULT_L2_GRID). One value: no sweep. */
  l2Grid?: number[];
  /** Extensions of the grid by a factor of 10 past a winning edge, per side (default 4; 0: fixed grid). */
  maxExtend?: number;
  /** Fraction of the train features held out (seeded) to choose the L2 strength (default 0.2). */
  valFraction?: number;
  /** Seed of the held-out split (default 0). */
  seed?: number;
  /** Number of classes (default max label + 1). */
  numClasses?: number;
  /** Called after each fit: the sweep's (phase 'sweep', with valTop1) and the final one. */
  onFit?: (e: ProbeFitEvent) => void;
  /** Called after every L-BFGS iteration of every fit. */
  onIter?: (e: { phase: 'sweep' | 'final'; l2: number; iter: number; loss: number }) => void;
}

export interface ProbeFitEvent {
  phase: 'sweep' | 'final';
  l2: number;
  /** 1-based count of fits so far in this phase. */
  fit: number;
  iterations: number;
  loss: number;
  reason: StopReason;
  seconds: number;
  valTop1?: number;
}

export interface SweepEntry {
  l2: number;
  valTop1: number;
  /** L-BFGS iterations of this fit (warm-started from the nearest strength already fitted). */
  iterations: number;
}

export interface LinearProbeResult {
  /** Test accuracy of the final probe (NaN without test labels). */
  top1: number;
  /** Accuracy of the final probe on its own training features. */
  trainTop1: number;
  /** The chosen L2 strength. */
  l2: number;
  /** True when the chosen strength is the smallest or largest tried after all extensions (the optimum may lie beyond). */
  atEdge: boolean;
  /** Validation accuracy of each strength tried, by increasing strength. */
  sweep: SweepEntry[];
  /** The final fit (all train features, chosen strength, from zero): iterations, objective, stop reason. */
  iterations: number;
  finalLoss: number;
  gradMax: number;
  stopReason: StopReason;
  nFit: number;
  nVal: number;
  /** Test predictions of the final probe. */
  predictions: Int32Array;
  /** Train mean / std used to standardise both train and test features. */
  mean: number[];
  std: number[];
}

function subset(x: Tensor, idx: Int32Array): Tensor {
  return tidy(() => x.indexSelect(0, tensor(idx, [idx.length]).long().to(null, x.device)));
}

function disposeModel(m: LinearModel): void {
  m.weight.dispose();
  m.bias.dispose();
}

/** 1e-5 / 10 is 1.0000000000000002e-6 in floating point: 1e-6 reads better in reports. */
const tidyNumber = (v: number) => Number(v.toPrecision(12));

/** The winner of a sweep: best validation accuracy, ties to the stronger penalty. */
function bestOf(sweep: SweepEntry[]): SweepEntry {
  let best = sweep[0]!;
  for (const s of sweep) if (s.valTop1 > best.valTop1 || (s.valTop1 === best.valTop1 && s.l2 > best.l2)) best = s;
  return best;
}

/** Runs the linear-probe protocol (see the file comment) on precomputed features. */
export function linearProbe(trainX: Tensor, trainY: Int32Array, testX: Tensor, testY?: Int32Array | null, o: LinearProbeOptions = {}): LinearProbeResult {
  const N = trainX.size(0);
  if (trainX.ndim !== 2 || testX.ndim !== 2 || trainX.size(1) !== testX.size(1)) {
    throw new Error(`linear probe: features must be (N, D) and (M, D), got [${trainX.shape.join(', ')}] and [${testX.shape.join(', ')}]`);
  }
  if (trainY.length !== N) throw new Error(`linear probe: ${trainY.length} labels for ${N} train rows`);
  for (const l of trainY) if (l < 0) throw new Error(`linear probe: unlabelled training samples (label ${l}); the probe needs labels`);
  if (testY) {
    if (testY.length !== testX.size(0)) throw new Error(`linear probe: ${testY.length} labels for ${testX.size(0)} test rows`);
    for (const l of testY) if (l < 0) throw new Error(`linear probe: unlabelled test samples (label ${l}); accuracy needs labels`);
  }
  let C = o.numClasses ?? 0;
  for (const l of trainY) C = Math.max(C, l + 1);
  if (testY) for (const l of testY) C = Math.max(C, l + 1);
  const grid = [...new Set(o.l2Grid ?? DEFAULT_L2_GRID)].sort((a, b) => a - b);
  if (grid.length === 0) throw new Error('linear probe: empty L2 grid');
  for (const l2 of grid) if (!(l2 >= 0) || !Number.isFinite(l2)) throw new Error(`linear probe: L2 strengths must be finite and >= 0, got ${l2}`);
  const maxExtend = o.maxExtend ?? 4;
  if (!Number.isInteger(maxExtend) || maxExtend < 0) throw new Error(`linear probe: maxExtend must be an integer >= 0, got ${maxExtend}`);
  const seed = o.seed ?? 0;
  const fitOpts: TrainLinearOptions = { maxIter: o.maxIter, tolGrad: o.tolGrad, tolChange: o.tolChange, history: o.history, dtype: o.dtype, precondition: o.precondition };
  const timed = <T>(f: () => T): [T, number] => { const t0 = performance.now(); const r = f(); return [r, (performance.now() - t0) / 1000]; };

  // 1-2: choose the L2 strength on a seeded split of the train features
  const sweep: SweepEntry[] = [];
  let nFit = N, nVal = 0;
  let chosen = grid[0]!, atEdge = false;
  if (grid.length > 1) {
    const frac = o.valFraction ?? 0.2;
    if (!(frac > 0 && frac < 1)) throw new Error(`linear probe: valFraction must be in (0, 1), got ${frac}`);
    nVal = Math.max(1, Math.round(N * frac));
    nFit = N - nVal;
    if (nFit < 1) throw new Error(`linear probe: ${N} training samples are too few to hold out a validation split`);
    const perm = permutation(N, seed, -2);
    const valIdx = perm.slice(0, nVal).sort(), fitIdx = perm.slice(nVal).sort();
    const yFit = Int32Array.from(fitIdx, (i) => trainY[i]!), yVal = Int32Array.from(valIdx, (i) => trainY[i]!);
    const xFitRaw = subset(trainX, fitIdx), xValRaw = subset(trainX, valIdx);
    const st = fitStandardizer(xFitRaw);
    const xFit = standardize(xFitRaw, st), xVal = standardize(xValRaw, st);
    xFitRaw.dispose(); xValRaw.dispose();
    const models = new Map<number, LinearModel>();
    try {
      const fit = (l2: number, init?: LinearModel) => {
        const [m, s] = timed(() => trainLinear(xFit, yFit, C, {
          ...fitOpts, l2, init, ...(o.onIter ? { onIter: (iter: number, loss: number) => o.onIter!({ phase: 'sweep', l2, iter, loss }) } : {}),
        }));
        const e = { l2, valTop1: accuracy(predictLinear(m, xVal), yVal), iterations: m.iterations };
        models.set(l2, { weight: m.weight, bias: m.bias });
        sweep.push(e);
        sweep.sort((a, b) => a.l2 - b.l2);
        o.onFit?.({ phase: 'sweep', l2, fit: sweep.length, iterations: m.iterations, loss: m.loss, reason: m.reason, seconds: s, valTop1: e.valTop1 });
      };
      // strongest first: each weaker penalty starts from its neighbour's solution (a continuation path)
      for (let i = grid.length - 1; i >= 0; i--) fit(grid[i]!, models.get(grid[i + 1]!));
      let below = 0, above = 0;
      for (;;) {
        const best = bestOf(sweep), lo = sweep[0]!, hi = sweep[sweep.length - 1]!;
        if (best === lo && lo.l2 > 0 && below < maxExtend) { below++; fit(tidyNumber(lo.l2 / 10), models.get(lo.l2)); }
        else if (best === hi && above < maxExtend) { above++; fit(hi.l2 === 0 ? 1e-6 : tidyNumber(hi.l2 * 10), models.get(hi.l2)); }
        else { chosen = best.l2; atEdge = (best === lo && lo.l2 > 0) || best === hi; break; }
      }
    } finally {
      for (const t of [xFit, xVal, st.mean, st.std]) t.dispose();
      for (const m of models.values()) disposeModel(m);
    }
  }

  // 3: refit on all train features, standardised with train statistics only
  const st = fitStandardizer(trainX);
  const xTr = standardize(trainX, st), xTe = standardize(testX, st);
  try {
    const [m, s] = timed(() => trainLinear(xTr, trainY, C, {
      ...fitOpts, l2: chosen, ...(o.onIter ? { onIter: (iter: number, loss: number) => o.onIter!({ phase: 'final', l2: chosen, iter, loss }) } : {}),
    }));
    o.onFit?.({ phase: 'final', l2: chosen, fit: 1, iterations: m.iterations, loss: m.loss, reason: m.reason, seconds: s });
    const trainTop1 = accuracy(predictLinear(m, xTr), trainY);
    const predictions = predictLinear(m, xTe);
    disposeModel(m);
    return {
      top1: testY ? accuracy(predictions, testY) : NaN, trainTop1, l2: chosen, atEdge, sweep,
      iterations: m.iterations, finalLoss: m.loss, gradMax: m.gradMax, stopReason: m.reason, nFit, nVal, predictions,
      mean: tidy(() => st.mean.to(null, 'cpu').toArray()), std: tidy(() => st.std.to(null, 'cpu').toArray()),
    };
  } finally {
    for (const t of [xTr, xTe, st.mean, st.std]) t.dispose();
  }
}
