// Tensors <-> safetensors files (the checkpoint format: no code runs when a file is read).
import { native } from '../tensor/native.js';
import { Tensor } from '../tensor/tensor.js';
import { type DType, dtypeCode } from '../tensor/dtype.js';
import { type SafeDType, type RawTensor, readSafetensorsFileSync, writeSafetensorsFileSync, type DecodeOptions } from './safetensors.js';

const TO_SAFE: Record<DType, SafeDType> = {
  float32: 'F32', float64: 'F64', float16: 'F16', bfloat16: 'BF16', int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};
const FROM_SAFE = Object.fromEntries(Object.entries(TO_SAFE).map(([k, v]) => [v, k])) as Record<SafeDType, DType>;

export function toRaw(t: Tensor): RawTensor {
  return { dtype: TO_SAFE[t.dtype], shape: t.shape, data: new Uint8Array(native.toBuffer(t.h) as ArrayBuffer) };
}

export function fromRaw(r: RawTensor): Tensor {
  return new Tensor(native.fromBuffer(r.data, r.shape, dtypeCode(FROM_SAFE[r.dtype])));
}

/** Writes tensors atomically (temp file + rename). */
export function saveTensors(path: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): void {
  const raw = Object.create(null) as Record<string, RawTensor>; // keeps a tensor named "__proto__"
  for (const [k, t] of Object.entries(tensors)) raw[k] = toRaw(t);
  writeSafetensorsFileSync(path, raw, metadata);
}

/** Reads every tensor of a safetensors file (the caller owns the returned tensors). */
export function loadTensors(path: string, opts?: DecodeOptions): { tensors: Record<string, Tensor>; metadata: Record<string, string> } {
  const { tensors, metadata } = readSafetensorsFileSync(path, opts);
  // a null-prototype map: a tensor named "__proto__" is an entry like any other, not the prototype
  const out = Object.create(null) as Record<string, Tensor>;
  try {
    for (const [k, r] of Object.entries(tensors)) out[k] = fromRaw(r);
  } catch (e) {
    for (const t of Object.values(out)) t.dispose();
    throw e;
  }
  return { tensors: out, metadata };
}
