// A typed, disposable process group over libtorch's c10d (TCPStore rendezvous + Gloo on CPU, NCCL on
// CUDA). Every collective is bounded by the group's timeout; a failed one is rethrown naming the rank
// that fell behind or reported a failure (from the step marks ranks leave in the store).
import { native } from '../tensor/native.js';
import { Tensor, tidy } from '../tensor/index.js';
import { handleOf, handles } from '../tensor/tensor.js';

export interface C10dInfo {
  /** true when the addon was built with c10d (needs the Gloo headers: libgloo-dev). */
  c10d: boolean;
  gloo: boolean;
  nccl: boolean;
  /** why c10d is missing, when it is */
  reason?: string;
}

/** What this build of the addon can do for distributed training. */
export function c10dInfo(): C10dInfo {
  return native.distInfo() as C10dInfo;
}

export type Backend = 'gloo' | 'nccl';
export type ReduceOp = 'sum' | 'max' | 'min' | 'product';

export interface ProcessGroupOptions {
  rank: number;
  worldSize: number;
  /** Address of rank 0, which hosts the rendezvous store. */
  masterAddr: string;
  masterPort: number;
  /** Bound on the rendezvous and on every collective, ms (default 60 000). */
  timeoutMs?: number;
  backend?: Backend;
}

export const DEFAULT_TIMEOUT_MS = 60_000;
/** Gradient bucket size, as DDP's default (25 MiB): few collectives, bounded extra memory. */
export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

