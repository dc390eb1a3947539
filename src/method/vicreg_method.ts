// VICReg as a training method: one encoder, an expander, two augmented views, the VICReg loss.
import { Tensor, tensor, onDefaultDevice } from '../tensor/index.js';
import { VisionTransformer } from '../nn/vit.js';
import { Expander } from '../nn/expander.js';
import type { Module } from '../nn/module.js';
import type { PretrainConfig } from '../config.js';
import { vicregViews, type Batch, type ViewSpec } from '../data/index.js';
import { vicregForward } from './step.js';
import { encoderConfig } from '../config.js';
import { SINGLE_SHARD, type MethodShard, type TrainingMethod } from './training_method.js';

export class VicregMethod implements TrainingMethod {
  readonly encoder: VisionTransformer;
  readonly expander: Expander;
  readonly views: ViewSpec[];

  constructor(readonly cfg: PretrainConfig, channels: number, readonly shard: MethodShard = SINGLE_SHARD) {
    const encCfg = encoderConfig(cfg, channels);
    this.encoder = new VisionTransformer(encCfg);
    this.expander = new Expander([encCfg.embedDim, ...cfg.vicreg.expander], cfg.seed);
    this.views = vicregViews({ size: cfg.model.imgSize, scale: cfg.aug.viewScale });
    if (shard.allGather) this.expander.syncBatchNorm({ rank: shard.rank, allGather: shard.allGather });
  }

  get networks(): Record<string, Module> { return { encoder: this.encoder, expander: this.expander }; }
  get trainable(): [string, Module][] { return [['encoder', this.encoder], ['expander', this.expander]]; }
  get evalEncoder(): VisionTransformer { return this.encoder; }
  get onlineEncoder(): VisionTransformer { return this.encoder; }

  forward(batch: Batch): Record<string, Tensor> {
    const v1 = tensor(batch.views[0]!, batch.shape, onDefaultDevice()), v2 = tensor(batch.views[1]!, batch.shape, onDefaultDevice());
    return { ...vicregForward(this.encoder, this.expander, v1, v2, this.cfg.vicreg, this.shard.allGather) };
  }
  afterUpdate(): null { return null; }
  saveState() { return {}; }
  loadState(): void {}
  dispose(): void { this.encoder.dispose(); this.expander.dispose(); }
}
