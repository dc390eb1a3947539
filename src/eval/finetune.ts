// Fine-tuning: the whole encoder plus a linear head on mean-pooled tokens, cross-entropy, AdamW with
// linear warmup + cosine decay, optional layer-wise learning-rate decay (BEiT / MAE: the parameters of
// layer l of L + 1 get lr * decay^(L + 1 - l), with the patch embedding at layer 0, block i at layer
// i + 1 and the final norm and head at L + 1), weight decay on >= 2-D weights only. Training views are
// the eval transform, optionally with random horizontal flips. The encoder is modified in place.
import { Tensor, tensor, tidy, noGrad, F, Generator } from '../tensor/index.js';
import type { VisionTransformer } from '../nn/vit.js';
import { Linear } from '../nn/layers.js';
import { AdamW, ijepaParamGroups } from '../method/optim.js';
import { WarmupCosineSchedule } from '../method/schedulers.js';
import { evalTransform, type Dataset } from '../data/index.js';
import { evalLoader, encoderInput } from './features.js';
import { accuracy } from './linear_probe.js';

export interface FinetuneOptions {
  /** Epochs over the training set (default 5). */
  epochs?: number;
  /** Batch size (default 64, capped at the training-set size). */
  batchSize?: number;
  /** Peak learning rate (default 5e-4 * batchSize / 256). */
  lr?: number;
  /** Final learning rate of the cosine (default 1e-6). */
  minLr?: number;
  /** Linear warmup, in epochs (default 1, at most a fifth of the run). */
  warmupEpochs?: number;
  /** AdamW weight decay on weights (default 0.05). */
  weightDecay?: number;
  /** Layer-wise lr decay factor in (0, 1]; 1 = none (default 0.75). */
  layerDecay?: number;
  /** Random horizontal flips of the training images (default true). */
  flip?: boolean;
  /** Number of classes (default: from the datasets). */
  numClasses?: number;
  seed?: number;
  workers?: number;
  /** After every step (1-based), of totalSteps = epochs x steps per epoch. */
  onLog?: (l: { epoch: number; step: number; loss: number; lr: number; totalSteps: number; epochs: number }) => void;
}

export interface FinetuneResult {
  /** Test top-1 accuracy after the last epoch (NaN when the test set is unlabelled). */
  top1: number;
  /** Mean training loss per epoch. */
  epochLoss: number[];
  steps: number;
}

/** Layer id of an encoder parameter (BEiT / MAE convention) for an encoder of `depth` blocks. */
export function layerId(name: string, depth: number): number {
  if (name.startsWith('patch_embed') || name === 'pos_embed' || name === 'cls_token') return 0;
  const m = /^blocks\.(\d+)\./.exec(name);
  if (m) return Number(m[1]) + 1;
  return depth + 1;
}

/** Learning-rate multiplier of each layer id 0..depth+1: decay^(depth + 1 - id). */
export function layerScales(depth: number, decay: number): number[] {
  return Array.from({ length: depth + 2 }, (_, i) => decay ** (depth + 1 - i));
}

function labelsOf(ds: Dataset): Int32Array {
  return Int32Array.from({ length: ds.length }, (_, i) => ds.labelOf(i));
}

