// The Dataset interface, the in-memory dataset used by IDX / CIFAR binaries,
// subsets and the seeded train/validation split.

import { permutation } from './rng.js';

/** One decoded image: HWC uint8 pixels. */
export interface Sample {
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: number;
  /** Class index, -1 when unlabelled. */
  label: number;
}

export interface NormStats {
  mean: number[];
  std: number[];
}

/** A plain (structured-clonable) description from which a worker re-opens a dataset. */
export type DatasetDescriptor =
  | {
      kind: 'memory';
      spec: string;
      data: Uint8Array;
      labels: Int32Array;
      n: number;
      height: number;
      width: number;
      channels: number;
      numClasses: number;
      normStats?: NormStats;
      classNames?: string[];
    }
  | {
      kind: 'folder';
      spec: string;
      root: string;
      files: string[];
      labels: Int32Array;
      classNames: string[];
      channels: number;
      imageSize: { width: number; height: number } | null;
      cache: { data: Uint8Array; state: Uint8Array } | null;
    }
  | { kind: 'subset'; spec: string; base: DatasetDescriptor; indices: Int32Array };

export interface Dataset {
  /** The spec (or a description) the dataset was opened from; used in messages. */
  readonly spec: string;
  readonly length: number;
  /** Number of classes; 0 when the dataset is unlabelled. */
  readonly numClasses: number;
  readonly classNames?: readonly string[];
  /** Channels of the pixels `get` returns (1 or 3). */
  readonly channels: number;
  /** Native size when uniform (for folders: estimated from a sample of files), else null. */
  readonly imageSize: { width: number; height: number } | null;
  /** File paths, for folder datasets. */
  readonly paths?: readonly string[];
  /** Suggested normalisation statistics (e.g. CIFAR-10's), if known. */
  readonly normStats?: NormStats;
  /** Label of sample i without decoding it. */
  labelOf(i: number): number;
  /** Where sample i comes from (a path or spec#index), for messages. */
  sourceOf(i: number): string;
  /** Decode sample i. Rejects with a SampleError when the file is corrupt. */
  get(i: number): Promise<Sample>;
  /** Optional batched decoding (faster); a corrupt sample yields its SampleError in place. */
  getMany?(indices: readonly number[]): Promise<Array<Sample | SampleError>>;
  /** For worker threads. */
  describe(): DatasetDescriptor;
}

/** A sample that cannot be decoded (corrupt, truncated, not an image). */
export class SampleError extends Error {
  constructor(
    readonly source: string,
    readonly reason: string,
  ) {
    super(`${source}: ${reason}`);
    this.name = 'SampleError';
  }
}

export function checkIndex(ds: { length: number; spec: string }, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= ds.length) {
    throw new RangeError(`${ds.spec}: index ${i} out of range [0, ${ds.length})`);
  }
}

/** Allocate a byte array in shared memory so worker threads can read it without a copy. */
export function sharedBytes(n: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(n));
}

export function sharedInt32(n: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(n * 4));
}

/** Fixed-size images held in memory (IDX, CIFAR binaries): decode never fails. */
export class MemoryDataset implements Dataset {
  readonly spec: string;
  readonly length: number;
  readonly numClasses: number;
  readonly channels: number;
  readonly imageSize: { width: number; height: number };
  readonly normStats?: NormStats;
  readonly classNames?: string[];
  private readonly data: Uint8Array;
  private readonly labels: Int32Array;
  private readonly stride: number;

  constructor(d: Extract<DatasetDescriptor, { kind: 'memory' }>) {
    this.spec = d.spec;
    this.length = d.n;
    this.numClasses = d.numClasses;
    this.channels = d.channels;
    this.imageSize = { width: d.width, height: d.height };
    this.normStats = d.normStats;
    this.classNames = d.classNames;
    this.data = d.data;
    this.labels = d.labels;
    this.stride = d.height * d.width * d.channels;
    if (d.data.length < d.n * this.stride) throw new Error(`${d.spec}: image data is shorter than ${d.n} images`);
  }

