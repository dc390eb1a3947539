// Reading torch.save files without Python and without running code (what torch.load does with
// weights_only=False: the pickle may name and call any Python function).
//
// Formats:
//  - the zip archive of torch >= 1.6 (`<name>/data.pkl`, `<name>/data/<key>` raw storages,
//    `<name>/version`, sometimes `<name>/byteorder`): the pickle is read with the restricted VM of
//    pickle.ts, storages are read from the archive only when a tensor is materialised, so the
//    optimiser state of a many-gigabyte training checkpoint is never read from disk;
//  - the legacy format (torch < 1.6, or `_use_new_zipfile_serialization=False`): magic-number,
//    protocol and sys-info pickles, the data pickle, the storage-key list, then each storage as an
//    int64 element count and its bytes;
//  - anything else (the pre-1.0 tar layout, a bare pickle, TorchScript archives) is refused.
//
// The allow-list: collections.OrderedDict, torch._utils._rebuild_tensor(_v2),
// torch._utils._rebuild_parameter(_with_state), the typed storage classes (torch.FloatStorage ...)
// and the torch dtypes (inert constants). Any other global becomes a `Refused` marker (nothing is
// imported or called); values the caller reads are checked (stateDictOf / assertNoRefused), values
// it does not read (the AMP scaler; the optimiser state outside `convert`) may hold markers and are skipped; the
// refused names are listed in TorchFile.refused so a caller can warn.
import { openSync, readSync, closeSync } from 'node:fs';
import { unpickle, Refused, PyDict, PickleError, assertNoRefused, type AllowedGlobal } from './pickle.js';
import { ZipReader, RandomAccessFile, looksLikeZip } from './zip.js';
import { dtypeByteSize, type RawTensor, type SafeDType } from './safetensors.js';

export class TorchLoadError extends Error {
  constructor(path: string, message: string) {
    super(`'${path}': ${message}`);
    this.name = 'TorchLoadError';
  }
}

const STORAGE_DTYPES: Record<string, SafeDType> = {
  FloatStorage: 'F32', DoubleStorage: 'F64', HalfStorage: 'F16', BFloat16Storage: 'BF16', LongStorage: 'I64',
  IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};
const DTYPE_NAMES = ['float32', 'float', 'float64', 'double', 'float16', 'half', 'bfloat16', 'int64', 'long', 'int32', 'int', 'int16', 'short', 'int8', 'uint8', 'bool'];

interface StorageType extends AllowedGlobal { readonly dtype: SafeDType }

/** A storage: `numel` elements of `dtype`, read from the file on demand. */
export class TorchStorage {
  constructor(readonly key: string, readonly dtype: SafeDType, readonly numel: number, private readonly load: () => Uint8Array) {}
  /** The storage's bytes (numel * element size), read from the file now. */
  read(): Uint8Array {
    const b = this.load();
    const want = this.numel * dtypeByteSize(this.dtype);
    if (b.byteLength < want) throw new PickleError(`storage '${this.key}' has ${b.byteLength} bytes, needs ${want} (truncated file?)`);
    return b.subarray(0, want);
  }
}

/** A tensor as the pickle describes it; `toRaw` reads its storage and returns contiguous bytes. */
export class TorchTensor {
  constructor(
    readonly storage: TorchStorage, readonly offset: number, readonly shape: number[], readonly stride: number[],
    readonly requiresGrad: boolean,
  ) {
    const bad = (m: string): never => { throw new PickleError(`tensor on storage '${storage.key}': ${m}`); };
    if (!Number.isSafeInteger(offset) || offset < 0) bad(`bad storage offset ${offset}`);
    if (shape.length !== stride.length) bad(`size ${JSON.stringify(shape)} and stride ${JSON.stringify(stride)} differ in length`);
    let last = offset, numel = 1;
    shape.forEach((d, i) => {
      const s = stride[i]!;
      if (!Number.isSafeInteger(d) || d < 0 || !Number.isSafeInteger(s) || s < 0) bad(`bad size/stride ${JSON.stringify(shape)} / ${JSON.stringify(stride)}`);
      last += (d - 1) * s;
      numel *= d;
    });
    if (numel > 0 && last >= storage.numel) bad(`size ${JSON.stringify(shape)}, stride ${JSON.stringify(stride)} and offset ${offset} reach element ${last} of a ${storage.numel}-element storage`);
  }