/** Fine-tunes `encoder` (in place) with a new linear head on `train`, then measures top-1 on `test`. */
export async function finetune(encoder: VisionTransformer, train: Dataset, test: Dataset, o: FinetuneOptions = {}): Promise<FinetuneResult> {
  const trainLabels = labelsOf(train);
  for (const l of trainLabels) if (l < 0) throw new Error(`fine-tuning needs labels: ${train.spec} has unlabelled samples`);
  let C = o.numClasses ?? Math.max(train.numClasses, test.numClasses);
  for (const l of trainLabels) C = Math.max(C, l + 1);
  const epochs = o.epochs ?? 5;
  if (!Number.isInteger(epochs) || epochs < 1) throw new Error(`fine-tuning: epochs must be a positive integer, got ${epochs}`);
  const B = Math.min(o.batchSize ?? 64, train.length);
  const lr = o.lr ?? (5e-4 * B) / 256;
  const decay = o.layerDecay ?? 0.75;
  if (!(decay > 0 && decay <= 1)) throw new Error(`fine-tuning: layerDecay must be in (0, 1], got ${decay}`);
  const seed = o.seed ?? 0;
  const { size } = encoderInput(encoder);
  const view = { ...evalTransform({ size }), name: o.flip === false ? 'eval' : 'eval+flip', flipP: o.flip === false ? 0 : 0.5 };
  const loader = evalLoader(encoder, train, { batchSize: B, view, shuffle: true, dropLast: true, seed, workers: o.workers });
  const ipe = loader.stepsPerEpoch;
  const total = epochs * ipe;
  const warmup = Math.min(Math.round((o.warmupEpochs ?? 1) * ipe), Math.floor(total / 5));

  // everything trains but the fixed sin-cos position embedding
  const named = encoder.namedParameters().filter(([n]) => n !== 'pos_embed');
  for (const [, p] of named) p.requiresGrad_(true);
  const head = new Linear(encoder.embedDim, C, true, { initStd: 2e-5, generator: new Generator(seed) });
  const depth = encoder.blocks.length;
  const scales = layerScales(depth, decay);
  const byLayer: [string, Tensor][][] = scales.map(() => []);
  for (const [n, p] of named) byLayer[layerId(n, depth)]!.push([n, p]);
  for (const [n, p] of head.namedParameters('head.')) byLayer[depth + 1]!.push([n, p]);
  const opts = byLayer.map((ps) => new AdamW(ijepaParamGroups(ps), { betas: [0.9, 0.999], eps: 1e-8 }));
  const sched = new WarmupCosineSchedule({ warmupSteps: warmup, startLr: 0, refLr: lr, finalLr: o.minLr ?? 1e-6, totalSteps: total });
  const wd = o.weightDecay ?? 0.05;
  const device = encoder.posEmbed.device;
  const devOpt = device === 'cpu' ? {} : { device };
  const epochLoss: number[] = [];
  let step = 0;
  try {
    encoder.train();
    for (let e = 0; e < epochs; e++) {
      let sum = 0, n = 0;
      for await (const b of loader.epoch(e)) {
        const rate = sched.valueAtCounter(step);
        const loss = tidy(() => {
          const x = tensor(b.views[0]!, b.shape, devOpt);
          const y = tensor(Int32Array.from(b.labels), [b.labels.length], devOpt).long();
          const logits = head.forward(encoder.forward(x).mean(1));
          const ce = F.crossEntropy(logits, y);
          ce.backward();
          return ce.item();
        });
        if (!Number.isFinite(loss)) throw new Error(`fine-tuning diverged at step ${step + 1} (loss ${loss}); lower --ft-lr`);
        opts.forEach((opt, i) => opt.update(rate * scales[i]!, wd));
        encoder.zeroGrad();
        head.zeroGrad();
        o.onLog?.({ epoch: e, step: step + 1, loss, lr: rate, totalSteps: total, epochs });
        sum += loss; n++; step++;
      }
      epochLoss.push(sum / Math.max(1, n));
    }
  } finally {
    await loader.close();
    opts.forEach((opt) => opt.dispose());
    for (const [, p] of named) p.requiresGrad_(false);
    encoder.eval();
  }

  // evaluation on the test set (eval transform, no flips)
  let correct = 0, seen = 0, labelled = true;
  const testLoader = evalLoader(encoder, test, { batchSize: Math.max(B, 64), workers: o.workers, corrupt: 'drop' });
  try {
    for await (const b of testLoader.epoch(0)) {
      if (b.labels.length === 0) continue; // every sample of the batch was corrupt
      const pred = noGrad(() => tidy(() => head.forward(encoder.forward(tensor(b.views[0]!, b.shape, devOpt)).mean(1)).argmax(1).to('int32').to(null, 'cpu').data<'int32'>()));
      for (const l of b.labels) if (l < 0) labelled = false;
      correct += accuracy(pred, b.labels) * b.labels.length;
      seen += b.labels.length;
    }
  } finally {
    await testLoader.close();
    head.dispose();
  }
  return { top1: labelled && seen > 0 ? correct / seen : NaN, epochLoss, steps: step };
}
