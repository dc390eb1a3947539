// What `cjepa bench` measures: the rows (model, batch), how each side's inputs are made, and the
// analytic FLOP count of a step. Shared by the parent (src/bench/bench.ts) and the timed child
// (src/bench/ours_child.ts), so both build exactly the same networks.
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveConfig, type PretrainConfig } from '../config.js';
import { VIT_SIZES } from '../nn/vit.js';

export interface BenchRow {
  id: string;
  title: string;
  /** step: one full pretraining step; embed: a no-grad forward of the encoder (as `cjepa embed`) */
  kind: 'step' | 'embed';
  model: string;
  depth: number;
  imgSize: number;
  patch: number;
  predictor: { embedDim: number; depth: number; numHeads: number };
  batch: number;
}

const PRESET_PRED = { embedDim: 96, depth: 2, numHeads: 3 };

export const BENCH_ROWS: Record<string, BenchRow> = {
  preset: { id: 'preset', title: 'CIFAR-10 preset step (ViT 192/6, patch 4, 32 px, predictor 96/2), batch 128', kind: 'step', model: 'vit_tiny', depth: 6, imgSize: 32, patch: 4, predictor: PRESET_PRED, batch: 128 },
  // the preset's own training batch since session 24 (docs/results/cifar10-fp32-b32/)
  preset32: { id: 'preset32', title: 'CIFAR-10 preset step at its training batch, 32', kind: 'step', model: 'vit_tiny', depth: 6, imgSize: 32, patch: 4, predictor: PRESET_PRED, batch: 32 },
  tiny12: { id: 'tiny12', title: 'ViT-tiny 12 blocks step (patch 4, 32 px, predictor 96/2), batch 64', kind: 'step', model: 'vit_tiny', depth: 12, imgSize: 32, patch: 4, predictor: PRESET_PRED, batch: 64 },
  small8: { id: 'small8', title: 'ViT-small/8 step (384/12, 64 px, predictor 192/2), batch 16', kind: 'step', model: 'vit_small', depth: 12, imgSize: 64, patch: 8, predictor: { embedDim: 192, depth: 2, numHeads: 6 }, batch: 16 },
  embed: { id: 'embed', title: 'embedding throughput (preset encoder forward, no grad), batch 256', kind: 'embed', model: 'vit_tiny', depth: 6, imgSize: 32, patch: 4, predictor: PRESET_PRED, batch: 256 },
  // the smoke-test row: seconds, not minutes
  tiny: { id: 'tiny', title: 'tiny step (ViT 192/1, patch 4, 32 px, predictor 96/1), batch 8', kind: 'step', model: 'vit_tiny', depth: 1, imgSize: 32, patch: 4, predictor: { embedDim: 96, depth: 1, numHeads: 3 }, batch: 8 },
};
export const DEFAULT_ROWS = ['preset', 'tiny12', 'small8', 'embed'];

/** The shipped CIFAR-10 preset with the row's architecture and batch (masks and losses from the preset). */
export function rowConfig(row: BenchRow): PretrainConfig {
  const preset = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'configs', 'cifar10-cpu.yaml');
  return resolveConfig(preset, {
    method: 'cjepa',
    model: { name: row.model, patch: row.patch, imgSize: row.imgSize, depth: row.depth },
    predictor: row.predictor,
    optim: { batch: row.batch },
  });
}

/** The C-JEPA loss of the timed step: block-pair VICReg at the preset's beta (one view, as the parity tests). */
export function stepLossOptions(cfg: PretrainConfig) {
  return { betaVicreg: cfg.cjepa.betaVicreg, weights: { inv: 25, var: 25, cov: 1 }, placement: 'block-pair' as const, distance: 'smooth_l1' as const };
}

export interface MaskShape { contextLen: number; targetLen: number; nTargets: number }

/**
 * GEMM FLOPs of one forward (multiply-add = 2 FLOPs): per block 2 S N (3D^2 + D^2 + 2 D Dh) for qkv,
 * proj and the MLP (Dh = 4D), plus 4 S N^2 D for q k^T and attn v; the patch-embedding conv as a GEMM.
 * A step is 3x the forward of the trained nets (forward + backward) plus 1x the target encoder's
 * forward. LayerNorm, softmax, GELU, losses and the optimiser are not counted (a few % of the FLOPs).
 */
export function rowFlops(row: BenchRow, m: MaskShape): number {
  const { embedDim: D, numHeads: _h } = VIT_SIZES[row.model]!;
  const G = (row.imgSize / row.patch) ** 2;
  const B = row.batch;
  const block = (S: number, N: number, d: number) => 2 * S * N * (4 * d * d + 2 * d * 4 * d) + 4 * S * N * N * d;
  const patch = 2 * B * G * D * 3 * row.patch * row.patch;
  const fullEncoder = patch + row.depth * block(B, G, D);
  if (row.kind === 'embed') return fullEncoder;
  const Dp = row.predictor.embedDim;
  const contextEncoder = patch + row.depth * block(B, m.contextLen, D);
  const predictor = 2 * B * m.contextLen * D * Dp + row.predictor.depth * block(m.nTargets * B, m.contextLen + m.targetLen, Dp)
    + 2 * m.nTargets * B * m.targetLen * Dp * D;
  return 3 * (contextEncoder + predictor) + fullEncoder;
}