  get dtype(): SafeDType {
    return this.storage.dtype;
  }

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** BUILD on a rebuilt tensor (Python attributes of a Parameter subclass): ignored. */
  setState(): void {}

  /** Contiguous little-endian bytes (a view of the storage when the tensor is contiguous, else a copy). */
  toRaw(): RawTensor {
    const es = dtypeByteSize(this.dtype);
    const n = this.numel;
    const shape = this.shape.slice();
    if (n === 0) return { dtype: this.dtype, shape, data: new Uint8Array(0) };
    // a state dict never holds overlapping views (stride 0, expand()): refusing them bounds what
    // materialising a tensor allocates by the size of its storage
    if (n > this.storage.numel) {
      throw new PickleError(`tensor of size ${JSON.stringify(shape)} on storage '${this.storage.key}' has more elements than its ${this.storage.numel}-element storage (an overlapping view such as expand()): not supported`);
    }
    const src = this.storage.read();
    let contiguous = true;
    for (let i = shape.length - 1, expect = 1; i >= 0; i--) {
      if (shape[i] !== 1 && this.stride[i] !== expect) contiguous = false;
      expect *= shape[i]!;
    }
    if (contiguous) return { dtype: this.dtype, shape, data: src.subarray(this.offset * es, (this.offset + n) * es) };
    // non-contiguous (a transposed or sliced view was saved): gather element by element in C order
    const out = new Uint8Array(n * es);
    const nd = shape.length, idx = new Array<number>(nd).fill(0);
    let s = this.offset;
    for (let k = 0; k < n; k++) {
      out.set(src.subarray(s * es, s * es + es), k * es);
      for (let d = nd - 1; d >= 0; d--) {
        idx[d]!++;
        s += this.stride[d]!;
        if (idx[d]! < shape[d]!) break;
        s -= idx[d]! * this.stride[d]!;
        idx[d] = 0;
      }
    }
    return { dtype: this.dtype, shape, data: out };
  }
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

function intTuple(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || !v.every(isInt)) throw new PickleError(`${what} must be a tuple of integers`);
  return v as number[];
}

function rebuildTensor(args: unknown[], fn: string): unknown {
  const [storage, offset, size, stride, requiresGrad] = args;
  if (storage instanceof Refused) return storage;
  if (!(storage instanceof TorchStorage)) throw new PickleError(`${fn}: the first argument is not a storage`);
  if (!isInt(offset)) throw new PickleError(`${fn}: the storage offset is not an integer`);
  return new TorchTensor(storage, offset, intTuple(size, `${fn} size`), intTuple(stride, `${fn} stride`), requiresGrad === true);
}

function rebuildParameter(args: unknown[]): unknown {
  const data = args[0];
  if (data instanceof Refused || data instanceof TorchTensor) return data;
  throw new PickleError('_rebuild_parameter: the data is not a tensor');
}

/** The allow-list: every global a state dict (and torch.save's container) needs, implemented here. */
export const SAFE_GLOBALS: ReadonlyMap<string, AllowedGlobal> = (() => {
  const m = new Map<string, AllowedGlobal>();
  const add = (name: string, g: Omit<AllowedGlobal, 'name'> & Record<string, unknown> = {}) => m.set(name, { name, ...g });
  add('collections.OrderedDict', {
    call: (args) => {
      const d = new PyDict('OrderedDict');
      const init = args[0];
      if (Array.isArray(init)) {
        for (const kv of init) {
          if (!Array.isArray(kv) || kv.length !== 2) throw new PickleError('OrderedDict(...) needs (key, value) pairs');
          d.map.set(kv[0], kv[1]);
        }
      } else if (init instanceof PyDict) for (const [k, v] of init.map) d.map.set(k, v);
      return d;
    },
  });
  add('torch._utils._rebuild_tensor_v2', { call: (a) => rebuildTensor(a, '_rebuild_tensor_v2') });
  add('torch._utils._rebuild_tensor', { call: (a) => rebuildTensor(a, '_rebuild_tensor') });
  add('torch._utils._rebuild_parameter', { call: rebuildParameter });
  add('torch._utils._rebuild_parameter_with_state', { call: rebuildParameter });
  for (const [cls, dtype] of Object.entries(STORAGE_DTYPES)) add(`torch.${cls}`, { dtype });
  for (const d of DTYPE_NAMES) add(`torch.${d}`);
  return m;
})();

