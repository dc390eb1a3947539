// Building blocks with the official I-JEPA / timm parameter names and initialisation.
import { Tensor, Generator, F, zeros, ones, empty, tidy, noGrad } from '../tensor/index.js';
import { Module } from './module.js';
import { truncNormal_ } from './init.js';

export interface InitOptions {
  /** std of the truncated-normal init of Linear / Conv weights (official 0.02) */
  initStd?: number;
  generator?: Generator;
}

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true, init: InitOptions = {}) {
    super();
    this.weight = this.param('weight', truncNormal_(empty([outFeatures, inFeatures]), init.initStd ?? 0.02, init.generator));
    this.bias = bias ? this.param('bias', zeros([outFeatures])) : null;
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly dim: number, readonly eps = 1e-6) {
    super();
    this.weight = this.param('weight', ones([dim]));
    this.bias = this.param('bias', zeros([dim]));
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, [this.dim], this.weight, this.bias, this.eps);
  }
  /** forward() for an output that feeds a Linear: under bf16 autocast it comes out bf16 (one pass instead of LayerNorm + cast). */
  forwardToLinear(x: Tensor): Tensor {
    return F.layerNormToLinear(x, this.weight, this.bias, this.eps);
  }
}

/** BatchNorm over the feature dim of (N, C) inputs, with running statistics (VICReg expander). */
/** This process's rank and an autograd-aware all-gather of rows over ranks (rank order). */
export interface BatchSync {
  rank: number;
  allGather: (x: Tensor) => Tensor;
}

export class BatchNorm1d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  readonly numBatchesTracked: Tensor;
  constructor(readonly dim: number, readonly eps = 1e-5, readonly momentum = 0.1) {
    super();
    this.weight = this.param('weight', ones([dim]));
    this.bias = this.param('bias', zeros([dim]));
    this.runningMean = this.buffer('running_mean', zeros([dim]));
    this.runningVar = this.buffer('running_var', ones([dim]));
    // kept for state-dict compatibility with torch.nn.BatchNorm1d
    this.numBatchesTracked = this.buffer('num_batches_tracked', zeros([], { dtype: 'int64' }));
  }
  /**
   * Data parallelism (SyncBatchNorm): training statistics over the global batch. The rows of every
   * rank are gathered (with gradient), normalised by the same kernel one process would run on the
   * global batch, and this rank keeps its rows; running statistics stay identical on every rank.
   */
  sync: BatchSync | undefined;
  forward(x: Tensor): Tensor {
    if (this.training) noGrad(() => this.numBatchesTracked.add_(1));
    const opts = { weight: this.weight, bias: this.bias, training: this.training, momentum: this.momentum, eps: this.eps };
    const s = this.sync;
    if (!this.training || !s) return F.batchNorm(x, this.runningMean, this.runningVar, opts);
    const n = x.size(0);
    return tidy(() => F.batchNorm(s.allGather(x), this.runningMean, this.runningVar, opts).narrow(0, s.rank * n, n));
  }
}

/** Image -> patch tokens: conv with kernel = stride = patch, then (B, N, D). */
export class PatchEmbed extends Module {
  readonly proj: { weight: Tensor; bias: Tensor };
  constructor(readonly patchSize: number, readonly inChans: number, readonly embedDim: number, init: InitOptions = {}) {
    super();
    const conv = new (class extends Module {
      readonly weight = this.param('weight', truncNormal_(empty([embedDim, inChans, patchSize, patchSize]), init.initStd ?? 0.02, init.generator));
      readonly bias = this.param('bias', zeros([embedDim]));
    })();
    this.proj = this.child('proj', conv);
  }
  /** (B, N, C), contiguous: as a transposed view the whole residual stream after it kept that layout (element-wise ops
   * follow their input's strides) and every LayerNorm of the full-image encoder copied its input first. */
  forward(x: Tensor): Tensor {
    return tidy(() => F.conv2d(x, this.proj.weight, this.proj.bias, { stride: this.patchSize }).flatten(2).transpose(1, 2).contiguous());
  }
}

export class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(dim: number, hidden: number, init: InitOptions = {}) {
    super();
    this.fc1 = this.child('fc1', new Linear(dim, hidden, true, init));
    this.fc2 = this.child('fc2', new Linear(hidden, dim, true, init));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.fc2.forward(F.gelu(this.fc1.forward(x))));
  }
}

/** Multi-head self-attention, qkv in one Linear (official layout: reshape(B, N, 3, H, C/H)). */
export class Attention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly scale: number;
  constructor(readonly dim: number, readonly numHeads: number, qkvBias = true, init: InitOptions = {}) {
    super();
    if (dim % numHeads !== 0) throw new Error(`attention: dim ${dim} is not divisible by heads ${numHeads}`);
    this.scale = (dim / numHeads) ** -0.5;
    this.qkv = this.child('qkv', new Linear(dim, dim * 3, qkvBias, init));
    this.proj = this.child('proj', new Linear(dim, dim, true, init));
  }
  /** keyBias: optional additive bias on the scores, (B, 1, 1, N): 0 for real keys, -inf for padding. */
  forward(x: Tensor, keyBias?: Tensor): Tensor {
    return tidy(() => this.proj.forward(F.attention(this.qkv.forward(x), this.numHeads, this.scale, keyBias)));
  }
}

/** Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x)). */
export class Block extends Module {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  constructor(dim: number, numHeads: number, mlpRatio = 4, qkvBias = true, init: InitOptions = {}) {
    super();
    this.norm1 = this.child('norm1', new LayerNorm(dim));
    this.attn = this.child('attn', new Attention(dim, numHeads, qkvBias, init));
    this.norm2 = this.child('norm2', new LayerNorm(dim));
    this.mlp = this.child('mlp', new Mlp(dim, Math.round(dim * mlpRatio), init));
  }
  forward(x: Tensor, keyBias?: Tensor): Tensor {
    return tidy(() => {
      const h = F.residualAdd(x, this.attn.forward(this.norm1.forwardToLinear(x), keyBias));  // fp32 stream + bf16 branch under autocast
      return F.residualAdd(h, this.mlp.forward(this.norm2.forwardToLinear(h)));
    });
  }
}

/** A list of child modules named 0, 1, 2, ... (nn.ModuleList). */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items.map((m, i) => this.child(String(i), m));
  }
}
