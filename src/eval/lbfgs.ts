// Full-batch L-BFGS with a strong-Wolfe line search, for smooth convex problems of modest size (the
// linear probe: C x (D + 1) parameters). The parameters, gradients and history live in Float64Arrays;
// only the objective touches tensors, so the optimiser's own arithmetic is exact float64 and cheap.
//
// The iteration follows torch.optim.LBFGS (two-loop recursion, curvature pairs kept only when
// y.s > 1e-10, H0 = s.y / y.y, first step min(1, 1 / ||g||_1), the same strong-Wolfe search with cubic
// interpolation and zoom), so the two take comparable paths. Stopping differs a little: besides
// PyTorch's tests (max |g| <= tolGrad, the step or the change in f below tolChange) the change in f is
// taken relative to max(1, |f|), and a line search that makes no progress ends the run instead of
// stepping to a worse point.

export interface LbfgsOptions {
  /** Maximum iterations (default 1000). */
  maxIter?: number;
  /** Maximum objective evaluations (default 2 maxIter + 50: line searches rarely need a second evaluation). */
  maxEval?: number;
  /** Curvature pairs kept (default 20). */
  history?: number;
  /** Stop when max |gradient| <= tolGrad (default 1e-6). */
  tolGrad?: number;
  /** Stop when |f_k - f_(k-1)| <= tolChange * max(1, |f_k|), or when the step's max |entry| <= tolChange (default 1e-10). */
  tolChange?: number;
  /** Line-search trial steps per iteration (default 25). */
  maxLineSearch?: number;
  /** Called after every iteration. */
  onIter?: (iter: number, f: number, gradMax: number) => void;
}

export type StopReason = 'gradient' | 'change' | 'step' | 'max-iter' | 'max-eval' | 'line-search';

export interface LbfgsResult {
  /** The minimiser found (the array passed in, updated in place). */
  x: Float64Array;
  /** Objective at x. */
  f: number;
  /** max |gradient| at x. */
  gradMax: number;
  iterations: number;
  evaluations: number;
  reason: StopReason;
}

/** f(x) and its gradient; `grad` may be written into the array passed, or returned fresh. */
export type Objective = (x: Float64Array) => { f: number; grad: Float64Array };

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
function absMax(a: Float64Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}
function absSum(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]!);
  return s;
}

/** Minimiser of the cubic through (x1, f1, g1), (x2, f2, g2), clamped to bounds (default [x1, x2] sorted). */
export function cubicInterpolate(x1: number, f1: number, g1: number, x2: number, f2: number, g2: number, bounds?: [number, number]): number {
  const [lo, hi] = bounds ?? (x1 <= x2 ? [x1, x2] : [x2, x1]);
  const d1 = g1 + g2 - (3 * (f1 - f2)) / (x1 - x2);
  const d2sq = d1 * d1 - g1 * g2;
  if (d2sq >= 0) {
    const d2 = Math.sqrt(d2sq);
    const t = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2)) : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
    if (Number.isFinite(t)) return Math.min(Math.max(t, lo), hi);
  }
  return (lo + hi) / 2;
}

interface Point { t: number; f: number; g: Float64Array; gtd: number }

/**
 * Strong-Wolfe line search along d from x (objective f, gradient g, slope gtd < 0), first trial t.
 * Returns the accepted point (the best bracket end when the Wolfe conditions were not met).
 */
function strongWolfe(obj: (t: number) => { f: number; grad: Float64Array }, d: Float64Array, t: number, f: number, g: Float64Array, gtd: number,
  tolChange: number, maxLs: number, c1 = 1e-4, c2 = 0.9): Point & { evals: number } {
  const dNorm = absMax(d);
  const at = (s: number): Point => {
    const r = obj(s);
    return { t: s, f: r.f, g: Float64Array.from(r.grad), gtd: dot(r.grad, d) };
  };
  let cur = at(t);
  let evals = 1;
  let prev: Point = { t: 0, f, g, gtd };
  let bracket: [Point, Point] | null = null;
  let done: Point | null = null;
  let lsIter = 0;
  while (lsIter < maxLs) {
    if (!(cur.f <= f + c1 * cur.t * gtd) || (lsIter > 1 && cur.f >= prev.f)) { bracket = [prev, cur]; break; }
    if (Math.abs(cur.gtd) <= -c2 * gtd) { done = cur; break; }
    if (cur.gtd >= 0) { bracket = [prev, cur]; break; }
    // extrapolate
    const next = cubicInterpolate(prev.t, prev.f, prev.gtd, cur.t, cur.f, cur.gtd, [cur.t + 0.01 * (cur.t - prev.t), cur.t * 10]);
    prev = cur;
    cur = at(next);
    evals++;
    lsIter++;
  }
  if (done) return { ...done, evals };
  if (!bracket) return { ...(cur.f < f ? cur : { t: 0, f, g, gtd }), evals };
  // zoom: shrink the bracket [lo, hi] (lo = the lower objective) until the strong Wolfe conditions hold
  let insufficient = false;
  let [lo, hi] = bracket[0].f <= bracket[1].f ? [bracket[0], bracket[1]] : [bracket[1], bracket[0]];
  while (lsIter < maxLs) {
    if (Math.abs(hi.t - lo.t) * dNorm < tolChange) break;
    let s = cubicInterpolate(lo.t, lo.f, lo.gtd, hi.t, hi.f, hi.gtd);
    const bMax = Math.max(lo.t, hi.t), bMin = Math.min(lo.t, hi.t), eps = 0.1 * (bMax - bMin);
    if (Math.min(bMax - s, s - bMin) < eps) {
      // too close to an end: move away from it, unless the last try already did so
      if (insufficient || s >= bMax || s <= bMin) {
        s = Math.abs(s - bMax) < Math.abs(s - bMin) ? bMax - eps : bMin + eps;
        insufficient = false;
      } else insufficient = true;
    } else insufficient = false;
    const p = at(s);
    evals++;
    lsIter++;
    if (!(p.f <= f + c1 * p.t * gtd) || p.f >= lo.f) {
      hi = p;
      if (hi.f < lo.f) [lo, hi] = [hi, lo];
    } else {
      if (Math.abs(p.gtd) <= -c2 * gtd) return { ...p, evals };
      if (p.gtd * (hi.t - lo.t) >= 0) hi = lo;
      lo = p;
    }
  }
  return { ...lo, evals };
}

