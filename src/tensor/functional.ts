// Functional neural-network ops (torch.nn.functional), each one native call.
import { native } from './native.js';
import { Tensor, type Reduction, handleOf, handles, optHandle as opt } from './tensor.js';

/**
 * y = x W^T + b. bf16 with a bias (autocast): one oneDNN matmul with the bias added in its epilogue
 * (native/fused.cc; the same values as libtorch's addmm, 30-35 % less time per forward than its path, which
 * writes the bias into y first and reads it back); the backward is libtorch's. fp32 on a libtorch that runs
 * OpenBLAS (Debian's): the forward and both backward GEMMs are addmm's own `sgemm_` calls over blocks of rows, one
 * block per libtorch thread, OpenBLAS single-threaded for the call (no second thread pool spinning against
 * libtorch's; ~10-15 % off the fp32 preset step; sums within float rounding of libtorch's, `CJEPA_SPLIT_GEMM=0`
 * turns it off); on Intel AVX-512 CPUs and AMD Zen 4 each block runs on oneDNN's sgemm instead (`CJEPA_FP32_GEMM`, native.ts).
 * Otherwise libtorch's linear. `CJEPA_UNFUSED=linear` runs libtorch's linear always.
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  if (UNFUSED.has('linear')) return atenLinear(x, weight, bias);
  return new Tensor(native.linear(handleOf(x, 'F.linear', 'x'), handleOf(weight, 'F.linear', 'weight'), opt(bias, 'F.linear', 'bias')));
}
/**
 * x^T x for a (n, d) batch (VICReg's covariance). As `linear(x^T, x^T)` it takes F.linear's split fp32 GEMMs, forward
 * and backward, where `x.t().matmul(x)` hands OpenBLAS's own thread pool a product of a few million multiply-adds.
 */
export function gram(x: Tensor): Tensor {
  if (x.ndim !== 2) throw new Error(`F.gram: expected a (n, d) batch, got shape [${x.shape.join(', ')}]`);
  const xt = x.t();
  return linear(xt, xt);
}
/** libtorch's own at::linear (what F.linear replaces; for comparisons). */
export function atenLinear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return new Tensor(native.atenLinear(handleOf(x, 'F.atenLinear', 'x'), handleOf(weight, 'F.atenLinear', 'weight'), opt(bias, 'F.atenLinear', 'bias')));
}

export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null,
  o: { stride?: number | [number, number]; padding?: number | [number, number]; dilation?: number | [number, number]; groups?: number } = {}): Tensor {
  const pair = (v: number | [number, number] | undefined, d: number): number[] => (v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v);
  return new Tensor(native.conv2d(handleOf(x, 'F.conv2d', 'x'), handleOf(weight, 'F.conv2d', 'weight'), opt(bias, 'F.conv2d', 'bias'), pair(o.stride, 1), pair(o.padding, 0), pair(o.dilation, 1), o.groups ?? 1));
}

export function layerNorm(x: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return new Tensor(native.layerNorm(handleOf(x, 'F.layerNorm', 'x'), normalizedShape, opt(weight, 'F.layerNorm', 'weight'), opt(bias, 'F.layerNorm', 'bias'), eps));
}

/**
 * Fused kernels turned off by name (`CJEPA_UNFUSED=gelu,softmax,residual,layernorm,linear,bmm,attention`): the stock libtorch
 * ops run instead, with the same results up to float rounding. Default: every fused kernel on (GELU only for
 * bf16, where it is a table lookup; see `gelu`).
 */
const UNFUSED = new Set((process.env.CJEPA_UNFUSED ?? '').split(',').map((s) => s.trim()).filter(Boolean));

/**
 * LayerNorm over the last dimension whose output goes into a Linear. Under bf16 autocast it returns the
 * bf16 tensor that Linear would cast to anyway, in one pass (native/fused.cc); otherwise `layerNorm`.
 */
