// DataLoader: per-epoch seeded shuffling, drop_last, batches built by background worker threads
// (or in-process with workers: 0) and prefetched so decoding overlaps the training step.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BatchBuilder, type BadSample, type BatchRequest, type BatchResult, type BuilderConfig } from './builder.js';
import type { Dataset, NormStats } from './dataset.js';
import { permutation } from './rng.js';
import { type NormName, adaptStats, resolveNorm } from './specs.js';
import type { ViewSpec } from './transforms.js';
import type { WorkerInit, WorkerReply } from './worker.js';

export interface Batch {
  /** One per view, each NCHW float32, normalised. */
  views: Float32Array[];
  /** [B, C, H, W] */
  shape: [number, number, number, number];
  /** -1 when unlabelled. */
  labels: Int32Array;
  /** Dataset indices of the samples (a corrupt sample's replacement, if any). */
  indices: Int32Array;
  /** Time the consumer waited for this batch, ms. */
  waitMs: number;
  /** Cumulative count of distinct corrupt files skipped so far. */
  skipped: number;
  /** Corrupt samples met in this batch (replaced, or with corrupt: 'drop', left out). */
  bad: BadSample[];
}

export interface LoaderOptions {
  batchSize: number;
  /** View spec(s): 1 for I-JEPA / evaluation, 2 for VICReg / C-JEPA. */
  views: ViewSpec | ViewSpec[];
  shuffle?: boolean;
  dropLast?: boolean;
  seed?: number;
  /** Background worker threads; 0 = build batches in-process. Default min(4, cores - 1), at least 1. */
  workers?: number;
  /** Batches in flight per worker (default 2). */
  prefetch?: number;
  /** The model's input size; must equal the views' size. */
  imageSize?: number;
  /** The model's patch size, to check imageSize against. */
  patchSize?: number;
  /** The model's channels (1 or 3); images are converted. Default: the dataset's. */
  channels?: number;
  /** Normalisation preset, stats, or 'auto' (dataset's own, else ImageNet's). Overridden by mean/std. */
  norm?: NormName | NormStats | 'auto';
  mean?: number[];
  std?: number[];
  /** Called once per corrupt file (default console.warn). */
  onSkip?: (source: string, reason: string) => void;
  /** Largest allowed upscaling of known-size images to the model size (default 8). */
  maxUpscale?: number;
  /** Replacement attempts for a corrupt sample (default 16). */
  maxRetries?: number;
  /**
   * 'replace' (default): a corrupt sample is replaced by a deterministic other sample (training).
   * 'drop': it is left out, so its batch is shorter and every row is the sample its index names
   * (feature extraction, embedding).
   */
  corrupt?: 'replace' | 'drop';
  /** Decodes in flight per batch in each thread (default 4). */
  decodeConcurrency?: number;
  /**
   * Data parallelism: this process is `rank` of `worldSize`. Every rank draws the same global batches
   * of batchSize * worldSize samples (one seeded order) and reads rows rank*batchSize..(rank+1)*batchSize-1
   * of each, so the ranks together see exactly what one process with the global batch would
   * (augmentations are seeded per sample). Needs dropLast.
   */
  shard?: { rank: number; worldSize: number };
}

interface Slot {
  worker: Worker;
  pending: Map<number, { resolve: (r: BatchResult) => void; reject: (e: Error) => void }>;
  dead: Error | null;
}

