// Linear probe on frozen features: multinomial logistic regression (softmax + cross-entropy) with an
// L2 penalty on the weights, on standardised features.
//
// Protocol:
//  1. A seeded validation split is carved from the TRAIN features (valFraction, default 0.2).
//  2. For each L2 strength of a small grid, standardise with the fit part's mean/std, train on the fit
//     part, measure accuracy on the validation part. The best strength wins (ties: the stronger one).
//  3. Standardise with the mean/std of ALL train features (never the test set's), retrain with the
//     chosen strength on all train features, report the accuracy on the test features.
// Training: weights and bias start at 0 (the problem is convex), Adam with a cosine-decayed learning
// rate, full batch when the features fit one batch, else seeded mini-batches; objective =
// mean cross-entropy + l2 / 2 * ||W||^2 (the bias is not penalised).
import { Tensor, tensor, tidy, noGrad, zeros, F } from '../tensor/index.js';
import { AdamW } from '../method/optim.js';
import { WarmupCosineSchedule } from '../method/schedulers.js';
import { permutation } from '../data/rng.js';

export interface Standardizer {
  /** (D) */
  mean: Tensor;
  /** (D), population std clamped below at 1e-6 */
  std: Tensor;
}

/** Per-dimension mean and std of `x` (N, D). The caller owns the result. */
export function fitStandardizer(x: Tensor): Standardizer {
  return noGrad(() => tidy(() => {
    const xf = x.float();
    return { mean: xf.mean(0), std: xf.std(0, { correction: 0 }).clampMin(1e-6) };
  }));
}

export function standardize(x: Tensor, s: Standardizer): Tensor {
  return noGrad(() => tidy(() => x.float().sub(s.mean).div(s.std)));
}

export interface TrainLinearOptions {
  /** L2 penalty strength on the weights (default 0). */
  l2?: number;
  /** Optimiser steps (default 500). */
  steps?: number;
  /** Peak Adam learning rate, cosine-decayed to 0 (default 0.1). */
  lr?: number;
  /** Mini-batch size; full batch when N <= batchSize (default 4096). */
  batchSize?: number;
  seed?: number;
}

export interface LinearModel {
  /** (C, D) */
  weight: Tensor;
  /** (C) */
  bias: Tensor;
}

function labelsTensor(y: Int32Array, device: string): Tensor {
  return tidy(() => tensor(Int32Array.from(y), [y.length]).long().to(null, device));
}

/** The regularised objective mean CE + l2/2 ||W||^2 on (x, y). */
export function linearObjective(m: LinearModel, x: Tensor, y: Int32Array, l2 = 0): number {
  return noGrad(() => tidy(() => {
    const ce = F.crossEntropy(F.linear(x, m.weight, m.bias), labelsTensor(y, x.device));
    return ce.add(m.weight.square().sum().mul(l2 / 2)).item();
  }));
}

/** Trains a softmax classifier on (x (N, D), y) with numClasses classes. The caller owns the model. */
export function trainLinear(x: Tensor, y: Int32Array, numClasses: number, o: TrainLinearOptions = {}): LinearModel {
  const [N, D] = x.shape as [number, number];
  if (y.length !== N) throw new Error(`linear probe: ${y.length} labels for ${N} feature rows`);
  const l2 = o.l2 ?? 0, steps = o.steps ?? 500, lr = o.lr ?? 0.1, B = Math.min(N, o.batchSize ?? 4096), seed = o.seed ?? 0;
  if (!(l2 >= 0)) throw new Error(`linear probe: l2 must be >= 0, got ${l2}`);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`linear probe: steps must be a positive integer, got ${steps}`);
  const device = x.device;
  const weight = zeros([numClasses, D], { device }).requiresGrad_(true);
  const bias = zeros([numClasses], { device }).requiresGrad_(true);
  const opt = new AdamW([{ params: [['weight', weight], ['bias', bias]], decay: false }], { betas: [0.9, 0.999], eps: 1e-8 });
  const sched = new WarmupCosineSchedule({ warmupSteps: 0, startLr: lr, refLr: lr, finalLr: 0, totalSteps: steps });
  const yAll = labelsTensor(y, device);
  const xf = x.float();
  try {
    let order: Int32Array | null = null, epoch = 0, pos = 0;
    for (let step = 0; step < steps; step++) {
      tidy(() => {
        let xb = xf, yb = yAll;
        if (B < N) {
          if (!order || pos + B > N) { order = permutation(N, seed, epoch++); pos = 0; }
          const idx = tensor(order.subarray(pos, pos + B), [B]).long().to(null, device);
          pos += B;
          xb = xf.indexSelect(0, idx);
          yb = yAll.indexSelect(0, idx);
        }
        let loss = F.crossEntropy(F.linear(xb, weight, bias), yb);
        if (l2 > 0) loss = loss.add(weight.square().sum().mul(l2 / 2));
        loss.backward();
      });
      // the learning rate used at 0-based step i is the schedule's value at i (not i + 1: no dead last step)
      opt.update(sched.valueAtCounter(step), 0);
      weight.grad = undefined;
      bias.grad = undefined;
    }
  } finally {
    opt.dispose();
    yAll.dispose();
    if (xf !== x) xf.dispose();
  }
  weight.requiresGrad_(false);
  bias.requiresGrad_(false);
  return { weight, bias };
}