export function layerNormToLinear(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  if (UNFUSED.has('layernorm')) return layerNorm(x, [x.size(-1)], weight, bias, eps);
  return new Tensor(native.layerNormToLinear(handleOf(x, 'F.layerNormToLinear', 'x'), handleOf(weight, 'F.layerNormToLinear', 'weight'),
    handleOf(bias, 'F.layerNormToLinear', 'bias'), eps));
}

export function batchNorm(x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null,
  o: { weight?: Tensor | null; bias?: Tensor | null; training?: boolean; momentum?: number; eps?: number } = {}): Tensor {
  return new Tensor(native.batchNorm(handleOf(x, 'F.batchNorm', 'x'), opt(o.weight, 'F.batchNorm', 'weight'), opt(o.bias, 'F.batchNorm', 'bias'), opt(runningMean, 'F.batchNorm', 'runningMean'), opt(runningVar, 'F.batchNorm', 'runningVar'),
    o.training ?? false, o.momentum ?? 0.1, o.eps ?? 1e-5));
}

/**
 * GELU. On bf16 input the exact (erf) form runs cjepa's kernel (native/fused.cc): the forward looks each of
 * the 65,536 bf16 values up in libtorch's own outputs (bit-identical), the backward multiplies by ATen's
 * fp32 derivative; ~1.6x faster than the stock op forward and backward at 2 threads. fp32 and 'tanh'
 * use libtorch's op (the fp32 kernel, a polynomial, was only level with it).
 */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  const kernel = x.dtype === 'bfloat16' || (fusedGeluFp32 && x.dtype === 'float32');
  return approximate === 'none' && kernel && !UNFUSED.has('gelu') ? fusedGelu(x) : x.gelu(approximate);
}
let fusedGeluFp32 = false;
/** Runs fp32 GELUs on cjepa's kernel (true) or libtorch's (false) in this process (in-process A/B timing); returns the previous setting. */
export function setFusedGeluFp32(on: boolean): boolean {
  const was = fusedGeluFp32;
  fusedGeluFp32 = on;
  return was;
}
/** cjepa's exact-erf GELU kernel (native/fused.cc) with its own backward, whatever CJEPA_UNFUSED says. */
export function fusedGelu(x: Tensor): Tensor {
  return new Tensor(native.fusedGelu(handleOf(x, 'F.fusedGelu', 'x')));
}
export function relu(x: Tensor): Tensor { return x.relu(); }
export function softmax(x: Tensor, dim: number): Tensor { return new Tensor(native.softmax(handleOf(x, 'F.softmax', 'x'), dim)); }
/**
 * softmax(scale * x) over the last dimension in one native pass, with its own one-pass backward
 * (native/fused.cc; attention scores). fp32 within 1e-6 of softmax(x.mul(scale)); bf16 computed in fp32
 * from the bf16 scores and rounded once (the stock path also rounds x * scale to bf16 first).
 */
export function scaledSoftmax(x: Tensor, scale: number): Tensor {
  if (UNFUSED.has('softmax')) return softmax(x.mul(scale), -1);
  return new Tensor(native.scaledSoftmax(handleOf(x, 'F.scaledSoftmax', 'x'), scale));
}
/**
 * x + y for a residual stream x and a branch y: when x is fp32 and y is bf16 (an autocast branch) one
 * vectorised pass (native/fused.cc) instead of libtorch's mixed-dtype loop; otherwise `x.add(y)`. Exact
 * either way (bf16 -> fp32 is exact, then one fp32 add).
 */
export function residualAdd(x: Tensor, y: Tensor): Tensor {
  if (UNFUSED.has('residual')) return x.add(y);
  return new Tensor(native.residualAdd(handleOf(x, 'F.residualAdd', 'x'), handleOf(y, 'F.residualAdd', 'y')));
}
/**
 * a @ b over equal batch dimensions, (..., R, K) @ (..., K, C) (attention's two matmuls). fp32 on the CPU
 * without autocast (libtorch on a system BLAS): the batch split over libtorch's threads, each item the sgemm
 * call libtorch's bmm makes, so values and gradients are bit-identical to `a.matmul(b)`, which runs the
 * items one by one on one core (native/fused.cc Bmm32). Otherwise, or with `CJEPA_UNFUSED=bmm`, `a.matmul(b)`.
 */