function storageType(t: unknown, where: string): SafeDType | Refused {
  if (t instanceof Refused) return t;
  const dt = (t as Partial<StorageType> | null)?.dtype;
  if (!dt) throw new PickleError(`${where}: the storage type is not a storage class`);
  return dt;
}

export interface TorchFile {
  path: string;
  format: 'zip' | 'legacy';
  /** The unpickled object: PyDict, arrays, primitives, TorchTensor, Refused markers. */
  root: unknown;
  /** Globals outside the allow-list that the pickle names (never imported, never called). */
  refused: string[];
  close(): void;
}

/** The first bytes of a file (up to n). */
function head(path: string, n: number): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(n);
    const got = readSync(fd, b, 0, n, 0);
    return b.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

function readZip(path: string): TorchFile {
  const zip = new ZipReader(path);
  try {
    const pkls = [...zip.entries.keys()].filter((k) => /^[^/]+\/data\.pkl$/.test(k));
    if (pkls.length !== 1) {
      const ts = [...zip.entries.keys()].some((k) => k.endsWith('/constants.pkl') || k.includes('/code/'));
      throw new TorchLoadError(path, ts ? 'a TorchScript archive (torch.jit.save), not a torch.save checkpoint: export its state_dict() with torch.save'
        : `a zip archive without exactly one '<name>/data.pkl' (${pkls.length} found): not a torch.save file`);
    }
    const prefix = pkls[0]!.slice(0, -'/data.pkl'.length);
    const bo = zip.entries.has(`${prefix}/byteorder`) ? zip.read(`${prefix}/byteorder`).toString('latin1').trim() : 'little';
    if (bo !== 'little') throw new TorchLoadError(path, `storages are ${bo}-endian; only little-endian files are supported`);
    const r = unpickle(zip.read(pkls[0]!), {
      globals: SAFE_GLOBALS, what: `${path}: ${pkls[0]}`,
      persistentLoad: (pid) => {
        if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) throw new PickleError(`unknown persistent id ${JSON.stringify(pid)}`);
        const [, type, key, , numel] = pid as [string, unknown, unknown, unknown, unknown];
        const dt = storageType(type, `storage '${String(key)}'`);
        if (dt instanceof Refused) return dt;
        if (typeof key !== 'string' || !isInt(numel) || numel < 0) throw new PickleError(`bad storage record ${JSON.stringify(pid.slice(2))}`);
        const name = `${prefix}/data/${key}`;
        if (!zip.entries.has(name)) throw new TorchLoadError(path, `storage '${key}' is missing from the archive (${name})`);
        return new TorchStorage(key, dt, numel, () => zip.read(name));
      },
    });
    return { path, format: 'zip', root: r.value, refused: r.refused, close: () => zip.close() };
  } catch (e) {
    zip.close();
    throw e;
  }
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PICKLE_WINDOW = 64 << 20;

