// What the training loop needs from a method: its networks, its views, one forward of a batch, and
// what happens after the optimiser step. Each method reads in one file (jepa_method.ts, vicreg_method.ts);
// the loop in trainer.ts is the same for all of them.
import type { Tensor } from '../tensor/index.js';
import type { Module } from '../nn/module.js';
import type { VisionTransformer } from '../nn/vit.js';
import type { Batch, ViewSpec } from '../data/index.js';
import type { PretrainConfig } from '../config.js';
import type { CheckpointState } from './checkpoint.js';
import type { AllGather } from './losses.js';
import { decayWindow } from './schedulers.js';

/**
 * Where this process sits in data-parallel training. Every rank draws the global batch's masks from
 * the shared seed and keeps its rows; VICReg statistics and BatchNorm use the all-gathered global batch.
 */
export interface MethodShard {
  rank: number;
  worldSize: number;
  /** Autograd-aware all-gather of rows over ranks; undefined in one process. */
  allGather?: AllGather;
}
export const SINGLE_SHARD: MethodShard = { rank: 0, worldSize: 1 };

export interface TrainingMethod {
  /** Every network saved in a checkpoint, by file stem (official state-dict names inside). */
  readonly networks: Record<string, Module>;
  /** The networks the optimiser trains, by parameter-name prefix. */
  readonly trainable: [string, Module][];
  /** Augmented views the data loader builds for each image. */
  readonly views: ViewSpec[];
  /** The encoder users evaluate and embed with (the EMA target for JEPA methods). */
  readonly evalEncoder: VisionTransformer;
  /** The encoder that receives gradients (the same as evalEncoder for VICReg). */
  readonly onlineEncoder: VisionTransformer;
  /**
   * Forward and loss of one batch at 0-based iteration `step` of a `totalSteps`-step run (schedules given
   * as a share of the run need it): the terms, `loss` first (the caller runs backward).
   */
  forward(batch: Batch, step?: number, totalSteps?: number): Record<string, Tensor>;
  /** After the optimiser step (EMA of the target encoder); returns the momentum used, or null. */
  afterUpdate(step: number, totalSteps: number): number | null;
  /** Method state that a checkpoint must carry (mask sampler RNG). */
  saveState(): Partial<CheckpointState>;
  loadState(s: CheckpointState): void;
  dispose(): void;
}



import { JepaMethod } from './jepa_method.js';
import { VicregMethod } from './vicreg_method.js';

/** A number as a weight: 0.001, 25, 1e-4. */
const w = (x: number) => String(+x.toPrecision(4));

/**
 * How a method's loss is made of the terms it logs, for people: 'loss = jepa + 0.001·vicreg (vicreg =
 * 25·inv + 25·var + 1·cov, on context)' for C-JEPA, 'loss = jepa' for I-JEPA, '25·inv + 25·var + 1·cov' for VICReg.
 */
export function lossFormula(cfg: PretrainConfig, totalSteps?: number): string {
  const vic = (v: { inv: number; var: number; cov: number; decorrelate?: string; stdTarget?: number }) =>
    `${w(v.inv)}·inv + ${w(v.var)}·var${v.stdTarget !== undefined && v.stdTarget !== 1 ? `(std ≥ ${w(v.stdTarget)})` : ''} + ${w(v.cov)}·${v.decorrelate === 'correlation' ? 'corr' : 'cov'}`;
  if (cfg.method === 'vicreg') return `loss = ${vic(cfg.vicreg)}`;
  const dist = cfg.loss.distance === 'l2' ? 'L2' : 'smooth L1';
  if (cfg.method === 'ijepa' || cfg.cjepa.betaVicreg === 0) return `loss = jepa (${dist} to the target encoder's blocks)`;
  const { betaVicreg, betaDecaySteps, betaDecayStart } = cfg.cjepa;
  const shares = [betaDecayStart, betaDecaySteps].some((v) => typeof v === 'string');
  let beta = w(betaVicreg);
  if (shares && totalSteps === undefined) beta += `→0 over ${betaDecaySteps} of the run from ${betaDecayStart}`;
  else {
    const { start: s0, steps: n } = decayWindow(cfg.cjepa, totalSteps ?? 0);
    const pct = (x: number) => `${+((100 * x) / Math.max(1, totalSteps ?? 0)).toFixed(1)}%`;
    const share = shares ? ` (${pct(s0)}-${pct(s0 + n)} of ${totalSteps} steps)` : '';
    if (n > 0) beta += s0 === 0 ? `→0 over ${n} steps${share}` : `→0 over steps ${s0}-${s0 + n}${share}`;
  }
  return `loss = jepa + ${beta}·vicreg (jepa: ${dist}; vicreg = ${vic(cfg.cjepa)}, placement ${cfg.cjepa.placement})`;
}

/** The training method of a config: I-JEPA / C-JEPA (JepaMethod) or VICReg (VicregMethod). */
export function createMethod(cfg: PretrainConfig, channels: number, shard: MethodShard = SINGLE_SHARD): TrainingMethod {
  return cfg.method === 'vicreg' ? new VicregMethod(cfg, channels, shard) : new JepaMethod(cfg, channels, shard);
}
