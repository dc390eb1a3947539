// Data parallelism as a small hook object for the training loop: parameters broadcast from rank 0,
// gradients averaged over ranks in flat buckets, loss terms averaged for logging, and an agreed stop.
// `singleProcess` is the no-op of world size 1, so the loop has no `if (distributed)` branches.
import { Tensor, tensor, tidy } from '../tensor/index.js';
import { ProcessGroup, DEFAULT_BUCKET_BYTES } from './process_group.js';

export interface StepSync {
  readonly rank: number;
  readonly worldSize: number;
  /** Only rank 0 writes checkpoints, metrics and plots. */
  readonly isMain: boolean;
  /** Autograd-aware all-gather of rows (global-batch statistics); undefined in one process. */
  readonly allGather: ((x: Tensor) => Tensor) | undefined;
  /** Makes every rank's tensors rank 0's (parameters, buffers, optimiser state). */
  broadcast(ts: readonly Tensor[]): void;
  /** Before a step's collectives: lets a failure name the rank that fell behind. */
  markStep(step: number): void;
  /** Runs the backward (it may hold all-gathers): a failure names the culprit rank. */
  backward(f: () => void): void;
  /** Milliseconds spent in collectives so far (every kind: all-gathers in forward/backward too). */
  commMs(): number;
  /** Averages the gradients over ranks, in place; returns the ms it took. */
  averageGrads(params: readonly Tensor[]): number;
  /** Loss terms averaged over ranks (each rank's terms are means over its local batch). */
  averageTerms(values: Record<string, number>): Record<string, number>;
  /** True on every rank when any rank's flag is set (an agreed stop on a signal). */
  any(flag: boolean): boolean;
  /** Rank 0's string on every rank (resume state); `value` is ignored elsewhere. */
  shareString(key: string, value: string | null): string;
  /** Tells the other ranks why this one stops. */
  fail(message: string): void;
  /**
   * Rank 0 runs `f` (a checkpoint, the monitors) while the others wait for it outside any collective,
   * so slow disk or evaluation work is not bounded by the collective timeout (MAIN_WORK_TIMEOUT_MS is).
   */
  mainOnly(tag: string, f: () => Promise<void>): Promise<void>;
  /** Rank 0 runs `f` first (a dataset download into a shared cache), then the others run it. */
  mainFirst<T>(tag: string, f: () => Promise<T>): Promise<T>;
}

/** How long ranks wait for rank 0's own work (dataset download, checkpoint, monitors) before giving up. */
export const MAIN_WORK_TIMEOUT_MS = 60 * 60 * 1000;

export const singleProcess: StepSync = {
  rank: 0, worldSize: 1, isMain: true, allGather: undefined,
  broadcast() {}, markStep() {}, backward(f) { f(); }, commMs() { return 0; },
  averageGrads() { return 0; },
  averageTerms(v) { return v; },
  any(flag) { return flag; },
  shareString(_key, value) { if (value === null) throw new Error('shareString: rank 0 has no value'); return value; },
  fail() {},
  async mainOnly(_tag, f) { await f(); },
  mainFirst(_tag, f) { return f(); },
};

/** Waits until rank 0 publishes `key`; fails naming rank 0 when it failed, is gone, or takes too long. */
async function waitForMain(pg: ProcessGroup, key: string, what: string): Promise<void> {
  const deadline = Date.now() + MAIN_WORK_TIMEOUT_MS;
  for (;;) {
    let done: boolean, failed: string | null;
    try {
      done = pg.storeGet(key) !== null;
      failed = done ? null : pg.failureOf(0);
    } catch (e) {
      throw new Error(`rank ${pg.rank}: rank 0 is gone (it hosts the rendezvous store) while this rank waited for its ${what}: ${(e as Error).message}`);
    }
    if (done) return;
    if (failed !== null) throw new Error(`rank ${pg.rank}: rank 0 failed during its ${what}: ${failed}`);
    if (Date.now() > deadline) throw new Error(`rank ${pg.rank}: rank 0 did not finish its ${what} within ${MAIN_WORK_TIMEOUT_MS / 60_000} min`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The StepSync of a process group (world size >= 1). */
export function dataParallel(pg: ProcessGroup, bucketBytes = DEFAULT_BUCKET_BYTES): StepSync {
  return {
    rank: pg.rank, worldSize: pg.worldSize, isMain: pg.rank === 0,
    allGather: (x) => pg.allGather(x),
    broadcast(ts) { pg.broadcast(ts, 0); },
    markStep(step) { pg.markStep(step); },
    backward(f) { pg.guard('backward (all-gather)', f); },
    commMs() { return ProcessGroup.commMs(); },
    averageGrads(params) {
      const t0 = performance.now();
      // a parameter without a gradient has none on every rank (same graph): skipping keeps AdamW's skip
      pg.allReduceMean(params.map((p) => p.grad).filter((g): g is Tensor => g !== undefined), bucketBytes);
      return performance.now() - t0;
    },
    averageTerms(values) {
      const keys = Object.keys(values);
      return tidy(() => {
        const t = tensor(Float64Array.from(keys.map((k) => values[k]!)), [keys.length]);
        pg.allReduce(t, 'sum');
        const d = t.data<'float64'>();
        return Object.fromEntries(keys.map((k, i) => [k, d[i]! / pg.worldSize]));
      });
    },
    any(flag) {
      return tidy(() => {
        const t = tensor(Float32Array.from([flag ? 1 : 0]), [1]);
        pg.allReduce(t, 'max');
        return t.item() > 0;
      });
    },
    shareString(key, value) {
      // set before a collective, read after it: the barrier orders the two across ranks
      if (pg.rank === 0) {
        if (value === null) throw new Error('shareString: rank 0 has no value');
        pg.storeSet(key, value);
      }
      pg.barrier();
      const v = pg.storeGet(key);
      if (v === null) throw new Error(`rank ${pg.rank}: rank 0 did not publish '${key}'`);
      return v;
    },
    fail(message) { pg.markFailed(message); },
    async mainOnly(tag, f) {
      const key = `cjepa/main/${tag}`;
      if (pg.rank === 0) { await f(); pg.storeSet(key, '1'); } else await waitForMain(pg, key, tag);
    },
    async mainFirst(tag, f) {
      const key = `cjepa/main/${tag}`;
      if (pg.rank === 0) { const v = await f(); pg.storeSet(key, '1'); return v; }
      await waitForMain(pg, key, tag);
      return f();
    },
  };
}
