// Where dtype, device, threads and the global seed are decided: one place, read by every creator.
import { native } from './native.js';
import { dtypeCode, type DType } from './dtype.js';
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';

export const runtime = {
  /** dtype of new floating tensors when none is given */
  defaultDType: 'float32' as DType,
  /** device of new tensors when none is given: 'cpu', 'cuda', 'cuda:1', ... */
  defaultDevice: 'cpu' as string,
  /** compute precision of network forwards run under `autocast`: 'fp32', or 'bf16' (libtorch autocast) */
  precision: 'fp32' as Precision,
};

export type Precision = 'fp32' | 'bf16';
export const PRECISIONS: readonly Precision[] = ['fp32', 'bf16'];

/** Sets the device used by creators and models when none is given ('cpu' or 'cuda[:n]'). */
export function setDefaultDevice(device: string): void {
  if (!/^(cpu|cuda(:\d+)?)$/.test(device)) throw new Error(`unknown device '${device}' (expected cpu, cuda or cuda:N)`);
  if (device.startsWith('cuda') && !native.cudaAvailable()) {
    throw new Error(`device '${device}' requested but this libtorch has no CUDA (build against a CUDA libtorch: see README)`);
  }
  runtime.defaultDevice = device;
}

/** Creation options that put host data (a batch, mask indices) on the default device; none on the CPU. */
export function onDefaultDevice(): { device?: string } {
  return runtime.defaultDevice === 'cpu' ? {} : { device: runtime.defaultDevice };
}

export function cudaAvailable(): boolean {
  return native.cudaAvailable();
}

// Default: all cores (libtorch in an addon otherwise starts with 1); OMP_NUM_THREADS or CJEPA_THREADS win.
{
  const fromEnv = Number(process.env.CJEPA_THREADS ?? process.env.OMP_NUM_THREADS ?? NaN);
  native.setNumThreads(Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : availableParallelism());
}

/** Intra-op threads of libtorch (default: all cores). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`threads must be a positive integer, got ${n}`);
  native.setNumThreads(n);
}
export function getNumThreads(): number {
  return native.getNumThreads();
}
export function parallelInfo(): string {
  return native.parallelInfo();
}

/** Seeds libtorch's global generator (dropout, and creators given no generator). */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}

/** Native tensors currently alive (not disposed nor collected): the memory-leak gauge. */
export function liveTensors(): number {
  return native.liveTensors();
}

/**
 * Tensors that were never disposed and were freed by V8's garbage collector instead: each one held
 * native memory the GC could not see. A leak gauge for code that should release deterministically.
 */
export function gcReleasedTensors(): number {
  return native.gcReleasedTensors();
}

/** The caching CPU allocator's counters (native/cpu_allocator.cc); all zero when CJEPA_CPU_CACHE=0. */
export interface CpuMemoryStats {
  /** whether libtorch allocates through the cache in this process */
  enabled: boolean;
  /** bytes of large blocks (>= 256 KiB) held by live tensors, and their peak */
  inUseBytes: number;
  peakInUseBytes: number;
  /** bytes of free large blocks kept for reuse */
  cachedBytes: number;
  /** requests served from the cache, new mappings, mappings returned to the OS */
  hits: number;
  maps: number;
  unmaps: number;
}
export function cpuMemoryStats(): CpuMemoryStats {
  return { enabled: native.cpuCacheEnabled as boolean, ...(native.cpuMemoryStats() as Omit<CpuMemoryStats, 'enabled'>) };
}
/** Returns every free cached block to the OS (live tensors keep theirs). */
export function emptyCpuCache(): void {
  native.emptyCpuCache();
}

/**
 * Whether this CPU runs bfloat16 matmuls natively (AVX512-BF16 or AMX): there bf16 autocast is a
 * speed-up; elsewhere libtorch emulates bf16 and it is slower than fp32. Read from /proc/cpuinfo
 * (Linux); false where that cannot be read.
 */
export function cpuHasBf16(): boolean {
  return cpuBf16Units().length > 0;
}

/** Which of the CPU's bf16 matmul units /proc/cpuinfo lists: 'AMX', 'AVX512-BF16' (empty where none or unreadable). */
export function cpuBf16Units(): string[] {
  try {
    const flags = ` ${readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? ''} `;
    return [['amx_bf16', 'AMX'], ['avx512_bf16', 'AVX512-BF16']].filter(([f]) => flags.includes(` ${f} `)).map(([, name]) => name!);
  } catch {
    return [];
  }
}

/** The precision 'auto' resolves to on the default device: bf16 where the hardware has it (CUDA, or a bf16 CPU). */
export function autoPrecision(): Precision {
  return runtime.defaultDevice.startsWith('cuda') || cpuHasBf16() ? 'bf16' : 'fp32';
}

/** Sets the precision of autocast regions ('auto': bf16 where the hardware runs it natively, else fp32). */
export function setPrecision(p: Precision | 'auto'): Precision {
  if (p === 'auto') p = autoPrecision();
  if (!PRECISIONS.includes(p)) throw new Error(`unknown precision '${String(p)}' (expected fp32, bf16 or auto)`);
  runtime.precision = p;
  return p;
}

/**
 * Runs `fn` with libtorch's autocast on when the runtime precision is bf16: matmuls, linear layers and
 * convolutions compute in bfloat16 (weights stay fp32; their gradients come back fp32), as under
 * PyTorch's `torch.autocast`. Outputs may be bfloat16: callers cast to fp32 before losses.
 * Under fp32 it simply calls `fn`.
 */
export function autocast<R>(fn: () => R): R {
  if (runtime.precision === 'fp32') return fn();
  const device = runtime.defaultDevice.startsWith('cuda') ? 'cuda' : 'cpu';
  const was = native.autocastEnter(device, dtypeCode('bfloat16')) as boolean;
  try {
    return fn();
  } finally {
    native.autocastExit(device, was);
  }
}

/**
 * Starts libtorch's op profiler (the one under torch.autograd.profiler) on this thread; `profilerStop`
 * writes what ran in between as a Chrome trace to `path` (src/bench/profile.ts reads it per op).
 */
export function profilerStart(path: string): void { native.profilerStart(path); }
/** Stops the profiler started by `profilerStart` and writes its trace; returns the trace's path. */
export function profilerStop(): string { return native.profilerStop() as string; }
