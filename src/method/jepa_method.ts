// I-JEPA and C-JEPA as a training method: context encoder + EMA target encoder + predictor, multi-block
// masks, and (C-JEPA) the VICReg regulariser at its configured placement. I-JEPA is betaVicreg = 0.
import { Tensor, tensor, cat, onDefaultDevice } from '../tensor/index.js';
import { VisionTransformer, gridOf } from '../nn/vit.js';
import { Predictor } from '../nn/predictor.js';
import { Expander } from '../nn/expander.js';
import type { Module } from '../nn/module.js';
import type { PretrainConfig } from '../config.js';
import { ijepaTransform, vicregViews, type Batch, type ViewSpec } from '../data/index.js';
import { MultiBlockMaskSampler, selectMasks, type MaskBatch } from './masks.js';
import { momentumAt, autoEmaStart, betaVicregAt, decayWindow } from './schedulers.js';
import { emaUpdate } from './ema.js';
import { jepaForward, maskTensors } from './step.js';
import { encoderConfig } from '../config.js';
import type { CjepaOptions } from './losses.js';
import type { CheckpointState } from './checkpoint.js';
import { SINGLE_SHARD, type MethodShard, type TrainingMethod } from './training_method.js';

export class JepaMethod implements TrainingMethod {
  readonly encoder: VisionTransformer;
  readonly targetEncoder: VisionTransformer;
  readonly predictor: Predictor;
  /** C-JEPA 'views' and 'target' placements: optional projector of pooled embeddings before VICReg. */
  readonly projector: Expander | null;
  readonly sampler: MultiBlockMaskSampler;
  readonly views: ViewSpec[];
  readonly options: CjepaOptions;
  /** Two augmented views per image, both through the JEPA loss, VICReg between them. */
  readonly twoViews: boolean;
  /** 'target' placement with cjepa.teacherView 'augmented': view 2 of each image goes to the teacher only. */
  readonly teacherView: boolean;

  constructor(readonly cfg: PretrainConfig, channels: number, readonly shard: MethodShard = SINGLE_SHARD) {
    const m = cfg.model, size = m.imgSize;
    const encCfg = encoderConfig(cfg, channels);
    this.encoder = new VisionTransformer(encCfg);
    this.targetEncoder = new VisionTransformer(encCfg);
    this.targetEncoder.loadStateDict(this.encoder.stateDict());
    for (const p of this.targetEncoder.parameters()) p.requiresGrad_(false);
    this.predictor = new Predictor({
      grid: gridOf(size, m.patch), embedDim: encCfg.embedDim, seed: cfg.seed,
      predictorEmbedDim: cfg.predictor.embedDim, depth: cfg.predictor.depth, numHeads: cfg.predictor.numHeads,
    });
    const beta = cfg.method === 'ijepa' ? 0 : cfg.cjepa.betaVicreg;
    this.options = { betaVicreg: beta, weights: { inv: cfg.cjepa.inv, var: cfg.cjepa.var, cov: cfg.cjepa.cov, decorrelate: cfg.cjepa.decorrelate, stdTarget: cfg.cjepa.stdTarget }, placement: cfg.cjepa.placement, distance: cfg.loss.distance };
    this.twoViews = cfg.method === 'cjepa' && cfg.cjepa.placement === 'views';
    const targetTerm = cfg.method === 'cjepa' && beta > 0 && cfg.cjepa.placement === 'target';
    this.projector = (this.twoViews || targetTerm) && cfg.cjepa.projector.length > 0 ? new Expander([encCfg.embedDim, ...cfg.cjepa.projector], cfg.seed, cfg.cjepa.projectorInitStd) : null;
    const crop = ijepaTransform({ size, scale: cfg.aug.scale, flip: cfg.aug.flip });
    const vicregPair = () => vicregViews({ size, scale: cfg.aug.viewScale });
    this.teacherView = targetTerm && cfg.cjepa.teacherView === 'augmented';
    if (this.twoViews) this.views = cfg.cjepa.viewAug === 'vicreg' ? vicregPair() : [crop, { ...crop, name: 'ijepa-2' }];
    // the teacher's view: VICReg's second view (jitter, grayscale, solarisation), its crop at aug.viewScale
    else if (this.teacherView) this.views = [crop, { ...vicregPair()[1], name: 'teacher' }];
    else this.views = [crop];
    if (this.projector && shard.allGather) this.projector.syncBatchNorm({ rank: shard.rank, allGather: shard.allGather });
    this.sampler = new MultiBlockMaskSampler({ gridSize: gridOf(size, m.patch), allowOverlap: false, ...cfg.masks }, cfg.seed);
  }

