// The typed Tensor API over the libtorch addon. Names follow PyTorch (camelCase); every op is one
// native call; autograd is libtorch's. Ownership: see scope.ts (tidy / keep / dispose / using).
import { native, type Handle, type GenHandle } from './native.js';
import { track, type Disposable } from './scope.js';
import { type DType, type AnyTypedArray, type TypedArrayFor, dtypeCode, dtypeFromCode, dtypeOfArray } from './dtype.js';
import { runtime } from './runtime.js';

export type Shape = readonly number[];
export type Reduction = 'mean' | 'sum' | 'none';
type TN = Tensor | number;

// The published .d.ts must type-check in a consumer whose `lib` lacks esnext.disposable (a default
// tsconfig): declare Symbol.dispose as the lib does (identical declarations merge).
declare global {
  interface SymbolConstructor { readonly dispose: unique symbol }
}

const sym = Symbol as unknown as { dispose?: symbol };
/** `Symbol.dispose` (polyfilled on Node 20) so `using t = ...` releases a tensor at block end. */
export const disposeSymbol: symbol = sym.dispose ?? ((Symbol as unknown as { dispose: symbol }).dispose = Symbol.for('Symbol.dispose'));

// ------------------------------------------------------------------ operands
// The one place a Tensor operand becomes a native handle. Anything else (null, undefined, a plain
// object, a Generator) is a TypeError naming the op and the argument, raised before the native call
// (instead of "Cannot read properties of null (reading 'h')").

function kindOf(x: unknown): string {
  if (x === null || x === undefined) return String(x);
  if (typeof x === 'object') return `a ${(x as object).constructor?.name ?? 'null-prototype object'}`;
  return `a ${typeof x} (${String(x).slice(0, 40)})`;
}
/** The native handle of tensor argument `arg` of `op`. */
export function handleOf(x: Tensor, op: string, arg: string): Handle {
  if (x instanceof Tensor) return x.h;
  throw new TypeError(`${op}: argument '${arg}' must be a Tensor, got ${kindOf(x)}`);
}
/** Like handleOf, but null / undefined mean "none" (optional operands such as a bias). */
export function optHandle(x: Tensor | null | undefined, op: string, arg: string): Handle | null {
  return x === null || x === undefined ? null : handleOf(x, op, arg);
}
/** The handles of a list of tensors. */
export function handles(xs: readonly Tensor[], op: string, arg: string): Handle[] {
  if (!Array.isArray(xs)) throw new TypeError(`${op}: argument '${arg}' must be an array of Tensors, got ${kindOf(xs)}`);
  return xs.map((x, i) => handleOf(x, op, `${arg}[${i}]`));
}
function h(x: TN, op: string, arg: string): Handle | number {
  if (typeof x === 'number') return x;
  if (x instanceof Tensor) return x.h;
  throw new TypeError(`${op}: argument '${arg}' must be a Tensor or a number, got ${kindOf(x)}`);
}

export interface CreateOptions {
  dtype?: DType;
  device?: string;
  requiresGrad?: boolean;
}

export class Tensor implements Disposable {
  /** native handle; owned by this object */
  readonly h: Handle;
  kept = false;

  constructor(handle: Handle) {
    this.h = handle;
    track(this);
  }

  // ---------------------------------------------------------------- ownership
  /** Releases the native memory now. Idempotent. */
  dispose(): void {
    native.dispose(this.h);
  }
  [Symbol.dispose](): void {
    native.dispose(this.h);
  }
  get disposed(): boolean {
    return native.isDisposed(this.h);
  }

  // ---------------------------------------------------------------- metadata
  get shape(): number[] {
    return native.shape(this.h);
  }
  get ndim(): number {
    return native.shape(this.h).length;
  }
  get dtype(): DType {
    return dtypeFromCode(native.dtype(this.h));
  }
  get device(): string {
    return native.device(this.h);
  }
  get numel(): number {
    return native.numel(this.h);
  }
  size(dim: number): number {
    const s = this.shape;
    const d = dim < 0 ? dim + s.length : dim;
    if (d < 0 || d >= s.length) throw new RangeError(`size(${dim}): tensor has ${s.length} dims (shape [${s.join(', ')}])`);
    return s[d]!;
  }
  toString(): string {
    return this.disposed ? 'Tensor(<disposed>)' : `Tensor([${this.shape.join(', ')}], ${this.dtype}, ${this.device})`;
  }

