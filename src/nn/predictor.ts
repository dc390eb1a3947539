// The I-JEPA predictor: a narrow ViT that sees the context tokens plus one learned mask token (with
// its position) per target patch, and predicts the target encoder's features at those positions.
import { Tensor, Generator, tidy, cat, empty, zeros } from '../tensor/index.js';
import { Module } from './module.js';
import { Block, LayerNorm, Linear, ModuleList } from './layers.js';
import { sincos2dPosEmbed } from './pos_embed.js';
import { applyMasks, fixInitWeight } from './vit.js';
import { truncNormal_ } from './init.js';

export interface PredictorConfig {
  grid: [number, number];
  embedDim: number;          // encoder width (input and output)
  predictorEmbedDim: number; // internal width
  depth: number;
  numHeads: number;
  mlpRatio?: number;
  qkvBias?: boolean;
  initStd?: number;
  seed?: number;
}

/** Each consecutive chunk of B rows repeated `repeat` times (the official repeat_interleave_batch). */
export function repeatInterleaveBatch(x: Tensor, B: number, repeat: number): Tensor {
  if (repeat === 1) return x.clone();
  return tidy(() => {
    const N = x.size(0) / B;
    const parts: Tensor[] = [];
    for (let i = 0; i < N; i++) {
      const chunk = x.narrow(0, i * B, B);
      for (let r = 0; r < repeat; r++) parts.push(chunk);
    }
    return cat(parts, 0);
  });
}

export class Predictor extends Module {
  readonly predictorEmbed: Linear;
  readonly maskToken: Tensor;
  readonly posEmbed: Tensor;
  readonly blocks: Block[];
  readonly norm: LayerNorm;
  readonly proj: Linear;

  constructor(readonly config: PredictorConfig) {
    super();
    const { embedDim, predictorEmbedDim: pd, depth, numHeads } = config;
    const init = { initStd: config.initStd ?? 0.02, generator: new Generator((config.seed ?? 0) + 1) };
    this.predictorEmbed = this.child('predictor_embed', new Linear(embedDim, pd, true, init));
    this.maskToken = this.param('mask_token', truncNormal_(empty([1, 1, pd]), init.initStd, init.generator));
    this.posEmbed = this.param('predictor_pos_embed', sincos2dPosEmbed(pd, ...config.grid), false);
    this.blocks = this.child('predictor_blocks', new ModuleList(
      Array.from({ length: depth }, () => new Block(pd, numHeads, config.mlpRatio ?? 4, config.qkvBias ?? true, init)))).items;
    this.norm = this.child('predictor_norm', new LayerNorm(pd));
    this.proj = this.child('predictor_proj', new Linear(pd, embedDim, true, init));
    fixInitWeight(this.blocks);
  }

  /**
   * ctx: encoder outputs of the context tokens, (len(masksCtx) B, Lc, D).
   * Returns predictions for every target block: (len(masksTgt) len(masksCtx) B, Lt, D),
   * block-major as the official code (block 0 for all images, then block 1, ...).
   * ctxKeyBias (len(masksCtx) B, 1, 1, Lc): padded context rows, -inf on padding (never attended to).
   */
  forward(ctx: Tensor, masksCtx: readonly Tensor[], masksTgt: readonly Tensor[], ctxKeyBias?: Tensor): Tensor {
    return tidy(() => {
      const B = ctx.size(0) / masksCtx.length;
      const pd = this.config.predictorEmbedDim;
      let x = this.predictorEmbed.forward(ctx);
      const pos = this.posEmbed.expand([B, this.posEmbed.size(1), pd]);
      x = x.add(applyMasks(pos, masksCtx));
      const nCtx = x.size(1);
      let tgtPos = applyMasks(pos, masksTgt);
      tgtPos = repeatInterleaveBatch(tgtPos, B, masksCtx.length);
      const predTokens = this.maskToken.expand(tgtPos.shape).add(tgtPos);
      x = x.repeat([masksTgt.length, 1, 1]);
      x = cat([x, predTokens], 1);
      // the prediction tokens are real keys; the context's padding stays masked, for every target block
      const bias = ctxKeyBias ? cat([ctxKeyBias, zeros([ctxKeyBias.size(0), 1, 1, predTokens.size(1)], { device: ctxKeyBias.device })], -1).repeat([masksTgt.length, 1, 1, 1]) : undefined;
      for (const b of this.blocks) x = b.forward(x, bias);
      // the prediction tokens only, then the norm: per-token, so the same values as norm-then-slice (the official order),
      // on fewer rows, and predictor_proj gets a contiguous input (F.linear's split GEMMs take no strided 3-D input)
      return this.proj.forward(this.norm.forward(x.narrow(1, nCtx, x.size(1) - nCtx)));
    });
  }
}