/** Predicted class of each row. */
export function predictLinear(m: LinearModel, x: Tensor): Int32Array {
  return noGrad(() => tidy(() => F.linear(x.float(), m.weight, m.bias).argmax(1).to('int32', 'cpu').data<'int32'>()));
}

export function accuracy(pred: Int32Array, y: Int32Array): number {
  if (pred.length !== y.length) throw new Error(`accuracy: ${pred.length} predictions for ${y.length} labels`);
  let c = 0;
  for (let i = 0; i < y.length; i++) if (pred[i] === y[i]) c++;
  return y.length ? c / y.length : NaN;
}

export interface LinearProbeOptions extends Omit<TrainLinearOptions, 'l2'> {
  /** L2 strengths to sweep (default [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]). */
  l2Grid?: number[];
  /** Fraction of the train features held out (seeded) to choose the L2 strength (default 0.2). */
  valFraction?: number;
  /** Number of classes (default max label + 1). */
  numClasses?: number;
}

export interface LinearProbeResult {
  /** Test accuracy of the final probe (NaN without test labels). */
  top1: number;
  /** Accuracy of the final probe on its own training features. */
  trainTop1: number;
  /** The chosen L2 strength. */
  l2: number;
  /** Validation accuracy of each swept strength. */
  sweep: { l2: number; valTop1: number }[];
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
  const grid = o.l2Grid ?? [1e-5, 1e-4, 1e-3, 1e-2, 1e-1];
  if (grid.length === 0) throw new Error('linear probe: empty L2 grid');
  const seed = o.seed ?? 0;
  const train = { steps: o.steps, lr: o.lr, batchSize: o.batchSize, seed };

  // 1-2: choose the L2 strength on a seeded split of the train features
  const sweep: { l2: number; valTop1: number }[] = [];
  let nFit = N, nVal = 0;
  let chosen = grid[0]!;
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
    try {
      for (const l2 of grid) {
        const m = trainLinear(xFit, yFit, C, { ...train, l2 });
        sweep.push({ l2, valTop1: accuracy(predictLinear(m, xVal), yVal) });
        m.weight.dispose(); m.bias.dispose();
      }
    } finally {
      for (const t of [xFitRaw, xValRaw, xFit, xVal, st.mean, st.std]) t.dispose();
    }
    let best = -1;
    for (const s of sweep) if (s.valTop1 > best || (s.valTop1 === best && s.l2 > chosen)) { best = s.valTop1; chosen = s.l2; }
  }

  // 3: retrain on all train features, standardised with train statistics only
  const st = fitStandardizer(trainX);
  const xTr = standardize(trainX, st), xTe = standardize(testX, st);
  try {
    const m = trainLinear(xTr, trainY, C, { ...train, l2: chosen });
    const trainTop1 = accuracy(predictLinear(m, xTr), trainY);
    const predictions = predictLinear(m, xTe);
    m.weight.dispose(); m.bias.dispose();
    return {
      top1: testY ? accuracy(predictions, testY) : NaN, trainTop1, l2: chosen, sweep, nFit, nVal, predictions,
      mean: tidy(() => st.mean.to(null, 'cpu').toArray()), std: tidy(() => st.std.to(null, 'cpu').toArray()),
    };
  } finally {
    for (const t of [xTr, xTe, st.mean, st.std]) t.dispose();
  }
}