  // ---------------------------------------------------------------- data out
  /** A copy of the data as the typed array of its dtype (bfloat16/float16: raw Uint16 bits). */
  data<D extends DType = 'float32'>(): TypedArrayFor<D> {
    const buf: ArrayBuffer = native.toBuffer(this.h);
    switch (this.dtype) {
      case 'float32': return new Float32Array(buf) as TypedArrayFor<D>;
      case 'float64': return new Float64Array(buf) as TypedArrayFor<D>;
      case 'int64': return new BigInt64Array(buf) as unknown as TypedArrayFor<D>;
      case 'int32': return new Int32Array(buf) as TypedArrayFor<D>;
      case 'int16': return new Int16Array(buf) as TypedArrayFor<D>;
      case 'int8': return new Int8Array(buf) as TypedArrayFor<D>;
      case 'uint8': case 'bool': return new Uint8Array(buf) as TypedArrayFor<D>;
      default: return new Uint16Array(buf) as TypedArrayFor<D>;
    }
  }
  /** Flat array of numbers (int64 converted; float16/bfloat16 converted through float32). */
  toArray(): number[] {
    const d = this.dtype;
    if (d === 'float16' || d === 'bfloat16') {
      const f = native.to(this.h, dtypeCode('float32'));
      try { return Array.from(new Float32Array(native.toBuffer(f) as ArrayBuffer)); } finally { native.dispose(f); }
    }
    const a = this.data<DType>();
    return a instanceof BigInt64Array ? Array.from(a, Number) : Array.from(a as ArrayLike<number>);
  }
  item(): number {
    return native.item(this.h);
  }

  // ---------------------------------------------------------------- autograd
  get requiresGrad(): boolean {
    return native.requiresGrad(this.h);
  }
  get isLeaf(): boolean {
    return native.isLeaf(this.h);
  }
  requiresGrad_(on = true): this {
    native.requiresGrad_(this.h, on);
    return this;
  }
  /** The accumulated gradient (a new handle sharing the storage), or undefined. */
  get grad(): Tensor | undefined {
    const g = native.grad(this.h);
    return g === undefined ? undefined : new Tensor(g);
  }
  set grad(g: Tensor | undefined) {
    native.setGrad(this.h, g === undefined ? null : handleOf(g, 'grad (setter)', 'grad'));
  }
  backward(gradient?: Tensor, retainGraph?: boolean): void {
    native.backward(this.h, optHandle(gradient, 'backward', 'gradient'), retainGraph);
  }
  detach(): Tensor {
    return new Tensor(native.detach(this.h));
  }

  // ---------------------------------------------------------------- conversion
  to(dtype: DType | null, device?: string): Tensor {
    return new Tensor(native.to(this.h, dtype === null ? null : dtypeCode(dtype), device));
  }
  float(): Tensor { return this.to('float32'); }
  long(): Tensor { return this.to('int64'); }
  clone(): Tensor { return new Tensor(native.clone(this.h)); }
  contiguous(): Tensor { return new Tensor(native.contiguous(this.h)); }
  /** Whether the elements lie in row-major order without gaps (PyTorch is_contiguous()). */
  isContiguous(): boolean { return native.isContiguous(this.h); }

