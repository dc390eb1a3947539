/**
 * I-JEPA multi-block mask sampler (context block + M target blocks per image).
 *
 * Semantics follow the official collator (facebookresearch/ijepa, src/masks/multiblock.py) and
 * docs/method.md:
 *  - per batch ONE target block size and ONE context block size are drawn:
 *      k = floor(N * s),  h = round(sqrt(k * r)),  w = round(sqrt(k / r)),
 *    with s uniform in the scale range and r uniform in the raw aspect range, Python's
 *    round-half-even, then clipped so that h < H and w < W (`while h >= H: h -= 1`), and h, w >= 1.
 *    As in the official code one uniform draw drives both s and r of a block (so scale and aspect
 *    are perfectly correlated) unless `independentSizeDraws` is set;
 *  - per image: nTargets target blocks, then one context block from which every target patch is
 *    removed (unless allowOverlap);
 *  - all masks of a batch are truncated to the batch's shortest mask (with `contextFit: 'pad'` the
 *    context is not: each image keeps all its context patches, rows are padded to the longest and
 *    `contextLengths` says how many are real; attention then ignores the padding, see maskTensors).
 *
 * Modes:
 *  - 'faithful' reproduces the official behaviour: top-left via randint(0, H - h) with an EXCLUSIVE
 *    upper bound (the last valid row/column offset is never used), a block is valid when it has
 *    MORE than minKeep patches, when the context keeps failing the official relaxation applies (after
 *    every 20 failed placements the constraint of the last remaining target is dropped, so the context
 *    may then overlap some targets; counted in `relaxedContexts`), and truncation drops TRAILING
 *    indices. Where the official collator would loop forever this throws a clear Error instead.
 *  - 'unbiased': top-left uniform over all valid offsets 0..H-h inclusive, a block is valid when it
 *    has at least minKeep patches, a failed context resamples the whole image (targets + context,
 *    never relaxing the no-overlap rule) up to maxTries times, and truncation keeps a uniformly
 *    random subset (sorted ascending).
 */

import { Rng } from './rng.js';

export interface MultiBlockMaskConfig {
  gridSize: [number, number]; // patch grid (H/p, W/p), each >= 2
  nTargets: number; // target (predictor) blocks per image, I-JEPA 4; there is always exactly 1 context block
  targetScale: [number, number]; // target block area as a fraction of the grid, I-JEPA (0.15, 0.2)
  targetAspect: [number, number]; // target block aspect h/w, drawn uniformly in this raw range, I-JEPA (0.75, 1.5)
  contextScale: [number, number]; // context block area fraction, I-JEPA (0.85, 1.0)
  contextAspect: [number, number]; // context block aspect range, I-JEPA (1.0, 1.0)
  minKeep: number; // minimum patches per block: faithful needs > minKeep (official), unbiased >= minKeep; I-JEPA 10
  allowOverlap: boolean; // false: target patches are removed from the context
  mode: 'faithful' | 'unbiased'; // official (biased) placement/truncation, or the unbiased alternative
  maxTries?: number; // placement attempts per image before a clear Error (default 200)
  /**
   * 'block' (official): the context is one block (contextScale/contextAspect, clipped below the grid
   * size) minus the targets. 'complement': every patch not in a target, which on small grids more than
   * doubles the context (8x8, 4 targets: ~24 tokens instead of ~14 after truncation; docs/method.md). Default 'block'.
   */
  contextMode?: 'block' | 'complement';
  independentSizeDraws?: boolean; // true: separate uniforms for scale and aspect (default false = official coupling)
  /**
   * 'truncate' (official): every context is cut to the batch's shortest. 'pad': every image keeps its
   * whole context; rows are padded to the longest (by repeating their last index) and attention masks
   * the padding (key padding). Default 'truncate'.
   */
  contextFit?: 'truncate' | 'pad';
}

export interface MaskBatch {
  context: Int32Array[]; // per image, sorted row-major patch indices kept in the context, all of length contextLength
  targets: Int32Array[][]; // [nTargets][image] sorted patch indices of each target block, all of length targetLength
  contextLength: number; // Lc, common context length after truncation (with contextFit 'pad': the longest)
  /** contextFit 'pad': the real length of each image's context row (the rest is padding); absent: all Lc */
  contextLengths?: Int32Array;
  targetLength: number; // Lt, common target length after truncation
  targetBlockHW: [number, number]; // (h, w) of this batch's target blocks
  contextBlockHW: [number, number]; // (h, w) of this batch's context block (before target removal)
}