export function batchedMatmul(a: Tensor, b: Tensor): Tensor {
  if (UNFUSED.has('bmm')) return a.matmul(b);
  return new Tensor(native.batchedMatmul(handleOf(a, 'F.batchedMatmul', 'a'), handleOf(b, 'F.batchedMatmul', 'b')));
}
/**
 * Multi-head attention's core from the qkv projection: qkv (B, N, 3C) in the official (3, H, d) layout ->
 * softmax(scale q k^T [+ keyBias]) v as (B, N, C). fp32 on the CPU without autocast (libtorch on the system
 * OpenBLAS): one native op (native/fused.cc FusedAttention32) that reads q, k, v in place and writes the output and,
 * backward, the qkv gradient directly, with no layout copies; equal to the composed ops up to float rounding.
 * keyBias (B, 1, 1, N; -inf on padded keys), bf16, other devices or `CJEPA_UNFUSED=attention`: the composed ops.
 */
export function attention(qkv: Tensor, heads: number, scale: number, keyBias?: Tensor): Tensor {
  const [B, N, C3] = qkv.shape as [number, number, number];
  if (qkv.ndim !== 3 || !Number.isInteger(heads) || heads < 1 || C3 % (3 * heads) !== 0) {
    throw new Error(`F.attention: qkv must be (B, N, 3C) with C divisible by heads ${heads}, got [${qkv.shape.join(', ')}]`);
  }
  if (!keyBias && fusedAttention) {
    const h = native.attention(handleOf(qkv, 'F.attention', 'qkv'), heads, scale);
    if (h) return new Tensor(h);
  }
  const C = C3 / 3, d = C / heads;
  // chunk, not select: select's backward allocates and fills a zero (B, N, 3C) per slice, chunk's is one
  // cat. k^T is made contiguous as (B, H, d, N), the layout PyTorch's matmul copies it to (same bf16 sums)
  const [q, k, v] = qkv.reshape([B, N, 3, heads, d]).chunk(3, 2).map((t) => t.reshape([B, N, heads, d])) as [Tensor, Tensor, Tensor];
  const scores = batchedMatmul(q.permute([0, 2, 1, 3]), k.permute([0, 2, 3, 1]).contiguous());
  const attn = keyBias
    ? softmax(scores.mul(scale).add(keyBias), -1)  // padded keys get weight exactly 0
    : scaledSoftmax(scores, scale);  // softmax(q k^T * scale), one fused op
  return batchedMatmul(attn, v.permute([0, 2, 1, 3])).transpose(1, 2).reshape([B, N, C]);
}
let fusedAttention = !UNFUSED.has('attention');
/** Turns the fused attention core on or off in this process (in-process A/B timing, tests); returns the previous setting. */
export function setFusedAttention(on: boolean): boolean {
  const was = fusedAttention;
  fusedAttention = on;
  return was;
}
export function logSoftmax(x: Tensor, dim: number): Tensor { return new Tensor(native.logSoftmax(handleOf(x, 'F.logSoftmax', 'x'), dim)); }
/** Uses libtorch's global generator (seed it with manualSeed). */
export function dropout(x: Tensor, p: number, training: boolean): Tensor {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout probability must be in [0, 1], got ${p}`);
  return new Tensor(native.dropout(handleOf(x, 'F.dropout', 'x'), p, training));
}
export function smoothL1Loss(x: Tensor, y: Tensor, reduction: Reduction = 'mean', beta = 1.0): Tensor {
  return new Tensor(native.smoothL1Loss(handleOf(x, 'F.smoothL1Loss', 'x'), handleOf(y, 'F.smoothL1Loss', 'y'), reduction, beta));
}
export function mseLoss(x: Tensor, y: Tensor, reduction: Reduction = 'mean'): Tensor {
  return new Tensor(native.mseLoss(handleOf(x, 'F.mseLoss', 'x'), handleOf(y, 'F.mseLoss', 'y'), reduction));
}
export function l1Loss(x: Tensor, y: Tensor, reduction: Reduction = 'mean'): Tensor {
  return new Tensor(native.l1Loss(handleOf(x, 'F.l1Loss', 'x'), handleOf(y, 'F.l1Loss', 'y'), reduction));
}
/** Cross-entropy on logits (N, C) and int64 class targets (N). */
export function crossEntropy(logits: Tensor, target: Tensor, reduction: Reduction = 'mean', labelSmoothing = 0): Tensor {
  return new Tensor(native.crossEntropy(handleOf(logits, 'F.crossEntropy', 'logits'), handleOf(target, 'F.crossEntropy', 'target'), reduction, labelSmoothing));
}
export function nllLoss(logProbs: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return new Tensor(native.nllLoss(handleOf(logProbs, 'F.nllLoss', 'logProbs'), handleOf(target, 'F.nllLoss', 'target'), reduction));
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
  return new Tensor(native.avgPool2d(handleOf(x, 'F.avgPool2d', 'x'), kernel, stride ?? kernel));
}
export function adaptiveAvgPool2d(x: Tensor, size: [number, number]): Tensor {
  return new Tensor(native.adaptiveAvgPool2d(handleOf(x, 'F.adaptiveAvgPool2d', 'x'), size));
}
export function interpolate(x: Tensor, size: [number, number], mode: 'bilinear' | 'bicubic' = 'bilinear', alignCorners = false): Tensor {
  return new Tensor(mode === 'bilinear' ? native.interpolateBilinear(handleOf(x, 'F.interpolate', 'x'), size, alignCorners) : native.interpolateBicubic(handleOf(x, 'F.interpolate', 'x'), size, alignCorners));
}

// Multi-tensor helpers (one native call over a whole list): the seam for fused optimiser updates.
/** targets[i] <- targets[i] + w (sources[i] - targets[i]), without autograd. */
export function foreachLerp_(targets: readonly Tensor[], sources: readonly Tensor[], weight: number): void {
  native.foreachLerp_(handles(targets, 'F.foreachLerp_', 'targets'), handles(sources, 'F.foreachLerp_', 'sources'), weight);
}
/** AdamW update of fp32 parameter lists in one pass per tensor (native/fused.cc): torch.optim.AdamW's arithmetic. */
export function fusedAdamW_(params: readonly Tensor[], grads: readonly Tensor[], expAvg: readonly Tensor[], expAvgSq: readonly Tensor[],
  o: { decay: number; beta1: number; beta2: number; stepSize: number; bc2Sqrt: number; eps: number }): void {
  native.fusedAdamW_(handles(params, 'F.fusedAdamW_', 'params'), handles(grads, 'F.fusedAdamW_', 'grads'), handles(expAvg, 'F.fusedAdamW_', 'expAvg'),
    handles(expAvgSq, 'F.fusedAdamW_', 'expAvgSq'), o.decay, o.beta1, o.beta2, o.stepSize, o.bc2Sqrt, o.eps);
}
/** targets[i] <- m targets[i] + (1 - m) sources[i], in one pass per tensor, without autograd. */
export function fusedEma_(targets: readonly Tensor[], sources: readonly Tensor[], momentum: number): void {
  native.fusedEma_(handles(targets, 'F.fusedEma_', 'targets'), handles(sources, 'F.fusedEma_', 'sources'), momentum);
}
/** Global L2 norm of a list of tensors (as a JS number). */
export function foreachNorm(ts: readonly Tensor[]): number {
  const t = new Tensor(native.foreachNormSq(handles(ts, 'F.foreachNorm', 'tensors')));
  const v = Math.sqrt(t.item());
  t.dispose();
  return v;
}
/** Global L2 norm of a list of tensors as a 0-d float64 tensor on their device (no host sync). */
export function foreachNormTensor(ts: readonly Tensor[]): Tensor {
  const sq = new Tensor(native.foreachNormSq(handles(ts, 'F.foreachNormTensor', 'tensors')));
  const n = sq.sqrt();
  sq.dispose();
  return n;
}
