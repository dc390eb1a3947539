// Data types, with the codes shared with native/addon.cc (kDTypes).
export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

export const DTYPES: readonly DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

export function dtypeCode(d: DType): number {
  const c = DTYPES.indexOf(d);
  if (c < 0) throw new TypeError(`unknown dtype '${String(d)}' (expected one of ${DTYPES.join(', ')})`);
  return c;
}

export function dtypeFromCode(c: number): DType {
  const d = DTYPES[c];
  if (d === undefined) throw new TypeError(`unknown native dtype code ${c}`);
  return d;
}

export const BYTES_PER_ELEMENT: Record<DType, number> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1,
};

export type TypedArrayFor<D extends DType> =
  D extends 'float32' ? Float32Array : D extends 'float64' ? Float64Array : D extends 'int64' ? BigInt64Array :
  D extends 'int32' ? Int32Array : D extends 'int16' ? Int16Array : D extends 'int8' ? Int8Array :
  D extends 'uint8' | 'bool' ? Uint8Array : Uint16Array;

export type AnyTypedArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array | Uint16Array;

/** The dtype a typed array holds by default (Uint16Array is taken as bfloat16 raw bits). */
export function dtypeOfArray(a: AnyTypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint8Array) return 'uint8';
  if (a instanceof Uint16Array) return 'bfloat16';
  throw new TypeError('unsupported typed array');
}

export function isFloating(d: DType): boolean {
  return d === 'float32' || d === 'float64' || d === 'float16' || d === 'bfloat16';
}
