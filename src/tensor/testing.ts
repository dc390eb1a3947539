// Test hooks of the tensor engine, not part of the public API (src/index.ts does not export them).
import { native } from './native.js';
import { runtime } from './runtime.js';

/**
 * Makes libtorch's 'meta' device (tensors with shape, dtype and device but no data) the default
 * device, or (false) returns to the CPU. Meta runs a training step without memory or arithmetic, and
 * a tensor created off the default device shows up as a CPU tensor that the first op mixing it with
 * meta tensors refuses, as CUDA would. Reading data (item(), toArray()) on meta throws.
 */
export function useMetaDevice(on: boolean): void {
  native.setMetaAllowed(on);
  runtime.defaultDevice = on ? 'meta' : 'cpu';
}