  // ---------------------------------------------------------------- elementwise
  add(o: TN, alpha?: number): Tensor {
    if (alpha !== undefined && typeof o !== 'number') return new Tensor(native.addScaled(this.h, handleOf(o, 'add', 'other'), alpha));
    return new Tensor(native.add(this.h, h(o, 'add', 'other')));
  }
  sub(o: TN): Tensor { return new Tensor(native.sub(this.h, h(o, 'sub', 'other'))); }
  /** s - this */
  rsub(s: number): Tensor { return new Tensor(native.rsub(this.h, s)); }
  mul(o: TN): Tensor { return new Tensor(native.mul(this.h, h(o, 'mul', 'other'))); }
  div(o: TN): Tensor { return new Tensor(native.div(this.h, h(o, 'div', 'other'))); }
  pow(o: TN): Tensor { return new Tensor(native.pow(this.h, h(o, 'pow', 'other'))); }
  remainder(o: TN): Tensor { return new Tensor(native.remainder(this.h, h(o, 'remainder', 'other'))); }
  maximum(o: Tensor): Tensor { return new Tensor(native.maximum(this.h, handleOf(o, 'maximum', 'other'))); }
  minimum(o: Tensor): Tensor { return new Tensor(native.minimum(this.h, handleOf(o, 'minimum', 'other'))); }
  eq(o: TN): Tensor { return new Tensor(native.eq(this.h, h(o, 'eq', 'other'))); }
  ne(o: TN): Tensor { return new Tensor(native.ne(this.h, h(o, 'ne', 'other'))); }
  lt(o: TN): Tensor { return new Tensor(native.lt(this.h, h(o, 'lt', 'other'))); }
  le(o: TN): Tensor { return new Tensor(native.le(this.h, h(o, 'le', 'other'))); }
  gt(o: TN): Tensor { return new Tensor(native.gt(this.h, h(o, 'gt', 'other'))); }
  ge(o: TN): Tensor { return new Tensor(native.ge(this.h, h(o, 'ge', 'other'))); }
  logicalAnd(o: Tensor): Tensor { return new Tensor(native.logicalAnd(this.h, handleOf(o, 'logicalAnd', 'other'))); }
  logicalOr(o: Tensor): Tensor { return new Tensor(native.logicalOr(this.h, handleOf(o, 'logicalOr', 'other'))); }
  logicalNot(): Tensor { return new Tensor(native.logicalNot(this.h)); }
  neg(): Tensor { return new Tensor(native.neg(this.h)); }
  exp(): Tensor { return new Tensor(native.exp(this.h)); }
  log(): Tensor { return new Tensor(native.log(this.h)); }
  log1p(): Tensor { return new Tensor(native.log1p(this.h)); }
  sqrt(): Tensor { return new Tensor(native.sqrt(this.h)); }
  rsqrt(): Tensor { return new Tensor(native.rsqrt(this.h)); }
  abs(): Tensor { return new Tensor(native.abs(this.h)); }
  sign(): Tensor { return new Tensor(native.sign(this.h)); }
  tanh(): Tensor { return new Tensor(native.tanh(this.h)); }
  sigmoid(): Tensor { return new Tensor(native.sigmoid(this.h)); }
  relu(): Tensor { return new Tensor(native.relu(this.h)); }
  silu(): Tensor { return new Tensor(native.silu(this.h)); }
  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor { return new Tensor(native.gelu(this.h, approximate)); }
  sin(): Tensor { return new Tensor(native.sin(this.h)); }
  cos(): Tensor { return new Tensor(native.cos(this.h)); }
  square(): Tensor { return new Tensor(native.square(this.h)); }
  reciprocal(): Tensor { return new Tensor(native.reciprocal(this.h)); }
  floor(): Tensor { return new Tensor(native.floor(this.h)); }
  ceil(): Tensor { return new Tensor(native.ceil(this.h)); }
  round(): Tensor { return new Tensor(native.round(this.h)); }
  erf(): Tensor { return new Tensor(native.erf(this.h)); }
  erfinv(): Tensor { return new Tensor(native.erfinv(this.h)); }
  isnan(): Tensor { return new Tensor(native.isnan(this.h)); }
  isfinite(): Tensor { return new Tensor(native.isfinite(this.h)); }
  clamp(min?: number | null, max?: number | null): Tensor { return new Tensor(native.clamp(this.h, min ?? null, max ?? null)); }
  clampMin(min: number): Tensor { return this.clamp(min, null); }

