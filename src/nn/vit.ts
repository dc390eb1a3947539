// Vision Transformer encoder as in the official I-JEPA code: conv patch embedding, fixed 2-D sin-cos
// position embedding, pre-norm blocks, no CLS token, final LayerNorm, official initialisation.
import { Tensor, Generator, tidy, cat } from '../tensor/index.js';
import { Module } from './module.js';
import { Block, LayerNorm, ModuleList, PatchEmbed } from './layers.js';
import { sincos2dPosEmbed } from './pos_embed.js';
import { noGrad } from '../tensor/index.js';

export interface ViTSize { embedDim: number; depth: number; numHeads: number; mlpRatio?: number }

/** Named sizes (dim / depth / heads) of the I-JEPA code. */
export const VIT_SIZES: Record<string, ViTSize> = {
  vit_tiny: { embedDim: 192, depth: 12, numHeads: 3 },
  vit_small: { embedDim: 384, depth: 12, numHeads: 6 },
  vit_base: { embedDim: 768, depth: 12, numHeads: 12 },
  vit_large: { embedDim: 1024, depth: 24, numHeads: 16 },
  vit_huge: { embedDim: 1280, depth: 32, numHeads: 16 },
  vit_giant: { embedDim: 1408, depth: 40, numHeads: 16, mlpRatio: 48 / 11 }, // official MLP ratio 48/11 (hidden 6144)
};

export interface ViTConfig {
  imgSize: number | [number, number];
  patchSize: number;
  inChans: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio?: number;
  qkvBias?: boolean;
  initStd?: number;
  seed?: number;
}

/** Resolves a named size (vit_tiny...) with overrides into a full config. */
export function vitConfig(name: string, o: Omit<ViTConfig, 'embedDim' | 'depth' | 'numHeads'> & Partial<ViTSize>): ViTConfig {
  const size = VIT_SIZES[name];
  if (!size) throw new Error(`unknown model '${name}' (known: ${Object.keys(VIT_SIZES).join(', ')})`);
  return { ...size, ...o, embedDim: o.embedDim ?? size.embedDim, depth: o.depth ?? size.depth, numHeads: o.numHeads ?? size.numHeads };
}

export function gridOf(imgSize: number | [number, number], patch: number): [number, number] {
  const [h, w] = typeof imgSize === 'number' ? [imgSize, imgSize] : imgSize;
  if (h % patch !== 0 || w % patch !== 0) throw new Error(`image size ${h}x${w} is not divisible by the patch size ${patch}`);
  return [h / patch, w / patch];
}

/**
 * Keeps, for each index set in `masks` (each (B, K) int64), the tokens of x (B, N, D) at those
 * indices, and concatenates the results along the batch: (len(masks) * B, K, D).
 */
export function applyMasks(x: Tensor, masks: readonly Tensor[]): Tensor {
  return tidy(() => {
    const D = x.size(-1);
    const parts = masks.map((m) => {
      const [B, K] = m.shape as [number, number];
      return x.gather(1, m.unsqueeze(-1).expand([B, K, D]));
    });
    return parts.length === 1 ? parts[0]! : cat(parts, 0);
  });
}

/** Official rescale of residual projections: weight / sqrt(2 * layer) (1-based). */
export function fixInitWeight(blocks: readonly Block[]): void {
  noGrad(() => blocks.forEach((b, i) => {
    b.attn.proj.weight.div_(Math.sqrt(2 * (i + 1)));
    b.mlp.fc2.weight.div_(Math.sqrt(2 * (i + 1)));
  }));
}

export class VisionTransformer extends Module {
  readonly patchEmbed: PatchEmbed;
  readonly posEmbed: Tensor;
  readonly blocks: Block[];
  readonly norm: LayerNorm;
  readonly grid: [number, number];

  constructor(readonly config: ViTConfig) {
    super();
    const { embedDim, depth, numHeads, patchSize, inChans } = config;
    if (![1, 3].includes(inChans)) throw new Error(`inChans must be 1 or 3, got ${inChans}`);
    this.grid = gridOf(config.imgSize, patchSize);
    const init = { initStd: config.initStd ?? 0.02, generator: new Generator(config.seed ?? 0) };
    this.patchEmbed = this.child('patch_embed', new PatchEmbed(patchSize, inChans, embedDim, init));
    // A frozen parameter in the official code, so it is in the state dict as "pos_embed".
    this.posEmbed = this.param('pos_embed', sincos2dPosEmbed(embedDim, ...this.grid), false);
    this.blocks = this.child('blocks', new ModuleList(
      Array.from({ length: depth }, () => new Block(embedDim, numHeads, config.mlpRatio ?? 4, config.qkvBias ?? true, init)))).items;
    this.norm = this.child('norm', new LayerNorm(embedDim));
    fixInitWeight(this.blocks);
  }

  get numPatches(): number {
    return this.grid[0] * this.grid[1];
  }
  get embedDim(): number {
    return this.config.embedDim;
  }

  /**
   * images (B, C, H, W) -> tokens (B, N, D); with `masks`, only the kept tokens: (len(masks) B, K, D).
   * keyBias (len(masks) B, 1, 1, K): padded mask rows (contextFit 'pad'), -inf on padding keys.
   */
  forward(images: Tensor, masks?: readonly Tensor[], keyBias?: Tensor): Tensor {
    return tidy(() => {
      const s = images.shape;
      const [gh, gw] = this.grid;
      if (s.length !== 4 || s[1] !== this.config.inChans || s[2] !== gh * this.config.patchSize || s[3] !== gw * this.config.patchSize) {
        throw new Error(`encoder expects images [B, ${this.config.inChans}, ${gh * this.config.patchSize}, ${gw * this.config.patchSize}], got [${s.join(', ')}]`);
      }
      let x = this.patchEmbed.forward(images).add(this.posEmbed);
      if (masks) x = applyMasks(x, masks);
      for (const b of this.blocks) x = b.forward(x, keyBias);
      return this.norm.forward(x);
    });
  }

  /** Features of every block's output after the final norm? No: raw block outputs, for "last k layers" pooling. */
  forwardLayers(images: Tensor): Tensor[] {
    return tidy(() => {
      let x = this.patchEmbed.forward(images).add(this.posEmbed);
      const outs: Tensor[] = [];
      for (const b of this.blocks) { x = b.forward(x); outs.push(x); }
      outs[outs.length - 1] = this.norm.forward(x);
      return outs;
    });
  }
}