  get networks(): Record<string, Module> {
    return { encoder: this.encoder, target_encoder: this.targetEncoder, predictor: this.predictor, ...(this.projector ? { projector: this.projector } : {}) };
  }
  get trainable(): [string, Module][] {
    return [['encoder', this.encoder], ['predictor', this.predictor], ...(this.projector ? [['projector', this.projector] as [string, Module]] : [])];
  }
  get evalEncoder(): VisionTransformer { return this.targetEncoder; }
  get onlineEncoder(): VisionTransformer { return this.encoder; }

  forward(batch: Batch, step = 0, totalSteps?: number): Record<string, Tensor> {
    // two views: one batch of 2B images (view 1 of every image, then view 2), each with its own masks
    const images = this.twoViews ? cat(batch.views.map((v) => tensor(v, batch.shape, onDefaultDevice())), 0) : tensor(batch.views[0]!, batch.shape, onDefaultDevice());
    const teacherImages = this.teacherView ? tensor(batch.views[1]!, batch.shape, onDefaultDevice()) : undefined;
    const masks = maskTensors(this.sampleMasks(images.size(0)));
    const projector = this.projector ? (x: Tensor) => this.projector!.forward(x) : undefined;
    const options = { ...this.options, betaVicreg: this.betaAt(step, totalSteps) };
    const t = jepaForward({ encoder: this.encoder, targetEncoder: this.targetEncoder, predictor: this.predictor }, images, masks.ctx, masks.tgt, options, this.shard.allGather, projector, { fullView: this.twoViews && this.cfg.cjepa.viewInput === 'full', ctxPad: masks.ctxPad, teacherImages });
    return this.cfg.method === 'ijepa' ? { loss: t.loss } : { ...t };
  }

  /** The VICReg weight at `step`; a decay given as a share of the run needs the run's length. */
  betaAt(step: number, totalSteps?: number): number {
    const { start, steps } = decayWindow(this.cfg.cjepa, totalSteps);
    return betaVicregAt(step, this.options.betaVicreg, steps, start);
  }


  /**
   * Masks of this rank's n images. With several ranks every rank draws the global batch's masks (one
   * RNG stream, the collator's common lengths over the global batch) and keeps its rows: view-major
   * [view 1 of all images, view 2 of all images] globally and locally.
   */
  private sampleMasks(n: number): MaskBatch {
    const { rank, worldSize } = this.shard;
    if (worldSize === 1) return this.sampler.sample(n);
    const views = this.twoViews ? 2 : 1;
    const b = n / views, global = b * worldSize;
    const rows: number[] = [];
    for (let v = 0; v < views; v++) for (let i = 0; i < b; i++) rows.push(v * global + rank * b + i);
    return selectMasks(this.sampler.sample(n * worldSize), rows);
  }

  afterUpdate(step: number, totalSteps: number): number {
    const o = this.cfg.optim;
    const [m0, m1] = o.ema === 'auto' ? [autoEmaStart(totalSteps), 1] : o.ema;
    const momentum = momentumAt(step, totalSteps, m0, m1, o.ipeScale);
    emaUpdate(this.targetEncoder.parameters(), this.encoder.parameters(), momentum);
    return momentum;
  }

  saveState(): Partial<CheckpointState> { return { maskRng: this.sampler.rng.state() }; }
  loadState(s: CheckpointState): void { if (s.maskRng) this.sampler.rng.setState(s.maskRng); }
  dispose(): void { for (const n of Object.values(this.networks)) n.dispose(); }
}