  labelOf(i: number): number {
    return this.labels[i]!;
  }

  sourceOf(i: number): string {
    return `${this.spec}#${i}`;
  }

  getSync(i: number): Sample {
    checkIndex(this, i);
    const { width, height } = this.imageSize;
    return {
      pixels: this.data.subarray(i * this.stride, (i + 1) * this.stride),
      width,
      height,
      channels: this.channels,
      label: this.labels[i]!,
    };
  }

  get(i: number): Promise<Sample> {
    try {
      return Promise.resolve(this.getSync(i));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  describe(): DatasetDescriptor {
    return {
      kind: 'memory',
      spec: this.spec,
      data: this.data,
      labels: this.labels,
      n: this.length,
      height: this.imageSize.height,
      width: this.imageSize.width,
      channels: this.channels,
      numClasses: this.numClasses,
      normStats: this.normStats,
      classNames: this.classNames,
    };
  }
}

/** A view of some samples of another dataset. */
export class SubsetDataset implements Dataset {
  readonly spec: string;
  readonly length: number;
  readonly paths?: readonly string[];

  constructor(
    readonly base: Dataset,
    readonly indices: Int32Array,
    spec?: string,
  ) {
    this.spec = spec ?? `${base.spec}[subset of ${indices.length}]`;
    this.length = indices.length;
    for (const i of indices) checkIndex(base, i);
    if (base.paths) {
      const bp = base.paths;
      this.paths = Array.from(indices, (i) => bp[i]!);
    }
  }

  get numClasses(): number {
    return this.base.numClasses;
  }
  get classNames(): readonly string[] | undefined {
    return this.base.classNames;
  }
  get channels(): number {
    return this.base.channels;
  }
  get imageSize(): { width: number; height: number } | null {
    return this.base.imageSize;
  }
  get normStats(): NormStats | undefined {
    return this.base.normStats;
  }
  labelOf(i: number): number {
    return this.base.labelOf(this.indices[i]!);
  }
  sourceOf(i: number): string {
    return this.base.sourceOf(this.indices[i]!);
  }
  get(i: number): Promise<Sample> {
    try {
      checkIndex(this, i);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.base.get(this.indices[i]!);
  }
  getMany(indices: readonly number[]): Promise<Array<Sample | SampleError>> {
    const base = this.base;
    for (const i of indices) checkIndex(this, i);
    const mapped = indices.map((i) => this.indices[i]!);
    if (base.getMany) return base.getMany(mapped);
    return Promise.all(mapped.map((i) => base.get(i).catch((e: unknown) => {
      if (e instanceof SampleError) return e;
      throw e;
    })));
  }
  describe(): DatasetDescriptor {
    return { kind: 'subset', spec: this.spec, base: this.base.describe(), indices: this.indices };
  }
}

/**
 * Seeded train/validation split: the same halves every time for a given seed and dataset length.
 * round(length * valFraction) samples go to `val`; both halves keep dataset order.
 */
export function splitDataset(ds: Dataset, valFraction: number, seed = 0): { train: Dataset; val: Dataset } {
  if (!(valFraction > 0 && valFraction < 1)) {
    throw new Error(`splitDataset: valFraction must be in (0, 1), got ${valFraction}`);
  }
  const n = ds.length;
  const nVal = Math.round(n * valFraction);
  if (nVal < 1 || nVal >= n) {
    throw new Error(`splitDataset: ${ds.spec} has ${n} samples, too few for a ${valFraction} validation split`);
  }
  // Epoch -1 keeps the split stream apart from the per-epoch shuffles.
  const perm = permutation(n, seed, -1);
  const val = perm.slice(0, nVal).sort();
  const train = perm.slice(nVal).sort();
  return {
    train: new SubsetDataset(ds, train, `${ds.spec}[train split ${n - nVal}/${n}, seed ${seed}]`),
    val: new SubsetDataset(ds, val, `${ds.spec}[val split ${nVal}/${n}, seed ${seed}]`),
  };
}
