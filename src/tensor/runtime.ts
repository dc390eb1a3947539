// Where dtype, device, threads and the global seed are decided: one place, read by every creator.
import { native } from './native.js';
import type { DType } from './dtype.js';
import { availableParallelism } from 'node:os';

export const runtime = {
  /** dtype of new floating tensors when none is given */
  defaultDType: 'float32' as DType,
  /** device of new tensors when none is given: 'cpu', 'cuda', 'cuda:1', ... */
  defaultDevice: 'cpu' as string,
};

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