/** The masks of some images of a batch (data parallelism: this rank's rows of the global batch's masks). */
export function selectMasks(m: MaskBatch, rows: readonly number[]): MaskBatch {
  const contextLengths = m.contextLengths ? Int32Array.from(rows, (i) => m.contextLengths![i]!) : undefined;
  return { ...m, context: rows.map((i) => m.context[i]!), targets: m.targets.map((t) => rows.map((i) => t[i]!)), ...(contextLengths ? { contextLengths } : {}) };
}

/** I-JEPA config values (paper configs, not the official class defaults), unbiased sampler. */
export function defaultMaskConfig(gridSize: [number, number]): MultiBlockMaskConfig {
  return {
    gridSize: [gridSize[0], gridSize[1]],
    nTargets: 4,
    targetScale: [0.15, 0.2],
    targetAspect: [0.75, 1.5],
    contextScale: [0.85, 1.0],
    contextAspect: [1.0, 1.0],
    minKeep: 10,
    allowOverlap: false,
    mode: 'unbiased',
    maxTries: 200,
  };
}

/** Preset for small grids such as 8x8 (32 px images, patch 4): same ranges, minKeep 4, unbiased. */
export function smallGridMaskConfig(gridSize: [number, number]): MultiBlockMaskConfig {
  return { ...defaultMaskConfig(gridSize), minKeep: 4 };
}

import { roundHalfEven } from '../util/math.js';
export { roundHalfEven };

/**
 * Block (h, w) for a grid and scale/aspect ranges given the uniform draws `uScale`, `uAspect` in [0,1)
 * (the official code uses one draw for both). Exported for tests and for analytic checks.
 */
export function blockSizeFromUniform(
  gridSize: readonly [number, number],
  scale: readonly [number, number],
  aspect: readonly [number, number],
  uScale: number,
  uAspect: number = uScale,
): [number, number] {
  const [H, W] = gridSize;
  const s = scale[0] + uScale * (scale[1] - scale[0]);
  const maxKeep = Math.trunc(H * W * s);
  const r = aspect[0] + uAspect * (aspect[1] - aspect[0]);
  let h = roundHalfEven(Math.sqrt(maxKeep * r));
  let w = roundHalfEven(Math.sqrt(maxKeep / r));
  while (h >= H) h -= 1;
  while (w >= W) w -= 1;
  return [Math.max(h, 1), Math.max(w, 1)];
}

/** Pads sorted mask indices to `len` by repeating the last index (a real patch: padding is masked, never garbage). */
export function padMask(idx: Int32Array, len: number): Int32Array {
  if (idx.length === 0 || len < idx.length) throw new RangeError(`padMask: cannot pad ${idx.length} indices to ${len}`);
  const out = new Int32Array(len).fill(idx[idx.length - 1]!);
  out.set(idx);
  return out;
}

/**
 * Truncate sorted mask indices to `len`: 'faithful' drops trailing indices (official), 'unbiased' keeps a
 * uniformly random subset (partial Fisher-Yates with `rng`), returned sorted ascending.
 */
export function truncateMask(idx: Int32Array, len: number, mode: 'faithful' | 'unbiased', rng: Rng): Int32Array {
  if (!Number.isInteger(len) || len < 0 || len > idx.length) {
    throw new RangeError(`truncateMask: len must be in [0, ${idx.length}], got ${len}`);
  }
  if (idx.length === len) return idx;
  if (mode === 'faithful') return idx.slice(0, len);
  const copy = Int32Array.from(idx);
  for (let i = 0; i < len; i++) {
    const j = rng.nextInt(i, copy.length);
    const tmp = copy[i]!;
    copy[i] = copy[j]!;
    copy[j] = tmp;
  }
  return copy.slice(0, len).sort();
}

function checkRange(name: string, r: readonly [number, number], lo: number, hi: number): void {
  if (!(Number.isFinite(r[0]) && Number.isFinite(r[1]) && r[0] > lo && r[1] <= hi && r[0] <= r[1])) {
    throw new RangeError(`MultiBlockMaskConfig.${name} must satisfy ${lo} < min <= max <= ${hi}, got [${r[0]}, ${r[1]}]`);
  }
}

export class MultiBlockMaskSampler {
  readonly config: Readonly<MultiBlockMaskConfig> & { maxTries: number; independentSizeDraws: boolean; contextMode: 'block' | 'complement' };
  /** The sampler's generator; checkpoint with `rng.state()` and restore with `rng.setState(...)`. */
  rng: Rng;
  /** Faithful mode only: contexts accepted after the official relaxation (may overlap targets). */
  relaxedContexts = 0;

