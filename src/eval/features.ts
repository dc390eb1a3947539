// Frozen features: the encoder's patch tokens average-pooled into one vector per image, computed in
// batches without autograd.
//
// Pooling:
//  - 'mean'  : mean over patches of the final (LayerNorm-ed) tokens, i.e. forward(images).mean(1); D dims.
//  - 'last4' : for each of the last 4 blocks, the block output passed through the encoder's final
//              LayerNorm and mean-pooled over patches, concatenated (oldest first); 4 D dims. The final
//              norm is applied to every one of the 4 outputs, as DINO's / I-JEPA's eval code does with
//              get_intermediate_layers (VisionTransformer.forwardLayers only norms the last). Encoders
//              with fewer than 4 blocks use all their blocks.
import { Tensor, tensor, tidy, noGrad, cat, autocast } from '../tensor/index.js';
import type { VisionTransformer } from '../nn/vit.js';
import { DataLoader, evalTransform, type Dataset, type ViewSpec } from '../data/index.js';
import type { TokenRankMe } from '../method/monitors.js';

export type Pooling = 'mean' | 'last4';
export const POOLINGS: readonly Pooling[] = ['mean', 'last4'];

/** Output width of `pooling` for an encoder. */
export function pooledDim(encoder: VisionTransformer, pooling: Pooling): number {
  return pooling === 'mean' ? encoder.embedDim : encoder.embedDim * Math.min(4, encoder.blocks.length);
}

/**
 * Pooled features (B, D') of a batch of images (B, C, H, W); differentiable unless run under noGrad. `onTokens` gets
 * the final (LayerNorm-ed) patch tokens (B, N, D) in fp32, e.g. for the per-token RankMe.
 */
export function poolFeatures(encoder: VisionTransformer, images: Tensor, pooling: Pooling = 'mean', onTokens?: (tokens: Tensor) => void): Tensor {
  if (pooling === 'mean') {
    return tidy(() => {
      const t = autocast(() => encoder.forward(images)).float();
      onTokens?.(t);
      return t.mean(1);
    });
  }
  if (pooling !== 'last4') throw new Error(`unknown pooling '${String(pooling)}' (expected ${POOLINGS.join(' or ')})`);
  return tidy(() => autocast(() => {
    const outs = encoder.forwardLayers(images);
    const L = outs.length, k = Math.min(4, L);
    const pooled: Tensor[] = [];
    for (let i = L - k; i < L; i++) {
      // forwardLayers already applied the final norm to the last output
      const normed = i === L - 1 ? outs[i]! : encoder.norm.forward(outs[i]!);
      const f = normed.float();
      if (i === L - 1) onTokens?.(f);
      pooled.push(f.mean(1));
    }
    return cat(pooled, 1);
  }));
}

export interface ExtractOptions {
  batchSize?: number;
  pooling?: Pooling;
  /** Data-loader worker threads (default 0: in-process). */
  workers?: number;
  /** Override the eval view (default: evalTransform at the encoder's image size). */
  view?: ViewSpec;
  /** After each batch: samples processed (kept or skipped) of the dataset's total. */
  onProgress?: (done: number, total: number) => void;
  onSkip?: (source: string, reason: string) => void;
  /** Feeds the final patch tokens of the first rows to this accumulator, up to `tokenLimit` tokens (default 65,536). */
  tokens?: TokenRankMe;
  tokenLimit?: number;
}

export interface SkippedSample {
  /** Dataset index. */
  index: number;
  /** The file (or record) that could not be decoded. */
  source: string;
  reason: string;
}

export interface Features {
  /** (N', D') float32 on the CPU, one row per decodable sample; the caller owns it. */
  features: Tensor;
  /** Label of each row (-1 when unlabelled). */
  labels: Int32Array;
  /** Dataset index of each row, increasing (dataset order; corrupt samples are left out, never replaced). */
  indices: Int32Array;
  /** The corrupt samples left out, by index. */
  skipped: SkippedSample[];
  /** The per-channel normalisation applied to [0, 1] pixels before the encoder (the dataset's own, else ImageNet's). */
  norm: { mean: number[]; std: number[] };
}

