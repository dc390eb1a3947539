// Builds one batch (decode + augment + normalise into NCHW float32). The same code runs in the
// main thread (workers: 0) and in worker threads, so batches do not depend on the worker count.

import { type Dataset, type Sample, SampleError } from './dataset.js';
import { Rng, STREAM_REPLACE, STREAM_VIEW } from './rng.js';
import { type ViewSpec, Workspace, applyView } from './transforms.js';

export interface BuilderConfig {
  views: ViewSpec[];
  /** Output (model) channels. */
  channels: number;
  mean: number[];
  std: number[];
  seed: number;
  /** Replacement attempts for a corrupt sample before giving up. */
  maxRetries: number;
  /** Decodes in flight per batch. */
  decodeConcurrency: number;
  /** Leave corrupt samples out of their batch (which gets shorter) instead of replacing them. */
  dropCorrupt?: boolean;
}

export interface BatchRequest {
  id: number;
  epoch: number;
  /** Dataset indices of the batch, in order. */
  indices: Int32Array;
}

export interface BadSample {
  index: number;
  source: string;
  reason: string;
}

export interface BatchResult {
  id: number;
  views: Float32Array[];
  labels: Int32Array;
  /** The indices actually used (a corrupt sample's replacement; with dropCorrupt, the good ones only). */
  indices: Int32Array;
  /** Corrupt samples met while building this batch (every time, not only the first). */
  bad: BadSample[];
}

/** Deterministic replacement for a corrupt sample: depends only on (seed, epoch, original index, attempt). */
export function replacementIndex(seed: number, epoch: number, original: number, attempt: number, n: number): number {
  return Rng.from(STREAM_REPLACE, seed, epoch, original, attempt).int(n);
}

export class BatchBuilder {
  private readonly ws = new Workspace();
  private readonly knownBad = new Map<number, BadSample>();
  private readonly sampleSize: number;

  constructor(
    readonly ds: Dataset,
    readonly cfg: BuilderConfig,
  ) {
    const s = cfg.views[0]!.size;
    this.sampleSize = cfg.channels * s * s;
  }

  private markBad(index: number, e: unknown, bad: BadSample[]): void {
    if (!(e instanceof SampleError)) throw e;
    const b = { index, source: e.source, reason: e.reason };
    this.knownBad.set(index, b);
    bad.push(b);
  }

  /**
   * Sample `original`, or its deterministic replacement when it is corrupt: the indices tried are
   * original, r(0), r(1), ... whatever thread builds the batch. `firstFailed`: the original was
   * already tried (by getMany) and failed.
   */
  private async load(original: number, epoch: number, bad: BadSample[], firstFailed = false): Promise<{ index: number; sample: Sample }> {
    for (let attempt = firstFailed ? 1 : 0; attempt <= this.cfg.maxRetries; attempt++) {
      const index = attempt === 0 ? original : replacementIndex(this.cfg.seed, epoch, original, attempt - 1, this.ds.length);
      const known = this.knownBad.get(index);
      if (known) {
        bad.push(known);
        continue;
      }
      try {
        return { index, sample: await this.ds.get(index) };
      } catch (e) {
        this.markBad(index, e, bad);
      }
    }
    const last = bad[bad.length - 1];
    throw new Error(
      `${this.ds.spec}: sample ${original} and ${this.cfg.maxRetries} replacements could not be decoded ` +
        `(last: ${last?.source}: ${last?.reason})`,
    );
  }

  async build(req: BatchRequest): Promise<BatchResult> {
    const B = req.indices.length;
    const { views, channels, mean, std, seed } = this.cfg;
    const out = views.map(() => new Float32Array(B * this.sampleSize));
    const labels = new Int32Array(B);
    const used = new Int32Array(B);
    const bad: BadSample[] = [];
    // Batched decoding where the dataset offers it (joined JPEG decodes); known-bad samples skipped.
    let pre: Array<Sample | SampleError | null> | null = null;
    if (this.ds.getMany) {
      const want = Array.from(req.indices).filter((i) => !this.knownBad.has(i));
      const got = await this.ds.getMany(want);
      const byIndex = new Map<number, Sample | SampleError>();
      want.forEach((i, k) => byIndex.set(i, got[k]!));
      pre = Array.from(req.indices, (i) => byIndex.get(i) ?? null);
    }
    const drop = this.cfg.dropCorrupt ?? false;
    const kept = new Uint8Array(B);
    let next = 0;
    const runner = async (): Promise<void> => {
      while (next < B) {
        const k = next++;
        const original = req.indices[k]!;
        let loaded: { index: number; sample: Sample } | null;
        const p = pre?.[k];
        if (p && !(p instanceof SampleError)) loaded = { index: original, sample: p };
        else if (p instanceof SampleError) {
          this.markBad(original, p, bad);
          loaded = drop ? null : await this.load(original, req.epoch, bad, true);
        } else loaded = drop ? await this.loadOrNull(original, bad) : await this.load(original, req.epoch, bad);
        if (!loaded) continue;
        kept[k] = 1;
        const { index, sample } = loaded;
        used[k] = index;
        labels[k] = sample.label;
        const salt = index === original ? 0 : original + 1;
        for (let v = 0; v < views.length; v++) {
          const rng = Rng.from(STREAM_VIEW, seed, req.epoch, index, v, salt);
          applyView(sample, views[v]!, rng, out[v]!, k * this.sampleSize, channels, mean, std, this.ws);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(this.cfg.decodeConcurrency, B)) }, runner));
    // Report bad samples in index order so the main thread's "first seen" order is deterministic.
    bad.sort((a, b) => a.index - b.index);
    const n = kept.reduce((a, b) => a + b, 0);
    if (n === B) return { id: req.id, views: out, labels, indices: used, bad };
    // dropCorrupt: close the gaps, keeping the batch order
    const rows = Int32Array.from(kept.keys()).filter((k) => kept[k]);
    const views2 = out.map((o) => {
      const c = new Float32Array(n * this.sampleSize);
      rows.forEach((k, j) => c.set(o.subarray(k * this.sampleSize, (k + 1) * this.sampleSize), j * this.sampleSize));
      return c;
    });
    return { id: req.id, views: views2, labels: rows.map((k) => labels[k]!), indices: rows.map((k) => used[k]!), bad };
  }

  /** Sample `index`, or null (reported in `bad`) when it is corrupt. */
  private async loadOrNull(index: number, bad: BadSample[]): Promise<{ index: number; sample: Sample } | null> {
    const known = this.knownBad.get(index);
    if (known) {
      bad.push(known);
      return null;
    }
    try {
      return { index, sample: await this.ds.get(index) };
    } catch (e) {
      this.markBad(index, e, bad);
      return null;
    }
  }
}