function readLegacy(path: string, file: RandomAccessFile): TorchFile {
  const buf = file.readAt(0, Math.min(file.size, LEGACY_PICKLE_WINDOW), 'the pickles');
  const plain = (start: number, what: string) => unpickle(buf, { globals: SAFE_GLOBALS, start, what: `${path}: ${what}` });
  const magic = plain(0, 'magic number');
  if (magic.value !== LEGACY_MAGIC) {
    throw new TorchLoadError(path, 'a pickle, but not one written by torch.save (no torch magic number); refusing to guess its layout');
  }
  const proto = plain(magic.end, 'protocol version');
  if (proto.value !== 1001) throw new TorchLoadError(path, `legacy torch.save protocol ${String(proto.value)} is not supported (expected 1001)`);
  const sys = plain(proto.end, 'sys info');
  if (sys.value instanceof PyDict && sys.value.get('little_endian') === false) throw new TorchLoadError(path, 'written on a big-endian machine: not supported');
  // storages: key -> (dtype, numel); their bytes follow the key list, in its order, each after an int64 count
  const types = new Map<string, SafeDType | null>();
  let offsets: Map<string, number> | null = null;
  let keysEnd = 0, keyList: unknown[] = [];
  const locate = (key: string): number => {
    if (!offsets) {
      offsets = new Map();
      let p = keysEnd;
      for (const k of keyList) {
        const dt = types.get(String(k));
        if (!dt) break; // a storage of a refused type: its size is unknown, so are the offsets after it
        offsets.set(String(k), p);
        const n = Number(file.readAt(p, 8, `the size of storage '${String(k)}'`).readBigInt64LE(0));
        p += 8 + n * dtypeByteSize(dt);
      }
    }
    const at = offsets.get(key);
    if (at === undefined) throw new TorchLoadError(path, `storage '${key}' cannot be located (it follows a storage of a refused type)`);
    return at;
  };
  const main = unpickle(buf, {
    globals: SAFE_GLOBALS, start: sys.end, what: `${path}: data pickle`,
    persistentLoad: (pid) => {
      if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 6) throw new PickleError(`unknown persistent id ${JSON.stringify(pid)}`);
      const [, type, key, , numel, view] = pid as [string, unknown, unknown, unknown, unknown, unknown];
      if (typeof key !== 'string' || !isInt(numel) || numel < 0) throw new PickleError(`bad storage record ${JSON.stringify(pid.slice(2))}`);
      const dt = storageType(type, `storage '${key}'`);
      types.set(key, dt instanceof Refused ? null : dt);
      if (dt instanceof Refused) return dt;
      const es = dtypeByteSize(dt);
      const root = new TorchStorage(key, dt, numel, () => {
        const at = locate(key);
        const n = Number(file.readAt(at, 8, `the size of storage '${key}'`).readBigInt64LE(0));
        if (n !== numel) throw new TorchLoadError(path, `storage '${key}' holds ${n} elements, the pickle says ${numel}`);
        return file.readAt(at + 8, n * es, `storage '${key}'`);
      });
      if (view === null || view === undefined) return root;
      const [vkey, voff, vsize] = intTupleOrKey(view);
      return new TorchStorage(vkey, dt, vsize, () => root.read().subarray(voff * es, (voff + vsize) * es));
    },
  });
  const keys = plain(main.end, 'storage keys');
  if (!Array.isArray(keys.value)) throw new TorchLoadError(path, 'the storage key list is not a list');
  keyList = keys.value;
  keysEnd = keys.end;
  return { path, format: 'legacy', root: main.value, refused: main.refused, close: () => file.close() };
}

function intTupleOrKey(view: unknown): [string, number, number] {
  if (!Array.isArray(view) || view.length !== 3 || typeof view[0] !== 'string' || !isInt(view[1]) || !isInt(view[2])) {
    throw new PickleError(`bad storage view record ${JSON.stringify(view)}`);
  }
  return view as [string, number, number];
}

/**
 * Opens a torch.save file (zip or legacy) and unpickles it with the restricted reader. Tensors are
 * read lazily (TorchTensor.toRaw); close() the file when done.
 */
export function readTorchFile(path: string): TorchFile {
  const h = head(path, 512);
  const fail = (m: string): never => { throw new TorchLoadError(path, m); };
  try {
    if (looksLikeZip(h)) return readZip(path);
    if (h.length > 262 && Buffer.from(h.subarray(257, 262)).toString('latin1') === 'ustar') {
      fail('a tar archive: the pre-1.0 torch.save format is not supported; re-save it with a recent torch (torch.save(torch.load(f), g))');
    }
    if (h[0] === 0x80) {
      const file = new RandomAccessFile(path, fail);
      try {
        return readLegacy(path, file);
      } catch (e) {
        file.close();
        throw e;
      }
    }
  } catch (e) {
    if (e instanceof TorchLoadError || (e as Error).message.includes(path)) throw e;
    throw new TorchLoadError(path, (e as Error).message);
  }
  return fail(h.length === 0 ? 'the file is empty' : 'not a torch.save file (neither a zip archive nor a pickle)');
}

/**
 * Checks that `v` is a state dict (a dict of str -> tensor, nothing refused) and returns it as a
 * record; `where` names it in errors.
 */
export function stateDictOf(v: unknown, where: string): Record<string, TorchTensor> {
  assertNoRefused(v, where);
  if (!(v instanceof PyDict)) throw new PickleError(`${where} is not a dict (a state dict was expected)`);
  const out: Record<string, TorchTensor> = {};
  for (const [k, t] of v.map) {
    if (typeof k !== 'string') throw new PickleError(`${where} has a non-string key ${JSON.stringify(k)}`);
    if (!(t instanceof TorchTensor)) throw new PickleError(`${where}[${JSON.stringify(k)}] is not a tensor`);
    Object.defineProperty(out, k, { value: t, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** True when every value of the dict is a tensor (a plain state dict). */
export function isStateDict(v: unknown): boolean {
  return v instanceof PyDict && v.map.size > 0 && [...v.map].every(([k, t]) => typeof k === 'string' && t instanceof TorchTensor);
}