const STEP_KEY = (r: number) => `cjepa/step/${r}`;
const FAIL_KEY = (r: number) => `cjepa/failed/${r}`;
const ALIVE_KEY = (r: number) => `cjepa/alive/${r}`;
/** After a failed collective, how long survivors wait for each other's roll call before naming the silent ranks. */
const ROLL_CALL_MS = 2000;

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly timeoutMs: number;
  readonly backend: Backend;
  readonly masterAddr: string;
  readonly masterPort: number;
  private handle: unknown;
  /** The last step this rank announced (markStep); compared with the others' after a failure. */
  private step = -1;

  private constructor(o: Required<ProcessGroupOptions>, handle: unknown) {
    this.rank = o.rank; this.worldSize = o.worldSize; this.timeoutMs = o.timeoutMs; this.backend = o.backend;
    this.masterAddr = o.masterAddr; this.masterPort = o.masterPort;
    this.handle = handle;
  }

  /** Joins (rank 0: hosts) the rendezvous at masterAddr:masterPort; waits at most timeoutMs for every rank. */
  static init(o: ProcessGroupOptions): ProcessGroup {
    const info = c10dInfo();
    if (!info.c10d) throw new Error(`distributed training: ${info.reason ?? 'this build has no c10d (install libgloo-dev and rebuild)'}`);
    const full: Required<ProcessGroupOptions> = { timeoutMs: DEFAULT_TIMEOUT_MS, backend: 'gloo', ...o };
    const { rank, worldSize, masterAddr, masterPort, timeoutMs, backend } = full;
    if (!Number.isInteger(worldSize) || worldSize < 1) throw new Error(`world size must be a positive integer, got ${worldSize}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new Error(`rank must be an integer in [0, ${worldSize}), got ${rank}`);
    if (!Number.isInteger(masterPort) || masterPort < 1 || masterPort > 65535) throw new Error(`master port must be in [1, 65535], got ${masterPort}`);
    if (!masterAddr) throw new Error('master address is empty');
    if (!(timeoutMs > 0)) throw new Error(`distributed timeout must be positive, got ${timeoutMs} ms`);
    if (backend === 'nccl' && !info.nccl) throw new Error("backend 'nccl' is not in this build (Gloo only): build against a CUDA libtorch with CJEPA_NCCL=1");
    let h: unknown;
    try {
      h = native.pgInit(masterAddr, masterPort, rank, worldSize, Math.round(timeoutMs), backend);
    } catch (e) {
      throw new Error(`rank ${rank}/${worldSize}: rendezvous at ${masterAddr}:${masterPort} failed within ${timeoutMs / 1000} s ` +
        `(is rank 0 running, are all ${worldSize} ranks started?): ${(e as Error).message}`);
    }
    return new ProcessGroup(full, h);
  }

  private get h(): unknown {
    if (this.handle === null) throw new Error('ProcessGroup: used after destroy()');
    return this.handle;
  }

  /** Runs a collective (or a backward holding one); a failure is rethrown naming the culprit rank(s) when the store can tell. */
  guard<T>(what: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw new Error(`rank ${this.rank}: ${what} failed (timeout ${this.timeoutMs / 1000} s): ${this.culprit()}; ${(e as Error).message}`);
    }
  }

  /**
   * Who is to blame after a failed collective. Every surviving rank answers a roll call in the store;
   * a rank that reported a failure is named with its message, one that stays silent as dead or hung.
   */
  culprit(): string {
    const others = Array.from({ length: this.worldSize }, (_, r) => r).filter((r) => r !== this.rank);
    const get = (k: string) => native.pgStoreGet(this.h, k) as string | null;
    try {
      native.pgStoreSet(this.h, ALIVE_KEY(this.rank), String(this.step));
      const deadline = Date.now() + ROLL_CALL_MS;
      let silent = others;
      while (silent.length > 0 && Date.now() < deadline) {
        sleepMs(100);
        silent = silent.filter((r) => get(ALIVE_KEY(r)) === null && get(FAIL_KEY(r)) === null);
      }
      const bits: string[] = [];
      for (const r of others) {
        const failed = get(FAIL_KEY(r));
        if (failed !== null) bits.push(`rank ${r} failed: ${failed}`);
        else if (silent.includes(r)) {
          const s = get(STEP_KEY(r));
          bits.push(`rank ${r} died or hangs (last seen at step ${s === null ? 'none' : Number(s) + 1}; this rank is at step ${this.step + 1})`);
        }
      }
      return bits.length > 0 ? bits.join('; ') : 'a peer rank stopped';
    } catch {
      return `rank 0 (host of the rendezvous store ${this.masterAddr}:${this.masterPort}) is gone`;
    }
  }

  /** Announces that this rank reached `step` (before its collectives): read back by culprit(). */
  markStep(step: number): void {
    this.step = step;
    native.pgStoreSet(this.h, STEP_KEY(this.rank), String(step));
  }

  /** The message rank `r` left when it failed (markFailed), or null. */
  failureOf(r: number): string | null {
    return native.pgStoreGet(this.h, FAIL_KEY(r)) as string | null;
  }

  /** Tells the others why this rank is stopping (best effort: the store may be gone too). */
  markFailed(message: string): void {
    try { native.pgStoreSet(this.h, FAIL_KEY(this.rank), message.slice(0, 500)); } catch { /* nothing more to do */ }
  }

  /** In place: every rank gets the reduction of `t` over ranks. */
  allReduce(t: Tensor, op: ReduceOp = 'sum'): void {
    const h = handleOf(t, 'allReduce', 't');
    this.guard('all-reduce', () => native.pgAllReduce(this.h, h, op));
  }

  /** In place: each tensor becomes its mean over ranks; flattened into buckets of bucketBytes. Returns the bucket count. */
  allReduceMean(ts: readonly Tensor[], bucketBytes = DEFAULT_BUCKET_BYTES): number {
    if (ts.length === 0) return 0;
    const hs = handles(ts, 'allReduceMean', 'ts');
    return this.guard('gradient all-reduce', () => native.pgAllReduceMean(this.h, hs, bucketBytes) as number);
  }

  /** In place: every rank's tensors become those of `root`. */
  broadcast(ts: readonly Tensor[], root = 0): void {
    const hs = handles(ts, 'broadcast', 'ts');
    this.guard('broadcast', () => native.pgBroadcast(this.h, hs, root));
  }

  /**
   * The rows of `x` from every rank, concatenated in rank order (worldSize * N, ...), with gradient:
   * the backward all-reduces (sums) the incoming gradient and returns this rank's slice (VICReg's
   * FullGatherLayer). Every rank must call it with the same shape, in the same order.
   */
  allGather(x: Tensor): Tensor {
    const h = handleOf(x, 'allGather', 'x');
    // Gloo has no bfloat16/float16 kernels ('Invalid scalar type'): under autocast those rows travel as
    // float32 (exact) and come back in their own dtype, the backward's all-reduce too
    if (this.backend === 'gloo' && (x.dtype === 'bfloat16' || x.dtype === 'float16')) {
      return tidy(() => this.allGather(x.float()).to(x.dtype));
    }
    return this.guard('all-gather', () => new Tensor(native.pgAllGather(this.h, h)));
  }

  barrier(): void {
    this.guard('barrier', () => native.pgBarrier(this.h));
  }

  /** Milliseconds this process has spent in collectives so far (all groups; transfer and waiting for peers). */
  static commMs(): number {
    return (native.pgCommSeconds() as number) * 1000;
  }

  /** A short string in the rendezvous store (small coordination data, e.g. resume state). */
  storeSet(key: string, value: string): void { native.pgStoreSet(this.h, key, value); }
  /** The value of `key`, or null when no rank set it. */
  storeGet(key: string): string | null { return native.pgStoreGet(this.h, key) as string | null; }

  /** Leaves the group (the store of rank 0 closes with it). Idempotent. */
  destroy(): void {
    if (this.handle === null) return;
    native.pgDestroy(this.handle);
    this.handle = null;
  }
  [Symbol.dispose](): void { this.destroy(); }
}
