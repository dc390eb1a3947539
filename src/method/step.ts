// One forward pass + loss of each method, given a batch and (for JEPA methods) its masks. The trainer
// calls these, then backward, AdamW and EMA; the PyTorch parity tests call them on fixed weights.
import { Tensor, tensor, tidy, noGrad, autocast, F, onDefaultDevice } from '../tensor/index.js';
import { VisionTransformer, applyMasks } from '../nn/vit.js';
import { Predictor, repeatInterleaveBatch } from '../nn/predictor.js';
import { Expander } from '../nn/expander.js';
import { cjepaLoss, vicregLoss, type CjepaOptions, type VicregWeights, type AllGather, type Projector } from './losses.js';
import type { MaskBatch } from './masks.js';

/**
 * Padded context rows (masks.contextFit 'pad'): `keyBias` (B, 1, 1, Lc) is added to the attention scores
 * (0 for real tokens, -inf for padding, so padding gets exactly zero weight), `valid` (B, Lc) is 1 for real
 * tokens (pooling).
 */
export interface ContextPadding { keyBias: Tensor; valid: Tensor }

/** Mask index sets as int64 tensors: context [(B, Lc)], targets M x (B, Lt); the padding of padded contexts. */
export function maskTensors(m: MaskBatch): { ctx: Tensor[]; tgt: Tensor[]; ctxPad?: ContextPadding } {
  const toT = (rows: Int32Array[]) => {
    const L = rows[0]!.length;
    const flat = new BigInt64Array(rows.length * L);
    rows.forEach((r, i) => { for (let k = 0; k < L; k++) flat[i * L + k] = BigInt(r[k]!); });
    return tensor(flat, [rows.length, L], onDefaultDevice());
  };
  const out = { ctx: [toT(m.context)], tgt: m.targets.map(toT) };
  const lens = m.contextLengths;
  if (!lens || lens.every((n) => n === m.contextLength)) return out;
  const B = m.context.length, L = m.contextLength;
  const valid = new Float32Array(B * L), bias = new Float32Array(B * L);
  for (let i = 0; i < B; i++) for (let k = 0; k < L; k++) {
    const real = k < lens[i]!;
    valid[i * L + k] = real ? 1 : 0;
    bias[i * L + k] = real ? 0 : -Infinity;
  }
  return { ...out, ctxPad: { keyBias: tensor(bias, [B, 1, 1, L], onDefaultDevice()), valid: tensor(valid, [B, L], onDefaultDevice()) } };
}

export interface JepaNets {
  encoder: VisionTransformer;
  targetEncoder: VisionTransformer;
  predictor: Predictor;
}

/** I-JEPA targets: layer-normed target-encoder features of all patches, then each target block. */
export function jepaTargets(targetEncoder: VisionTransformer, images: Tensor, ctx: readonly Tensor[], tgt: readonly Tensor[]): Tensor {
  return targetsAndTeacher(targetEncoder, images, ctx, tgt, false).h;
}

/**
 * The JEPA targets and, when asked, the target encoder's output averaged over all patches of each image (B, D)
 * (C-JEPA 'target'): of the same images, or of `teacherImages` (a second view of each image) when given.
 */
function targetsAndTeacher(targetEncoder: VisionTransformer, images: Tensor, ctx: readonly Tensor[], tgt: readonly Tensor[], pooled: boolean, teacherImages?: Tensor): { h: Tensor; teacher?: Tensor } {
  return noGrad(() => tidy(() => {
    const h = autocast(() => targetEncoder.forward(images)).float();  // targets and losses in fp32
    const hn = F.layerNorm(h, [h.size(-1)]);
    const teacher = !pooled ? undefined : teacherImages ? autocast(() => targetEncoder.forward(teacherImages)).float().mean(1) : h.mean(1);
    return { h: repeatInterleaveBatch(applyMasks(hn, tgt), images.size(0), ctx.length), ...(teacher ? { teacher } : {}) };
  }));
}

export interface JepaForwardOptions {
  /** the regulariser reads a full (unmasked) pass of the online encoder instead of the context tokens ('views') */
  fullView?: boolean;
  /** padded context rows (masks.contextFit 'pad', from maskTensors) */
  ctxPad?: ContextPadding;
  /** 'target' placement: a second view of each image for the teacher to pool (cjepa.teacherView 'augmented') */
  teacherImages?: Tensor;
}

/** C-JEPA / I-JEPA loss terms for one batch (I-JEPA is betaVicreg = 0). */
export function jepaForward(nets: JepaNets, images: Tensor, ctx: readonly Tensor[], tgt: readonly Tensor[], o: CjepaOptions, allGather?: AllGather, projector?: Projector, opts: JepaForwardOptions = {}) {
  return tidy(() => {
    const { h, teacher } = targetsAndTeacher(nets.targetEncoder, images, ctx, tgt, o.placement === 'target' && o.betaVicreg !== 0, opts.teacherImages);
    const pad = opts.ctxPad;
    const full = (opts.fullView ?? false) && o.betaVicreg !== 0;
    const { zc, z, zr } = autocast(() => {
      const zc = nets.encoder.forward(images, ctx, pad?.keyBias);
      const zr = full ? nets.encoder.forward(images) : zc;
      return { zc, z: nets.predictor.forward(zc, ctx, tgt, pad?.keyBias), zr };
    });
    return cjepaLoss(z.float(), h, zr.float(), tgt.length, o, allGather, projector, full ? undefined : pad?.valid, teacher);
  });
}

/** VICReg loss terms: encoder -> average-pooled patches -> expander, on two views. */
export function vicregForward(encoder: VisionTransformer, expander: Expander, view1: Tensor, view2: Tensor, w: VicregWeights, allGather?: AllGather) {
  return tidy(() => {
    const x = autocast(() => expander.forward(encoder.forward(view1).mean(1))).float();
    const y = autocast(() => expander.forward(encoder.forward(view2).mean(1))).float();
    return vicregLoss(x, y, w, allGather);
  });
}