  constructor(config: MultiBlockMaskConfig, seedOrRng: number | Rng = 0) {
    const [H, W] = config.gridSize;
    if (!Number.isInteger(H) || !Number.isInteger(W) || H < 2 || W < 2) {
      throw new RangeError(`MultiBlockMaskConfig.gridSize must be integers >= 2, got ${H}x${W}`);
    }
    if (!Number.isInteger(config.nTargets) || config.nTargets < 0) {
      throw new RangeError(`MultiBlockMaskConfig.nTargets must be an integer >= 0, got ${config.nTargets}`);
    }
    checkRange('targetScale', config.targetScale, 0, 1);
    checkRange('contextScale', config.contextScale, 0, 1);
    checkRange('targetAspect', config.targetAspect, 0, Infinity);
    checkRange('contextAspect', config.contextAspect, 0, Infinity);
    if (!Number.isInteger(config.minKeep) || config.minKeep < 0) {
      throw new RangeError(`MultiBlockMaskConfig.minKeep must be an integer >= 0, got ${config.minKeep}`);
    }
    if (config.mode !== 'faithful' && config.mode !== 'unbiased') {
      throw new RangeError(`MultiBlockMaskConfig.mode must be 'faithful' or 'unbiased', got ${String(config.mode)}`);
    }
    const maxTries = config.maxTries ?? 200;
    if (!Number.isInteger(maxTries) || maxTries < 1) {
      throw new RangeError(`MultiBlockMaskConfig.maxTries must be an integer >= 1, got ${maxTries}`);
    }
    const contextMode = config.contextMode ?? 'block';
    if (contextMode !== 'block' && contextMode !== 'complement') {
      throw new RangeError(`MultiBlockMaskConfig.contextMode must be 'block' or 'complement', got ${String(contextMode)}`);
    }
    this.config = {
      ...config,
      gridSize: [H, W],
      maxTries,
      independentSizeDraws: config.independentSizeDraws ?? false,
      contextMode,
    };
    this.rng = typeof seedOrRng === 'number' ? new Rng(seedOrRng) : seedOrRng;
  }

  /** Whether a block with `count` patches satisfies minKeep in this mode. */
  private enough(count: number): boolean {
    return this.config.mode === 'faithful' ? count > this.config.minKeep : count >= this.config.minKeep;
  }

  private drawSize(scale: [number, number], aspect: [number, number]): [number, number] {
    const u = this.rng.nextFloat();
    const v = this.config.independentSizeDraws ? this.rng.nextFloat() : u;
    return blockSizeFromUniform(this.config.gridSize, scale, aspect, u, v);
  }

  private failure(what: string, hw: [number, number], detail: string): Error {
    const [H, W] = this.config.gridSize;
    const { minKeep, mode } = this.config;
    const need = mode === 'faithful' ? `more than minKeep=${minKeep}` : `at least minKeep=${minKeep}`;
    return new Error(
      `MultiBlockMaskSampler (${mode}): cannot place a valid ${what} block of ${hw[0]}x${hw[1]} patches ` +
        `on a ${H}x${W} grid with minKeep=${minKeep} (each block needs ${need} patches): ${detail}. ` +
        `Lower minKeep (masks.minKeep; e.g. smallGridMaskConfig)` + (mode === 'faithful' ? " or use mode 'unbiased'." : ' or raise the block scales.'),
    );
  }

  /** Top-left offset in [0, extent - size) (faithful, official exclusive bound) or [0, extent - size]. */
  private offset(extent: number, size: number): number {
    return this.config.mode === 'faithful' ? this.rng.nextInt(0, extent - size) : this.rng.nextInt(0, extent - size + 1);
  }

  /** Places one block and returns its sorted indices. */
  private placeBlock(h: number, w: number): Int32Array {
    const W = this.config.gridSize[1];
    const top = this.offset(this.config.gridSize[0], h);
    const left = this.offset(W, w);
    const out = new Int32Array(h * w);
    let k = 0;
    for (let i = top; i < top + h; i++) for (let j = left; j < left + w; j++) out[k++] = i * W + j;
    return out;
  }

  /** Context block (the whole grid in 'complement' mode) minus the patches flagged in the given target masks. */
  private placeContext(h: number, w: number, excluded: Uint8Array[]): Int32Array {
    const [H, W] = this.config.gridSize;
    const block = this.config.contextMode === 'complement' ? Int32Array.from({ length: H * W }, (_, i) => i) : this.placeBlock(h, w);
    if (excluded.length === 0) return block;
    const keep: number[] = [];
    for (const idx of block) {
      let ok = true;
      for (const m of excluded) {
        if (m[idx]) {
          ok = false;
          break;
        }
      }
      if (ok) keep.push(idx);
    }
    return Int32Array.from(keep);
  }

