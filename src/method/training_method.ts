// What the training loop needs from a method: its networks, its views, one forward of a batch, and
// what happens after the optimiser step. Each method reads in one file (jepa_method.ts, vicreg_method.ts);
// the loop in trainer.ts is the same for all of them.
import type { Tensor } from '../tensor/index.js';
import type { Module } from '../nn/module.js';
import type { VisionTransformer } from '../nn/vit.js';
import type { Batch, ViewSpec } from '../data/index.js';
import type { PretrainConfig } from '../config.js';
import type { CheckpointState } from './checkpoint.js';

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
  /** Forward and loss of one batch: the terms, `loss` first (the caller runs backward). */
  forward(batch: Batch): Record<string, Tensor>;
  /** After the optimiser step (EMA of the target encoder); returns the momentum used, or null. */
  afterUpdate(step: number, totalSteps: number): number | null;
  /** Method state that a checkpoint must carry (mask sampler RNG). */
  saveState(): Partial<CheckpointState>;
  loadState(s: CheckpointState): void;
  dispose(): void;
}



import { JepaMethod } from './jepa_method.js';
import { VicregMethod } from './vicreg_method.js';

/** The training method of a config: I-JEPA / C-JEPA (JepaMethod) or VICReg (VicregMethod). */
export function createMethod(cfg: PretrainConfig, channels: number): TrainingMethod {
  return cfg.method === 'vicreg' ? new VicregMethod(cfg, channels) : new JepaMethod(cfg, channels);
}