/**
 * Minimises `fn` from `x0` (updated in place). Deterministic: the same inputs give the same iterates.
 */
export function lbfgs(fn: Objective, x0: Float64Array, o: LbfgsOptions = {}): LbfgsResult {
  const maxIter = o.maxIter ?? 1000, maxEval = o.maxEval ?? 2 * maxIter + 50, m = o.history ?? 20;
  const tolGrad = o.tolGrad ?? 1e-6, tolChange = o.tolChange ?? 1e-10, maxLs = o.maxLineSearch ?? 25;
  if (!Number.isInteger(maxIter) || maxIter < 1) throw new Error(`L-BFGS: maxIter must be a positive integer, got ${maxIter}`);
  if (!Number.isInteger(m) || m < 1) throw new Error(`L-BFGS: history must be a positive integer, got ${m}`);
  const n = x0.length;
  const x = x0;
  const trial = new Float64Array(n);
  const evalAt = (base: Float64Array, t: number, d: Float64Array) => {
    for (let i = 0; i < n; i++) trial[i] = base[i]! + t * d[i]!;
    return fn(trial);
  };
  const first = fn(x);
  let f = first.f;
  let g: Float64Array = Float64Array.from(first.grad);
  if (!Number.isFinite(f)) throw new Error(`L-BFGS: the objective is ${f} at the starting point`);
  let evaluations = 1, iterations = 0;
  let gMax = absMax(g);
  if (gMax <= tolGrad) return { x, f, gradMax: gMax, iterations, evaluations, reason: 'gradient' };

  const S: Float64Array[] = [], Y: Float64Array[] = [], rho: number[] = [];
  const alpha = new Float64Array(m);
  let d = new Float64Array(n), gPrev = new Float64Array(n);
  let t = 0, hDiag = 1;
  let reason: StopReason = 'max-iter';
  const base = new Float64Array(n);
  while (iterations < maxIter) {
    iterations++;
    if (iterations > 1) {
      // curvature pair from the last step s = t d, y = g - g_prev
      const y = new Float64Array(n), s = new Float64Array(n);
      for (let i = 0; i < n; i++) { y[i] = g[i]! - gPrev[i]!; s[i] = t * d[i]!; }
      const ys = dot(y, s);
      if (ys > 1e-10) {
        if (S.length === m) { S.shift(); Y.shift(); rho.shift(); }
        S.push(s); Y.push(y); rho.push(1 / ys);
        hDiag = ys / dot(y, y);
      }
    }
    // two-loop recursion: d = -H g
    for (let i = 0; i < n; i++) d[i] = -g[i]!;
    for (let k = S.length - 1; k >= 0; k--) {
      const a = dot(S[k]!, d) * rho[k]!;
      alpha[k] = a;
      const yk = Y[k]!;
      for (let i = 0; i < n; i++) d[i] -= a * yk[i]!;
    }
    for (let i = 0; i < n; i++) d[i] *= hDiag;
    for (let k = 0; k < S.length; k++) {
      const b = dot(Y[k]!, d) * rho[k]!;
      const sk = S[k]!, c = alpha[k]! - b;
      for (let i = 0; i < n; i++) d[i] += c * sk[i]!;
    }
    gPrev = Float64Array.from(g);
    const fPrev = f;
    let gtd = dot(g, d);
    if (!(gtd < -1e-300) || !Number.isFinite(gtd)) {
      // not a descent direction (numerical trouble): restart from steepest descent
      S.length = 0; Y.length = 0; rho.length = 0; hDiag = 1;
      for (let i = 0; i < n; i++) d[i] = -g[i]!;
      gtd = dot(g, d);
    }
    t = iterations === 1 || S.length === 0 ? Math.min(1, 1 / absSum(g)) : 1;
    base.set(x);
    const ls = strongWolfe((s) => evalAt(base, s, d), d, t, f, g, gtd, tolChange, maxLs);
    evaluations += ls.evals;
    if (ls.t === 0 || !(ls.f <= f)) { reason = 'line-search'; break; }
    t = ls.t;
    for (let i = 0; i < n; i++) x[i] = base[i]! + t * d[i]!;
    f = ls.f;
    g = ls.g;
    gMax = absMax(g);
    o.onIter?.(iterations, f, gMax);
    if (gMax <= tolGrad) { reason = 'gradient'; break; }
    if (iterations >= maxIter) { reason = 'max-iter'; break; }
    if (evaluations >= maxEval) { reason = 'max-eval'; break; }
    if (absMax(d) * Math.abs(t) <= tolChange) { reason = 'step'; break; }
    if (Math.abs(f - fPrev) <= tolChange * Math.max(1, Math.abs(f))) { reason = 'change'; break; }
  }
  return { x, f, gradMax: gMax, iterations, evaluations, reason };
}
