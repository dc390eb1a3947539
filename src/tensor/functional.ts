// Functional neural-network ops (torch.nn.functional), each one native call.
import { native } from './native.js';
import { Tensor, type Reduction } from './tensor.js';

const opt = (t: Tensor | undefined | null) => (t ? t.h : null);

export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return new Tensor(native.linear(x.h, weight.h, opt(bias)));
}

export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null,
  o: { stride?: number | [number, number]; padding?: number | [number, number]; dilation?: number | [number, number]; groups?: number } = {}): Tensor {
  const pair = (v: number | [number, number] | undefined, d: number): number[] => (v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v);
  return new Tensor(native.conv2d(x.h, weight.h, opt(bias), pair(o.stride, 1), pair(o.padding, 0), pair(o.dilation, 1), o.groups ?? 1));
}

export function layerNorm(x: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return new Tensor(native.layerNorm(x.h, normalizedShape, opt(weight), opt(bias), eps));
}

export function batchNorm(x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null,
  o: { weight?: Tensor | null; bias?: Tensor | null; training?: boolean; momentum?: number; eps?: number } = {}): Tensor {
  return new Tensor(native.batchNorm(x.h, opt(o.weight), opt(o.bias), opt(runningMean), opt(runningVar),
    o.training ?? false, o.momentum ?? 0.1, o.eps ?? 1e-5));
}

export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor { return x.gelu(approximate); }
export function relu(x: Tensor): Tensor { return x.relu(); }
export function softmax(x: Tensor, dim: number): Tensor { return new Tensor(native.softmax(x.h, dim)); }
export function logSoftmax(x: Tensor, dim: number): Tensor { return new Tensor(native.logSoftmax(x.h, dim)); }
/** Uses libtorch's global generator (seed it with manualSeed). */
export function dropout(x: Tensor, p: number, training: boolean): Tensor {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout probability must be in [0, 1], got ${p}`);
  return new Tensor(native.dropout(x.h, p, training));
}
export function smoothL1Loss(x: Tensor, y: Tensor, reduction: Reduction = 'mean', beta = 1.0): Tensor {
  return new Tensor(native.smoothL1Loss(x.h, y.h, reduction, beta));
}
export function mseLoss(x: Tensor, y: Tensor, reduction: Reduction = 'mean'): Tensor {
  return new Tensor(native.mseLoss(x.h, y.h, reduction));
}
export function l1Loss(x: Tensor, y: Tensor, reduction: Reduction = 'mean'): Tensor {
  return new Tensor(native.l1Loss(x.h, y.h, reduction));
}
/** Cross-entropy on logits (N, C) and int64 class targets (N). */
export function crossEntropy(logits: Tensor, target: Tensor, reduction: Reduction = 'mean', labelSmoothing = 0): Tensor {
  return new Tensor(native.crossEntropy(logits.h, target.h, reduction, labelSmoothing));
}
export function nllLoss(logProbs: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return new Tensor(native.nllLoss(logProbs.h, target.h, reduction));
}
/** x / max(||x||_p, eps) along `dim` (F.normalize). */
export function normalize(x: Tensor, p = 2, dim = -1, eps = 1e-12): Tensor {
  const n = x.norm(p, dim, true);
  const d = n.clampMin(eps);
  const out = x.div(d);
  n.dispose(); d.dispose();
  return out;
}
export function avgPool2d(x: Tensor, kernel: [number, number], stride?: [number, number]): Tensor {
  return new Tensor(native.avgPool2d(x.h, kernel, stride ?? kernel));
}
export function adaptiveAvgPool2d(x: Tensor, size: [number, number]): Tensor {
  return new Tensor(native.adaptiveAvgPool2d(x.h, size));
}
export function interpolate(x: Tensor, size: [number, number], mode: 'bilinear' | 'bicubic' = 'bilinear', alignCorners = false): Tensor {
  return new Tensor(mode === 'bilinear' ? native.interpolateBilinear(x.h, size, alignCorners) : native.interpolateBicubic(x.h, size, alignCorners));
}

// Multi-tensor helpers (one native call over a whole list): the seam for fused optimiser updates.
/** targets[i] <- targets[i] + w (sources[i] - targets[i]), without autograd. */
export function foreachLerp_(targets: readonly Tensor[], sources: readonly Tensor[], weight: number): void {
  native.foreachLerp_(targets.map((t) => t.h), sources.map((t) => t.h), weight);
}
/** Global L2 norm of a list of tensors (as a JS number). */
export function foreachNorm(ts: readonly Tensor[]): number {
  const t = new Tensor(native.foreachNormSq(ts.map((x) => x.h)));
  const v = Math.sqrt(t.item());
  t.dispose();
  return v;
}