/** The encoder's input size (square) and channels. */
export function encoderInput(encoder: VisionTransformer): { size: number; channels: number } {
  const s = encoder.config.imgSize;
  const size = typeof s === 'number' ? s : s[0];
  return { size, channels: encoder.config.inChans };
}

/** A loader that feeds `dataset` to `encoder` (eval view at the encoder's size and channels). */
export function evalLoader(encoder: VisionTransformer, dataset: Dataset, o: { batchSize?: number; workers?: number; view?: ViewSpec; shuffle?: boolean; dropLast?: boolean; seed?: number; onSkip?: ExtractOptions['onSkip']; corrupt?: 'replace' | 'drop' } = {}): DataLoader {
  const { size, channels } = encoderInput(encoder);
  const view = o.view ?? evalTransform({ size });
  if (view.size !== size) throw new Error(`the view produces ${view.size} px images but the encoder expects ${size} px`);
  return new DataLoader(dataset, {
    batchSize: o.batchSize ?? 128, views: view, shuffle: o.shuffle ?? false, dropLast: o.dropLast ?? false, seed: o.seed ?? 0,
    workers: o.workers ?? 0, imageSize: size, patchSize: encoder.config.patchSize, channels,
    ...(o.onSkip ? { onSkip: o.onSkip } : {}), ...(o.corrupt ? { corrupt: o.corrupt } : {}),
  });
}

/**
 * Extracts pooled features of every sample of `dataset`, in dataset order, without autograd. A corrupt
 * sample gets no row (it is listed in `skipped`), so row i is always the sample `indices[i]`.
 */
export async function extractFeatures(encoder: VisionTransformer, dataset: Dataset, o: ExtractOptions = {}): Promise<Features> {
  const pooling = o.pooling ?? 'mean';
  if (!POOLINGS.includes(pooling)) throw new Error(`unknown pooling '${String(pooling)}' (expected ${POOLINGS.join(' or ')})`);
  const loader = evalLoader(encoder, dataset, { ...o, corrupt: 'drop' });
  const N = dataset.length, D = pooledDim(encoder, pooling);
  const out = new Float32Array(N * D);
  const labels = new Int32Array(N), indices = new Int32Array(N);
  const skipped = new Map<number, SkippedSample>();
  const device = encoder.posEmbed.device;
  let row = 0;
  try {
    for await (const b of loader.epoch(0)) {
      for (const bad of b.bad) if (!skipped.has(bad.index)) skipped.set(bad.index, { index: bad.index, source: bad.source, reason: bad.reason });
      if (b.shape[0] === 0) { o.onProgress?.(row + skipped.size, N); continue; }
      const feats = noGrad(() => tidy(() => {
        const images = tensor(b.views[0]!, b.shape, device === 'cpu' ? {} : { device });
        // the first tokenLimit tokens (whole images) go to the per-token RankMe, in the same forward
        const acc = o.tokens, limit = o.tokenLimit ?? 65536;
        const toTokens = acc && acc.count < limit
          ? (t: Tensor) => acc.add(t.narrow(0, 0, Math.min(t.size(0), Math.ceil((limit - acc.count) / t.size(1)))))
          : undefined;
        const f = poolFeatures(encoder, images, pooling, toTokens).float();
        return f.device === 'cpu' ? f.contiguous() : f.to(null, 'cpu').contiguous();
      }));
      out.set(feats.data<'float32'>(), row * D);
      feats.dispose();
      labels.set(b.labels, row);
      indices.set(b.indices, row);
      row += b.shape[0];
      o.onProgress?.(row + skipped.size, N);
    }
  } finally {
    await loader.close();
  }
  if (row + skipped.size !== N) throw new Error(`feature extraction produced ${row} rows and skipped ${skipped.size} of ${N} samples`);
  if (row === 0) throw new Error(`${dataset.spec}: none of its ${N} samples could be decoded`);
  return {
    features: tensor(row === N ? out : out.subarray(0, row * D), [row, D]), labels: labels.slice(0, row), indices: indices.slice(0, row),
    skipped: [...skipped.values()].sort((a, b) => a.index - b.index), norm: { mean: [...loader.mean], std: [...loader.std] },
  };
}