  // ---------------------------------------------------------------- reductions
  sum(dim?: number | number[] | null, keepdim = false): Tensor { return new Tensor(native.sum(this.h, dims(dim), keepdim)); }
  mean(dim?: number | number[] | null, keepdim = false): Tensor { return new Tensor(native.mean(this.h, dims(dim), keepdim)); }
  /** Variance with Bessel `correction` (0: population, 1: sample, PyTorch's default). */
  var(dim?: number | number[] | null, opts: { correction?: 0 | 1; keepdim?: boolean } = {}): Tensor {
    return new Tensor(native.var(this.h, dims(dim), opts.correction ?? 1, opts.keepdim ?? false));
  }
  std(dim?: number | number[] | null, opts: { correction?: 0 | 1; keepdim?: boolean } = {}): Tensor {
    return new Tensor(native.std(this.h, dims(dim), opts.correction ?? 1, opts.keepdim ?? false));
  }
  max(): Tensor { return new Tensor(native.maxAll(this.h)); }
  min(): Tensor { return new Tensor(native.minAll(this.h)); }
  maxDim(dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
    const [v, i] = native.maxDim(this.h, dim, keepdim);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  minDim(dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
    const [v, i] = native.minDim(this.h, dim, keepdim);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  argmax(dim?: number, keepdim = false): Tensor { return new Tensor(native.argmax(this.h, dim ?? null, keepdim)); }
  argmin(dim?: number, keepdim = false): Tensor { return new Tensor(native.argmin(this.h, dim ?? null, keepdim)); }
  logsumexp(dim: number | number[], keepdim = false): Tensor { return new Tensor(native.logsumexp(this.h, dims(dim), keepdim)); }
  /** Vector p-norm over `dim` (all elements when omitted). */
  norm(p = 2, dim?: number | number[] | null, keepdim = false): Tensor {
    return new Tensor(native.vectorNorm(this.h, p, dims(dim), keepdim));
  }
  all(): Tensor { return new Tensor(native.all(this.h)); }
  any(): Tensor { return new Tensor(native.any(this.h)); }
  cumsum(dim: number): Tensor { return new Tensor(native.cumsum(this.h, dim)); }
  sort(dim = -1, descending = false): { values: Tensor; indices: Tensor } {
    const [v, i] = native.sort(this.h, dim, descending);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  topk(k: number, dim = -1, largest = true): { values: Tensor; indices: Tensor } {
    const [v, i] = native.topk(this.h, k, dim, largest);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }

  // ---------------------------------------------------------------- linear algebra
  matmul(o: Tensor): Tensor { return new Tensor(native.matmul(this.h, handleOf(o, 'matmul', 'other'))); }
  mm(o: Tensor): Tensor { return new Tensor(native.mm(this.h, handleOf(o, 'mm', 'other'))); }
  bmm(o: Tensor): Tensor { return new Tensor(native.bmm(this.h, handleOf(o, 'bmm', 'other'))); }
  t(): Tensor { return new Tensor(native.t(this.h)); }
  /** Singular values, descending (torch.linalg.svdvals). */
  svdvals(): Tensor { return new Tensor(native.svdvals(this.h)); }
  /** Eigenvalues of a symmetric matrix, ascending (torch.linalg.eigvalsh). */
  eigvalsh(): Tensor { return new Tensor(native.eigvalsh(this.h)); }
  /** Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix (torch.linalg.eigh). */
  eigh(): { values: Tensor; vectors: Tensor } {
    const [v, q] = native.eigh(this.h);
    return { values: new Tensor(v), vectors: new Tensor(q) };
  }
  diag(offset = 0): Tensor { return new Tensor(native.diag(this.h, offset)); }
  diagonal(offset = 0, dim1 = 0, dim2 = 1): Tensor { return new Tensor(native.diagonal(this.h, offset, dim1, dim2)); }
  triu(k = 0): Tensor { return new Tensor(native.triu(this.h, k)); }
  tril(k = 0): Tensor { return new Tensor(native.tril(this.h, k)); }

  // ---------------------------------------------------------------- views and indexing
  reshape(shape: Shape): Tensor { return new Tensor(native.reshape(this.h, shape)); }
  view(shape: Shape): Tensor { return new Tensor(native.view(this.h, shape)); }
  permute(order: Shape): Tensor { return new Tensor(native.permute(this.h, order)); }
  transpose(d0: number, d1: number): Tensor { return new Tensor(native.transpose(this.h, d0, d1)); }
  /** this[..., start:end:step, ...] along `dim` (end clamps to the size, like Python). */
  slice(dim: number, start: number, end: number = Number.MAX_SAFE_INTEGER, step = 1): Tensor {
    return new Tensor(native.slice(this.h, dim, start, end, step));
  }
  narrow(dim: number, start: number, length: number): Tensor { return new Tensor(native.narrow(this.h, dim, start, length)); }
  select(dim: number, index: number): Tensor { return new Tensor(native.select(this.h, dim, index)); }
  unsqueeze(dim: number): Tensor { return new Tensor(native.unsqueeze(this.h, dim)); }
  squeeze(dim?: number): Tensor { return new Tensor(native.squeeze(this.h, dim ?? null)); }
  flatten(start = 0, end = -1): Tensor { return new Tensor(native.flatten(this.h, start, end)); }
  expand(shape: Shape): Tensor { return new Tensor(native.expand(this.h, shape)); }
  expandAs(o: Tensor): Tensor { return this.expand(o.shape); }
  repeat(reps: Shape): Tensor { return new Tensor(native.repeat(this.h, reps)); }
  repeatInterleave(repeats: number, dim: number): Tensor { return new Tensor(native.repeatInterleave(this.h, repeats, dim)); }
  indexSelect(dim: number, index: Tensor): Tensor { return new Tensor(native.indexSelect(this.h, dim, handleOf(index, 'indexSelect', 'index'))); }
  /** this[index] along dim 0 with an integer or boolean index tensor. */
  index(index: Tensor): Tensor { return new Tensor(native.tensorIndex(this.h, handleOf(index, 'index', 'index'))); }
  gather(dim: number, index: Tensor): Tensor { return new Tensor(native.gather(this.h, dim, handleOf(index, 'gather', 'index'))); }
  scatter(dim: number, index: Tensor, src: Tensor): Tensor { return new Tensor(native.scatter(this.h, dim, handleOf(index, 'scatter', 'index'), handleOf(src, 'scatter', 'src'))); }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor { return new Tensor(native.scatterAdd(this.h, dim, handleOf(index, 'scatterAdd', 'index'), handleOf(src, 'scatterAdd', 'src'))); }
  indexAdd(dim: number, index: Tensor, src: Tensor): Tensor { return new Tensor(native.indexAdd(this.h, dim, handleOf(index, 'indexAdd', 'index'), handleOf(src, 'indexAdd', 'src'))); }
  split(size: number, dim = 0): Tensor[] { return (native.split(this.h, size, dim) as Handle[]).map((x) => new Tensor(x)); }
  chunk(chunks: number, dim = 0): Tensor[] { return (native.chunk(this.h, chunks, dim) as Handle[]).map((x) => new Tensor(x)); }
  maskedFill(mask: Tensor, value: TN): Tensor { return new Tensor(native.maskedFill(this.h, handleOf(mask, 'maskedFill', 'mask'), h(value, 'maskedFill', 'value'))); }
  maskedSelect(mask: Tensor): Tensor { return new Tensor(native.maskedSelect(this.h, handleOf(mask, 'maskedSelect', 'mask'))); }
  nonzero(): Tensor { return new Tensor(native.nonzero(this.h)); }
  flip(dimsToFlip: Shape): Tensor { return new Tensor(native.flip(this.h, dimsToFlip)); }
  roll(shifts: Shape, dimsToRoll: Shape): Tensor { return new Tensor(native.roll(this.h, shifts, dimsToRoll)); }
  oneHot(numClasses: number): Tensor { return new Tensor(native.oneHot(this.h, numClasses)); }
  /** Constant padding, PyTorch's F.pad order (last dim first). */
  pad(padding: Shape, value = 0): Tensor { return new Tensor(native.pad(this.h, padding, value)); }

  // ---------------------------------------------------------------- in place (no autograd history wanted)
  add_(o: TN, alpha?: number): this {
    if (alpha !== undefined && typeof o !== 'number') native.addScaled_(this.h, handleOf(o, 'add_', 'other'), alpha);
    else native.add_(this.h, h(o, 'add_', 'other'));
    return this;
  }
  sub_(o: TN): this { native.sub_(this.h, h(o, 'sub_', 'other')); return this; }
  mul_(o: TN): this { native.mul_(this.h, h(o, 'mul_', 'other')); return this; }
  div_(o: TN): this { native.div_(this.h, h(o, 'div_', 'other')); return this; }
  addcmul_(a: Tensor, b: Tensor, value = 1): this { native.addcmul_(this.h, handleOf(a, 'addcmul_', 'a'), handleOf(b, 'addcmul_', 'b'), value); return this; }
  addcdiv_(a: Tensor, b: Tensor, value = 1): this { native.addcdiv_(this.h, handleOf(a, 'addcdiv_', 'a'), handleOf(b, 'addcdiv_', 'b'), value); return this; }
  lerp_(end: Tensor, weight: number): this { native.lerp_(this.h, handleOf(end, 'lerp_', 'end'), weight); return this; }
  copy_(src: Tensor): this { native.copy_(this.h, handleOf(src, 'copy_', 'src')); return this; }
  zero_(): this { native.zero_(this.h); return this; }
  fill_(v: number): this { native.fill_(this.h, v); return this; }
  clamp_(min?: number | null, max?: number | null): this { native.clamp_(this.h, min ?? null, max ?? null); return this; }
  sqrt_(): this { native.sqrt_(this.h); return this; }
  maskedFill_(mask: Tensor, v: number): this { native.maskedFill_(this.h, handleOf(mask, 'maskedFill_', 'mask'), v); return this; }
  uniform_(a = 0, b = 1, gen?: Generator): this { native.uniform_(this.h, a, b, gen?.h ?? null); return this; }
  normal_(mean = 0, std = 1, gen?: Generator): this { native.normal_(this.h, mean, std, gen?.h ?? null); return this; }
}

function dims(d: number | number[] | null | undefined): number[] | null {
  if (d === undefined || d === null) return null;
  return typeof d === 'number' ? [d] : d;
}

// ------------------------------------------------------------------ random generators

/** A seedable libtorch CPU generator; its state can be saved and restored (checkpoints). */
export class Generator {
  readonly h: GenHandle;
  constructor(seed: number | bigint = 0) {
    this.h = native.generatorNew(Number(seed));
  }
  /** libtorch's global generator (used by dropout); not owned. */
  static default(): Generator {
    const g = Object.create(Generator.prototype) as Generator;
    (g as { h: GenHandle }).h = native.defaultGenerator();
    return g;
  }
  getState(): Tensor { return new Tensor(native.generatorGetState(this.h)); }
  setState(state: Tensor): void { native.generatorSetState(this.h, handleOf(state, 'setState', 'state')); }
}

// ------------------------------------------------------------------ creation

function opts(o: CreateOptions | undefined): [number, string | undefined] {
  return [dtypeCode(o?.dtype ?? runtime.defaultDType), o?.device ?? runtime.defaultDevice];
}
function finish(t: Tensor, o: CreateOptions | undefined): Tensor {
  if (o?.requiresGrad) t.requiresGrad_(true);
  return t;
}
function checkShape(shape: Shape, op: string): Shape {
  if (!Array.isArray(shape)) throw new TypeError(`${op}: shape must be an array of integers, got ${String(shape)}`);
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new RangeError(`${op}: shape [${shape.join(', ')}] has an invalid size ${s}`);
  }
  return shape;
}

export function empty(shape: Shape, o?: CreateOptions): Tensor { return finish(new Tensor(native.empty(checkShape(shape, 'empty'), ...opts(o))), o); }
export function zeros(shape: Shape, o?: CreateOptions): Tensor { return finish(new Tensor(native.zeros(checkShape(shape, 'zeros'), ...opts(o))), o); }
export function ones(shape: Shape, o?: CreateOptions): Tensor { return finish(new Tensor(native.ones(checkShape(shape, 'ones'), ...opts(o))), o); }
export function full(shape: Shape, value: number, o?: CreateOptions): Tensor {
  const [d, dev] = opts(o);
  return finish(new Tensor(native.full(checkShape(shape, 'full'), value, d, dev)), o);
}
export function zerosLike(t: Tensor, o?: CreateOptions): Tensor { return zeros(t.shape, { dtype: t.dtype, device: t.device, ...o }); }
export function onesLike(t: Tensor, o?: CreateOptions): Tensor { return ones(t.shape, { dtype: t.dtype, device: t.device, ...o }); }
/** [start, end) with `step`; `arange(n)` is 0..n-1 as int64. */
export function arange(start: number, end?: number, step = 1, o?: CreateOptions): Tensor {
  if (end === undefined) { end = start; start = 0; }
  const dtype = o?.dtype ?? (Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step) ? 'int64' : runtime.defaultDType);
  return finish(new Tensor(native.arange(start, end, step, dtypeCode(dtype), o?.device ?? runtime.defaultDevice)), o);
}
export function linspace(start: number, end: number, steps: number, o?: CreateOptions): Tensor {
  return finish(new Tensor(native.linspace(start, end, steps, ...opts(o))), o);
}
export function eye(n: number, o?: CreateOptions): Tensor { return finish(new Tensor(native.eye(n, ...opts(o))), o); }

/** A tensor from a typed array (copied) or a flat / nested number array. */
export function tensor(data: AnyTypedArray | number[] | number[][] | number[][][] | number, shapeOrOpts?: Shape | CreateOptions, maybeOpts?: CreateOptions): Tensor {
  let shape: Shape | undefined;
  let o: CreateOptions | undefined;
  if (Array.isArray(shapeOrOpts)) { shape = shapeOrOpts; o = maybeOpts; } else { o = shapeOrOpts as CreateOptions | undefined; }
  let arr: AnyTypedArray;
  if (typeof data === 'number') {
    shape ??= [];
    data = [data];
  }
  if (Array.isArray(data)) {
    const inferred: number[] = [];
    let level: unknown = data;
    while (Array.isArray(level)) { inferred.push(level.length); level = level[0]; }
    const flat = (data as unknown[]).flat(Infinity as 1) as number[];
    shape ??= inferred;
    const dtype = o?.dtype ?? runtime.defaultDType;
    arr = typedArrayFromNumbers(flat, dtype);
    const t = new Tensor(native.fromBuffer(arr, checkShape(shape, 'tensor'), dtypeCode(dtype)));
    return finish(o?.device && o.device !== 'cpu' ? t.to(null, o.device) : t, o);
  }
  arr = data;
  const dtype = o?.dtype ?? dtypeOfArray(arr);
  shape ??= [arr.length];
  const t = new Tensor(native.fromBuffer(arr, checkShape(shape, 'tensor'), dtypeCode(dtype)));
  return finish(o?.device && o.device !== 'cpu' ? t.to(null, o.device) : t, o);
}

function typedArrayFromNumbers(flat: number[], dtype: DType): AnyTypedArray {
  switch (dtype) {
    case 'float32': return Float32Array.from(flat);
    case 'float64': return Float64Array.from(flat);
    case 'int64': return BigInt64Array.from(flat, (x) => BigInt(Math.trunc(x)));
    case 'int32': return Int32Array.from(flat);
    case 'int16': return Int16Array.from(flat);
    case 'int8': return Int8Array.from(flat);
    case 'uint8': return Uint8Array.from(flat);
    case 'bool': return Uint8Array.from(flat, (x) => (x ? 1 : 0));
    default: throw new TypeError(`tensor(): build ${dtype} tensors from float32 data and .to('${dtype}')`);
  }
}

export function rand(shape: Shape, o?: CreateOptions & { generator?: Generator }): Tensor {
  const [d, dev] = opts(o);
  return finish(new Tensor(native.rand(checkShape(shape, 'rand'), d, o?.generator?.h ?? null, dev)), o);
}
export function randn(shape: Shape, o?: CreateOptions & { generator?: Generator }): Tensor {
  const [d, dev] = opts(o);
  return finish(new Tensor(native.randn(checkShape(shape, 'randn'), d, o?.generator?.h ?? null, dev)), o);
}
/** Integers uniform in [low, high). */
export function randint(low: number, high: number, shape: Shape, o?: CreateOptions & { generator?: Generator }): Tensor {
  return new Tensor(native.randint(low, high, checkShape(shape, 'randint'), dtypeCode(o?.dtype ?? 'int64'), o?.generator?.h ?? null, o?.device));
}
export function randperm(n: number, o?: CreateOptions & { generator?: Generator }): Tensor {
  return new Tensor(native.randperm(n, dtypeCode(o?.dtype ?? 'int64'), o?.generator?.h ?? null, o?.device));
}

// ------------------------------------------------------------------ multi-tensor functions

export function cat(ts: readonly Tensor[], dim = 0): Tensor { return new Tensor(native.cat(handles(ts, 'cat', 'tensors'), dim)); }
export function stack(ts: readonly Tensor[], dim = 0): Tensor { return new Tensor(native.stack(handles(ts, 'stack', 'tensors'), dim)); }
export function where(cond: Tensor, a: TN, b: TN): Tensor { return new Tensor(native.where(handleOf(cond, 'where', 'cond'), h(a, 'where', 'a'), h(b, 'where', 'b'))); }

// ------------------------------------------------------------------ autograd mode

/** Runs `fn` with gradient recording off (like `torch.no_grad()`). */
export function noGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(false);
  try { return fn(); } finally { native.setGradEnabled(prev); }
}
/** Runs `fn` with gradient recording on (inside a noGrad region). */
export function enableGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(true);
  try { return fn(); } finally { native.setGradEnabled(prev); }
}
export function isGradEnabled(): boolean { return native.isGradEnabled(); }