export function defaultWorkers(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

export class DataLoader {
  readonly batchSize: number;
  /** This rank and the number of ranks sharing each global batch (0 and 1 without sharding). */
  readonly rank: number;
  readonly worldSize: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  readonly seed: number;
  readonly workers: number;
  readonly views: ViewSpec[];
  readonly imageSize: number;
  readonly channels: number;
  readonly mean: number[];
  readonly std: number[];
  private readonly prefetch: number;
  private readonly onSkip: (source: string, reason: string) => void;
  private readonly cfg: BuilderConfig;
  private slots: Slot[] = [];
  private local: BatchBuilder | null = null;
  private readonly reported = new Set<string>();
  private active = false;
  private closed = false;
  private nextId = 0;

  constructor(
    readonly dataset: Dataset,
    opts: LoaderOptions,
  ) {
    const name = dataset.spec;
    if (dataset.length === 0) throw new Error(`${name}: the dataset is empty`);
    const B = opts.batchSize;
    if (!Number.isInteger(B) || B < 1) throw new Error(`batchSize must be a positive integer, got ${B}`);
    this.batchSize = B;
    this.shuffle = opts.shuffle ?? true;
    this.dropLast = opts.dropLast ?? true;
    this.seed = opts.seed ?? 0;
    const { rank = 0, worldSize = 1 } = opts.shard ?? {};
    if (!Number.isInteger(worldSize) || worldSize < 1 || !Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw new Error(`DataLoader shard: rank must be in [0, worldSize), got rank ${rank} of ${worldSize}`);
    }
    if (worldSize > 1 && !this.dropLast) throw new Error('DataLoader shard: sharding needs dropLast (every rank gets a full batch)');
    this.rank = rank;
    this.worldSize = worldSize;
    if (this.dropLast && dataset.length < B * worldSize) {
      const what = worldSize > 1 ? `one global batch of ${B} x ${worldSize} ranks` : `one batch of ${B}`;
      throw new Error(`${name}: ${dataset.length} samples, fewer than ${what} (drop_last); lower the batch size`);
    }
    const w = opts.workers ?? defaultWorkers();
    if (!Number.isInteger(w) || w < 0) throw new Error(`workers must be a non-negative integer, got ${w}`);
    this.workers = w;
    this.prefetch = Math.max(1, opts.prefetch ?? 2);
    this.views = Array.isArray(opts.views) ? opts.views : [opts.views];
    if (this.views.length === 0) throw new Error('DataLoader: at least one view transform is needed');
    const size = this.views[0]!.size;
    for (const v of this.views) {
      if (v.size !== size) throw new Error(`DataLoader: all views must have the same size (${v.name}: ${v.size} vs ${size})`);
    }
    if (opts.imageSize !== undefined && opts.imageSize !== size) {
      throw new Error(`DataLoader: the transforms produce ${size} px images but the model expects ${opts.imageSize} px`);
    }
    this.imageSize = size;
    if (opts.patchSize !== undefined && size % opts.patchSize !== 0) {
      throw new Error(`DataLoader: image size ${size} is not a multiple of the patch size ${opts.patchSize}`);
    }
    const native = dataset.imageSize;
    const maxUp = opts.maxUpscale ?? 8;
    if (native && size / Math.min(native.width, native.height) > maxUp) {
      throw new Error(
        `${name}: images of ${native.width}x${native.height} cannot fit a ${size} px model ` +
          `(more than ${maxUp}x upscaling; raise maxUpscale to allow it)`,
      );
    }
    const C = opts.channels ?? dataset.channels;
    if (C !== 1 && C !== 3) throw new Error(`DataLoader: channels must be 1 or 3, got ${C}`);
    this.channels = C;
    const stats = opts.mean && opts.std ? adaptStats({ mean: opts.mean, std: opts.std }, C) : resolveNorm(opts.norm, dataset, C);
    if (stats.std.some((s) => !(s > 0))) throw new Error('DataLoader: normalisation std must be positive');
    this.mean = stats.mean;
    this.std = stats.std;
    this.onSkip = opts.onSkip ?? ((src, reason) => console.warn(`[data] skipping ${src}: ${reason}`));
    this.cfg = {
      views: this.views,
      channels: C,
      mean: this.mean,
      std: this.std,
      seed: this.seed,
      maxRetries: opts.maxRetries ?? 16,
      decodeConcurrency: opts.decodeConcurrency ?? 4,
      dropCorrupt: opts.corrupt === 'drop',
    };
  }

  get stepsPerEpoch(): number {
    const n = this.dataset.length;
    const global = this.batchSize * this.worldSize;
    return this.dropLast ? Math.floor(n / global) : Math.ceil(n / global);
  }

  /** Worker threads currently alive. */
  get liveWorkers(): number {
    return this.slots.length;
  }

  /** Distinct corrupt files skipped so far. */
  get skipped(): number {
    return this.reported.size;
  }

  /** Sample order of an epoch (before corrupt-sample replacement). */
  order(epoch: number): Int32Array {
    if (this.shuffle) return permutation(this.dataset.length, this.seed, epoch);
    return Int32Array.from({ length: this.dataset.length }, (_, i) => i);
  }

  private startWorkers(): void {
    if (this.slots.length > 0) return;
    const init: WorkerInit = { descriptor: this.dataset.describe(), config: this.cfg };
    for (let i = 0; i < this.workers; i++) {
      const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
      const slot: Slot = { worker, pending: new Map(), dead: null };
      const fail = (e: Error): void => {
        slot.dead ??= e;
        for (const p of slot.pending.values()) p.reject(slot.dead);
        slot.pending.clear();
      };
      worker.on('message', (m: WorkerReply) => {
        const p = slot.pending.get(m.id);
        if (!p) return;
        slot.pending.delete(m.id);
        if (m.type === 'batch') p.resolve(m);
        else p.reject(new Error(m.message));
      });
      worker.on('error', (e) => fail(new Error(`data worker ${i} failed: ${e.message}`)));
      worker.on('exit', (code) => fail(new Error(`data worker ${i} exited (code ${code})`)));
      this.slots.push(slot);
    }
  }

  private async stopWorkers(): Promise<void> {
    const slots = this.slots;
    this.slots = [];
    await Promise.all(
      slots.map((s) => {
        s.dead ??= new Error('data loader closed');
        return s.worker.terminate();
      }),
    );
  }

  private request(req: BatchRequest): Promise<BatchResult> {
    if (this.workers === 0) {
      this.local ??= new BatchBuilder(this.dataset, this.cfg);
      return this.local.build(req);
    }
    const slot = this.slots[req.id % this.slots.length]!;
    if (slot.dead) return Promise.reject(slot.dead);
    return new Promise((resolve, reject) => {
      slot.pending.set(req.id, { resolve, reject });
      slot.worker.postMessage(req);
    });
  }

  /**
   * The batches of one epoch: `for await (const batch of loader.epoch(e))`. Breaking out of the
   * loop terminates the worker threads (they restart on the next epoch); after a complete epoch they
   * stay, unreferenced, so they never keep the process alive.
   */
  async *epoch(epoch: number): AsyncGenerator<Batch, void, undefined> {
    if (this.closed) throw new Error('DataLoader is closed');
    if (this.active) throw new Error('DataLoader: another epoch is still being iterated');
    this.active = true;
    let complete = false;
    const inFlight = new Map<number, Promise<BatchResult>>();
    try {
      const order = this.order(epoch);
      const steps = this.stepsPerEpoch;
      const B = this.batchSize;
      if (this.workers > 0) {
        this.startWorkers();
        for (const s of this.slots) s.worker.ref();
      }
      const window = this.workers > 0 ? this.workers * this.prefetch : 1;
      const base = this.nextId;
      this.nextId += steps;
      let issued = 0;
      const issue = (): void => {
        while (issued < steps && inFlight.size < window) {
          const b = issued++;
          const start = b * B * this.worldSize + this.rank * B; // this rank's rows of global batch b
          const indices = order.slice(start, Math.min(start + B, order.length));
          const p = this.request({ id: base + b, epoch, indices });
          p.catch(() => undefined); // handled when awaited
          inFlight.set(b, p);
        }
      };
      for (let b = 0; b < steps; b++) {
        issue();
        const t0 = performance.now();
        const r = await inFlight.get(b)!;
        const waitMs = performance.now() - t0;
        inFlight.delete(b);
        issue(); // keep the workers busy while the consumer trains on this batch
        for (const bad of r.bad) {
          if (!this.reported.has(bad.source)) {
            this.reported.add(bad.source);
            this.onSkip(bad.source, bad.reason);
          }
        }
        const n = r.labels.length;
        yield {
          views: r.views,
          shape: [n, this.channels, this.imageSize, this.imageSize],
          labels: r.labels,
          indices: r.indices,
          waitMs,
          skipped: this.reported.size,
          bad: r.bad,
        };
      }
      complete = true;
    } finally {
      this.active = false;
      if (complete) for (const s of this.slots) s.worker.unref();
      else {
        await this.stopWorkers();
        await Promise.allSettled(inFlight.values());
      }
    }
  }

  /** Terminate the worker threads. */
  async close(): Promise<void> {
    this.closed = true;
    await this.stopWorkers();
  }
}