  private toGridMask(indices: Int32Array): Uint8Array {
    const [H, W] = this.config.gridSize;
    const m = new Uint8Array(H * W);
    for (const i of indices) m[i] = 1;
    return m;
  }

  private sampleImageFaithful(th: number, tw: number, ch: number, cw: number): [Int32Array[], Int32Array] {
    const { nTargets, allowOverlap, maxTries } = this.config;
    const targets: Int32Array[] = [];
    for (let t = 0; t < nTargets; t++) targets.push(this.placeBlock(th, tw)); // always th*tw patches (checked)
    const regions = allowOverlap ? [] : targets.map((t) => this.toGridMask(t));
    // Official loop: after every 20 consecutive failures, drop the last remaining target constraint.
    const timeoutPerLevel = 20;
    let tries = 0;
    let timeout = timeoutPerLevel;
    for (let attempt = 0; attempt < maxTries; attempt++) {
      const active = regions.slice(0, Math.max(regions.length - tries, 0));
      const ctx = this.placeContext(ch, cw, active);
      if (this.enough(ctx.length)) {
        if (tries > 0) this.relaxedContexts++;
        return [targets, ctx];
      }
      timeout -= 1;
      if (timeout === 0) {
        tries += 1;
        timeout = timeoutPerLevel;
      }
    }
    throw this.failure('context', [ch, cw], `no valid placement in maxTries=${maxTries} attempts`);
  }

  private sampleImageUnbiased(th: number, tw: number, ch: number, cw: number): [Int32Array[], Int32Array] {
    const { nTargets, allowOverlap, maxTries } = this.config;
    for (let attempt = 0; attempt < maxTries; attempt++) {
      const targets: Int32Array[] = [];
      for (let t = 0; t < nTargets; t++) targets.push(this.placeBlock(th, tw));
      const ctx = this.placeContext(ch, cw, allowOverlap ? [] : targets.map((t) => this.toGridMask(t)));
      if (this.enough(ctx.length)) return [targets, ctx];
    }
    throw this.failure(
      'context',
      [ch, cw],
      `after removing ${nTargets} target blocks of ${th}x${tw} no placement kept enough patches in maxTries=${maxTries} attempts`,
    );
  }

  /** Draws one batch of masks using the sampler's Rng. */
  sample(batchSize: number): MaskBatch {
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new RangeError(`sample: batchSize must be an integer >= 1, got ${batchSize}`);
    }
    const c = this.config;
    const [th, tw] = this.drawSize(c.targetScale, c.targetAspect);
    const [ch, cw] = this.drawSize(c.contextScale, c.contextAspect);
    const officialHang = c.mode === 'faithful' ? '; the official collator loops forever here' : '';
    if (c.nTargets > 0 && !this.enough(th * tw)) {
      throw this.failure('target', [th, tw], `a full block has only ${th * tw} patches${officialHang}`);
    }
    if (!this.enough(ch * cw)) {
      throw this.failure('context', [ch, cw], `a full block has only ${ch * cw} patches${officialHang}`);
    }

    const perImageTargets: Int32Array[][] = [];
    const contexts: Int32Array[] = [];
    let minTarget = Infinity;
    let minContext = Infinity;
    let maxContext = 0;
    for (let b = 0; b < batchSize; b++) {
      const [targets, ctx] =
        c.mode === 'faithful' ? this.sampleImageFaithful(th, tw, ch, cw) : this.sampleImageUnbiased(th, tw, ch, cw);
      for (const t of targets) minTarget = Math.min(minTarget, t.length);
      minContext = Math.min(minContext, ctx.length);
      maxContext = Math.max(maxContext, ctx.length);
      perImageTargets.push(targets);
      contexts.push(ctx);
    }
    const targetLength = c.nTargets > 0 ? minTarget : 0;
    const pad = c.contextFit === 'pad';
    const contextLength = pad ? maxContext : minContext;
    const targets: Int32Array[][] = [];
    for (let t = 0; t < c.nTargets; t++) {
      targets.push(perImageTargets.map((imgTargets) => truncateMask(imgTargets[t]!, targetLength, c.mode, this.rng)));
    }
    return {
      context: contexts.map((ctx) => (pad ? padMask(ctx, contextLength) : truncateMask(ctx, contextLength, c.mode, this.rng))),
      ...(pad ? { contextLengths: Int32Array.from(contexts, (ctx) => ctx.length) } : {}),
      targets,
      contextLength,
      targetLength,
      targetBlockHW: [th, tw],
      contextBlockHW: c.contextMode === 'complement' ? [...c.gridSize] : [ch, cw],
    };
  }
}
