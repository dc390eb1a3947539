/**
 * Pure-TypeScript reader/writer for the safetensors format
 * (https://github.com/huggingface/safetensors). No tensor-engine dependency:
 * tensors are exchanged as raw little-endian bytes ({@link RawTensor}).
 *
 * Layout:
 *   - 8 bytes: little-endian u64 `N`, the header length in bytes;
 *   - N bytes: UTF-8 JSON object
 *       { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] }, ...,
 *         "__metadata__": { "<key>": "<string value>" } }
 *     (offsets are relative to the start of the data buffer);
 *   - the data buffer (rest of the file).
 *
 * Writing follows the reference implementation (safetensors crate, `prepare()`):
 *   - tensors are laid out sorted by DEScending dtype alignment (reference enum order:
 *     I64, F64, F32, I32, BF16, F16, I16, I8, U8, BOOL), then by name (UTF-8 byte order),
 *     regardless of the insertion order of the `tensors` record. Together with the header
 *     padding this keeps every tensor naturally aligned in the file;
 *   - the JSON is compact, with `__metadata__` first (only when metadata is given);
 *   - the header is right-padded with spaces to a multiple of 8 bytes.
 * For the same inputs the output is byte-identical to the reference serializer.
 *
 * Reading mirrors the reference `read_metadata()/validate()` checks: header length
 * <= maxHeaderBytes (default 100_000_000) and within the file, valid UTF-8 JSON object,
 * known dtypes, shapes of non-negative integers, data_offsets that, sorted by offset,
 * tile the data buffer contiguously from 0 to its end (no holes, no overlaps, no trailing
 * bytes) and whose sizes equal numel * dtypeSize. As in the reference, a `null`
 * `__metadata__` is treated as absent and unknown keys inside a tensor entry are ignored.
 * Stricter than the reference: a header nested deeper than {@link MAX_HEADER_DEPTH}, a key
 * repeated within one JSON object, and BOOL data bytes other than 0 and 1 are refused.
 *
 * Endianness: data bytes are passed through untouched; they are little-endian in the file
 * and callers on a (hypothetical) big-endian host must byte-swap themselves.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';

export type SafeDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** A tensor as raw bytes. `data` holds numel * dtypeByteSize(dtype) little-endian bytes (C order). */
export interface RawTensor {
  dtype: SafeDType;
  shape: number[];
  data: Uint8Array;
}

export interface DecodeOptions {
  /** Largest accepted JSON header, in bytes. Default 100_000_000 (the reference limit). */
  maxHeaderBytes?: number;
}

export interface DecodedSafetensors {
  tensors: Record<string, RawTensor>;
  metadata: Record<string, string>;
}

/** Error raised for malformed files / invalid inputs. `path` and `tensor` are set when known. */
export class SafetensorsError extends Error {
  readonly path: string | undefined;
  readonly tensor: string | undefined;
  constructor(message: string, opts: { path?: string; tensor?: string; cause?: unknown } = {}) {
    const where =
      (opts.path !== undefined ? ` file ${JSON.stringify(opts.path)}` : '') +
      (opts.tensor !== undefined ? ` tensor ${JSON.stringify(opts.tensor)}` : '');
    super(`safetensors${where}: ${message}`, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'SafetensorsError';
    this.path = opts.path;
    this.tensor = opts.tensor;
  }
}

export const DEFAULT_MAX_HEADER_BYTES = 100_000_000;

const DTYPE_SIZE: Readonly<Record<SafeDType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** Rank in the reference `Dtype` enum (increasing alignment); used for the write order. */
const DTYPE_RANK: Readonly<Record<SafeDType, number>> = {
  BOOL: 0, U8: 1, I8: 2, I16: 3, F16: 4, BF16: 5, I32: 6, F32: 7, F64: 8, I64: 9,
};

function isSafeDType(d: unknown): d is SafeDType {
  return typeof d === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, d);
}

/** Size in bytes of one element of `d`. Throws on an unknown dtype. */
export function dtypeByteSize(d: SafeDType): number {
  if (!isSafeDType(d)) throw new SafetensorsError(`unknown dtype ${JSON.stringify(d)}`);
  return DTYPE_SIZE[d];
}

/** Defines an own enumerable property (safe for names such as "__proto__"). */
function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

const LONE_SURROGATE = /\p{Cs}/u;

/** numel * size, or a message describing why the shape is invalid. */
function checkShape(shape: unknown, elemSize: number): number | string {
  if (!Array.isArray(shape)) return `shape must be an array of non-negative integers, got ${describe(shape)}`;
  let n = 1;
  for (let i = 0; i < shape.length; i++) {
    const d: unknown = shape[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      return `shape must be an array of non-negative safe integers, got ${describe(shape)} (dim ${i})`;
    }
    n *= d;
    if (!Number.isSafeInteger(n)) return `shape ${JSON.stringify(shape)} overflows (numel too large)`;
  }
  const bytes = n * elemSize;
  if (!Number.isSafeInteger(bytes)) return `shape ${JSON.stringify(shape)} overflows (byte size too large)`;
  return bytes;
}

function describe(v: unknown): string {
  try {
    const s = JSON.stringify(v);
    if (s === undefined) return String(v);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return String(v);
  }
}

function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A tensor whose bytes are produced when the file is written (one at a time: a large file's data never sits in memory at once). */
export interface LazyRawTensor {
  dtype: SafeDType;
  shape: number[];
  /** The raw little-endian bytes, shape's size exactly; called once, when this tensor is written. */
  read: () => Uint8Array;
}

interface Prepared {
  header: Buffer; // 8-byte length prefix + padded JSON
  chunks: Uint8Array[]; // tensor data, in file order
  dataBytes: number;
}

interface PreparedLazy extends Omit<Prepared, 'chunks'> {
  chunks: { name: string; bytes: number; data: Uint8Array | (() => Uint8Array) }[];
}

function isLazy(t: unknown): t is LazyRawTensor {
  return typeof t === 'object' && t !== null && typeof (t as LazyRawTensor).read === 'function' && !('data' in t);
}

function prepare(tensors: Record<string, RawTensor>, metadata?: Record<string, string>): Prepared {
  const p = prepareAny(tensors, metadata, false);
  return { ...p, chunks: p.chunks.map((c) => c.data as Uint8Array) };
}

function prepareAny(tensors: Record<string, RawTensor | LazyRawTensor>, metadata: Record<string, string> | undefined, allowLazy: boolean): PreparedLazy {
  if (tensors === null || typeof tensors !== 'object' || Array.isArray(tensors)) {
    throw new SafetensorsError(`tensors must be a record of name -> RawTensor, got ${describe(tensors)}`);
  }
  const entries: Array<{ name: string; t: RawTensor | LazyRawTensor; bytes: number }> = [];
  for (const name of Object.keys(tensors)) {
    if (name === '') throw new SafetensorsError('tensor name must not be empty');
    if (name === '__metadata__') {
      throw new SafetensorsError('tensor name "__metadata__" is reserved for the metadata map', { tensor: name });
    }
    if (LONE_SURROGATE.test(name)) {
      throw new SafetensorsError('tensor name is not valid Unicode (lone surrogate)', { tensor: name });
    }
    const t = tensors[name];
    if (t === null || typeof t !== 'object') {
      throw new SafetensorsError(`expected a RawTensor object, got ${describe(t)}`, { tensor: name });
    }
    if (!isSafeDType(t.dtype)) {
      throw new SafetensorsError(`unknown dtype ${describe(t.dtype)}`, { tensor: name });
    }
    const bytes = checkShape(t.shape, DTYPE_SIZE[t.dtype]);
    if (typeof bytes === 'string') throw new SafetensorsError(bytes, { tensor: name });
    if (allowLazy && isLazy(t)) {
      entries.push({ name, t, bytes }); // its length is checked when it is read
      continue;
    }
    const r = t as RawTensor;
    if (!(r.data instanceof Uint8Array)) {
      throw new SafetensorsError(
        `data must be a Uint8Array of raw little-endian bytes (wrap typed arrays with ` +
          `new Uint8Array(x.buffer, x.byteOffset, x.byteLength)), got ${Object.prototype.toString.call(r.data)}`,
        { tensor: name },
      );
    }
    if (r.data.byteLength !== bytes) {
      throw new SafetensorsError(
        `data byte length mismatch: shape ${JSON.stringify(t.shape)} of ${t.dtype} needs ${bytes} bytes, ` +
          `got ${r.data.byteLength}`,
        { tensor: name },
      );
    }
    entries.push({ name, t, bytes });
  }

  let metaCopy: Record<string, string> | undefined;
  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
      throw new SafetensorsError(`metadata must be a record of string -> string, got ${describe(metadata)}`);
    }
    metaCopy = {};
    for (const k of Object.keys(metadata)) {
      const v: unknown = metadata[k];
      if (typeof v !== 'string') {
        throw new SafetensorsError(`metadata value for key ${JSON.stringify(k)} must be a string, got ${describe(v)}`);
      }
      if (LONE_SURROGATE.test(k) || LONE_SURROGATE.test(v)) {
        throw new SafetensorsError(`metadata entry ${JSON.stringify(k)} is not valid Unicode (lone surrogate)`);
      }
      setOwn(metaCopy, k, v);
    }
  }

  // Reference order: descending dtype alignment, then name.
  entries.sort((a, b) => DTYPE_RANK[b.t.dtype] - DTYPE_RANK[a.t.dtype] || compareUtf8(a.name, b.name));

  // Build the JSON by hand so key order is exactly: __metadata__, then tensors in file order
  // (JS objects would move integer-like keys first).
  const parts: string[] = [];
  if (metaCopy !== undefined) parts.push(`"__metadata__":${JSON.stringify(metaCopy)}`);
  let offset = 0;
  const chunks: PreparedLazy['chunks'] = [];
  for (const e of entries) {
    const begin = offset;
    offset += e.bytes;
    parts.push(
      `${JSON.stringify(e.name)}:{"dtype":${JSON.stringify(e.t.dtype)},"shape":${JSON.stringify(e.t.shape)},` +
        `"data_offsets":[${begin},${offset}]}`,
    );
    chunks.push({ name: e.name, bytes: e.bytes, data: isLazy(e.t) ? e.t.read : e.t.data });
  }
  if (!Number.isSafeInteger(offset)) throw new SafetensorsError('total data size too large');
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const header = Buffer.alloc(8 + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(header, 8);
  return { header, chunks, dataBytes: offset };
}

/**
 * Serializes `tensors` (+ optional string metadata) into one safetensors buffer.
 * Tensors are stored in reference order (descending dtype alignment, then name), not in
 * the record's insertion order.
 */
/** The file's bytes (a Node Buffer at run time; typed as Uint8Array so the .d.ts needs no @types/node). */
export function encodeSafetensors(tensors: Record<string, RawTensor>, metadata?: Record<string, string>): Uint8Array {
  const p = prepare(tensors, metadata);
  const out = Buffer.allocUnsafe(p.header.length + p.dataBytes);
  p.header.copy(out, 0);
  let pos = p.header.length;
  for (const c of p.chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

/**
 * Validates the 8-byte prefix: returns the header length N. `fileLen` is the total length
 * of the file/buffer. Never allocates anything proportional to N.
 */
function resolveMaxHeader(opts: DecodeOptions | undefined, path?: string): number {
  const m = opts?.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  if (!Number.isSafeInteger(m) || m < 0) {
    throw new SafetensorsError(`maxHeaderBytes must be a non-negative integer, got ${describe(m)}`, { path });
  }
  return m;
}

function checkPrefix(prefix: Uint8Array, fileLen: number, maxHeaderBytes: number, path?: string): number {
  if (fileLen < 8) {
    throw new SafetensorsError(`file too short: ${fileLen} bytes, need at least 8 for the header length`, { path });
  }
  const dv = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const n = dv.getBigUint64(0, true);
  if (n > BigInt(maxHeaderBytes)) {
    throw new SafetensorsError(`header too large: header length ${n} exceeds maxHeaderBytes ${maxHeaderBytes}`, {
      path,
    });
  }
  const hn = Number(n);
  if (8 + hn > fileLen) {
    throw new SafetensorsError(
      `invalid header length: header length ${hn} + 8 exceeds the file size ${fileLen} (truncated file?)`,
      { path },
    );
  }
  return hn;
}

const utf8Fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Deepest JSON nesting accepted in a header (serde_json's recursion limit; a real header nests 3 deep). */
export const MAX_HEADER_DEPTH = 128;

/**
 * Checks what JSON.parse does not: nesting depth (a deep header would exhaust the stack in any
 * recursive code that touches it) and duplicate keys in one object (JSON.parse keeps the last one
 * silently, so two entries for one tensor name would be read as one). Returns a message or undefined;
 * other syntax errors are left to JSON.parse.
 */
function checkHeaderStructure(text: string): string | undefined {
  const stack: Array<Set<string> | null> = []; // an object's keys so far, or null for an array
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const keys = stack[stack.length - 1];
      if (expectKey && keys) {
        let key: string;
        try {
          key = JSON.parse(text.slice(i, j + 1)) as string;
        } catch {
          return undefined;
        }
        if (keys.has(key)) return `duplicate key ${describe(key)}${stack.length > 1 ? ' in a nested object' : ''}`;
        keys.add(key);
      }
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      if (stack.length >= MAX_HEADER_DEPTH) return `JSON nested deeper than ${MAX_HEADER_DEPTH} levels`;
      stack.push(c === '{' ? new Set() : null);
      expectKey = c === '{';
    } else if (c === '}' || c === ']') {
      stack.pop();
      expectKey = false;
    } else if (c === ',') {
      expectKey = stack[stack.length - 1] instanceof Set;
    }
  }
  return undefined;
}

function decodeImpl(buf: Uint8Array, opts: DecodeOptions | undefined, path?: string): DecodedSafetensors {
  if (!(buf instanceof Uint8Array)) throw new SafetensorsError('input must be a Uint8Array/Buffer', { path });
  const n = checkPrefix(buf, buf.byteLength, resolveMaxHeader(opts, path), path);

  let text: string;
  try {
    text = utf8Fatal.decode(buf.subarray(8, 8 + n));
  } catch (e) {
    throw new SafetensorsError('invalid header: not valid UTF-8', { path, cause: e });
  }
  const structural = checkHeaderStructure(text);
  if (structural !== undefined) throw new SafetensorsError(`invalid header: ${structural}`, { path });
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`invalid header: not valid JSON (${(e as Error).message})`, { path, cause: e });
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new SafetensorsError(`invalid header: JSON must be an object, got ${describe(header)}`, { path });
  }
  const h = header as Record<string, unknown>;

  const metadata: Record<string, string> = {};
  const rawMeta = Object.prototype.hasOwnProperty.call(h, '__metadata__') ? h['__metadata__'] : undefined;
  if (rawMeta !== undefined && rawMeta !== null) {
    if (typeof rawMeta !== 'object' || Array.isArray(rawMeta)) {
      throw new SafetensorsError(`invalid __metadata__: must be an object of string -> string, got ${describe(rawMeta)}`, {
        path,
      });
    }
    for (const [k, v] of Object.entries(rawMeta as Record<string, unknown>)) {
      if (typeof v !== 'string') {
        throw new SafetensorsError(
          `invalid __metadata__: value for key ${JSON.stringify(k)} must be a string, got ${describe(v)}`,
          { path },
        );
      }
      setOwn(metadata, k, v);
    }
  }

  const dataStart = 8 + n;
  const dataLen = buf.byteLength - dataStart;
  const infos: Array<{ name: string; dtype: SafeDType; shape: number[]; begin: number; end: number }> = [];
  for (const name of Object.keys(h)) {
    if (name === '__metadata__') continue;
    const info = h[name];
    const fail = (msg: string): never => {
      throw new SafetensorsError(msg, { path, tensor: name });
    };
    if (info === null || typeof info !== 'object' || Array.isArray(info)) {
      fail(`invalid tensor entry: expected {dtype, shape, data_offsets}, got ${describe(info)}`);
    }
    const o = info as Record<string, unknown>;
    if (!isSafeDType(o['dtype'])) {
      fail(`unknown dtype ${describe(o['dtype'])} (supported: ${Object.keys(DTYPE_SIZE).join(', ')})`);
    }
    const dtype = o['dtype'] as SafeDType;
    const bytes = checkShape(o['shape'], DTYPE_SIZE[dtype]);
    if (typeof bytes === 'string') fail(bytes);
    const offs = o['data_offsets'];
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)
    ) {
      fail(`invalid data_offsets: expected [begin, end] of non-negative integers, got ${describe(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (begin > end) fail(`invalid data_offsets [${begin}, ${end}]: begin > end`);
    if (end > dataLen) {
      fail(`data_offsets [${begin}, ${end}] out of range: data buffer is ${dataLen} bytes`);
    }
    if (end - begin !== bytes) {
      fail(
        `byte length mismatch: data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape ` +
          `${JSON.stringify(o['shape'])} of ${dtype} needs ${bytes as number}`,
      );
    }
    infos.push({ name, dtype, shape: (o['shape'] as number[]).slice(), begin, end });
  }

  // Reference validate(): sorted by (begin, end), tensors must tile [0, dataLen) exactly.
  infos.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: string | undefined;
  for (const t of infos) {
    if (t.begin < pos) {
      throw new SafetensorsError(
        `overlapping data_offsets [${t.begin}, ${t.end}]: overlaps tensor ${JSON.stringify(prev)} which ends at ${pos}`,
        { path, tensor: t.name },
      );
    }
    if (t.begin > pos) {
      throw new SafetensorsError(
        `hole in data buffer: data_offsets [${t.begin}, ${t.end}] start at ${t.begin} but the previous ` +
          `tensor ends at ${pos} (tensors must cover the buffer contiguously)`,
        { path, tensor: t.name },
      );
    }
    pos = t.end;
    prev = t.name;
  }
  if (pos !== dataLen) {
    throw new SafetensorsError(
      `incomplete buffer: tensors cover ${pos} bytes but the data buffer has ${dataLen} bytes ` +
        `(${dataLen - pos} unreferenced trailing bytes)`,
      { path },
    );
  }

  const tensors: Record<string, RawTensor> = {};
  for (const t of infos) {
    if (t.dtype === 'BOOL') {
      for (let k = dataStart + t.begin; k < dataStart + t.end; k++) {
        if (buf[k]! > 1) {
          throw new SafetensorsError(`invalid BOOL data: byte ${k - dataStart - t.begin} is ${buf[k]} (only 0 and 1 are booleans)`, { path, tensor: t.name });
        }
      }
    }
    setOwn(tensors, t.name, {
      dtype: t.dtype,
      shape: t.shape,
      data: buf.subarray(dataStart + t.begin, dataStart + t.end),
    });
  }
  return { tensors, metadata };
}

/**
 * Parses a safetensors buffer. No tensor data is copied: each returned `data` is a
 * `subarray` VIEW that ALIASES `buf` (mutating one mutates the other, and the views keep
 * the whole of `buf` alive). Copy (`data.slice()`) if independent storage is required.
 */
export function decodeSafetensors(buf: Uint8Array, opts?: DecodeOptions): DecodedSafetensors {
  return decodeImpl(buf, opts);
}

// ---------------------------------------------------------------------------------------
// Files

/** readSync/writeSync are limited to < 2 GiB per call. */
const IO_CHUNK = 1 << 30;

function tmpPathFor(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

function writeError(path: string, e: unknown): SafetensorsError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const hint = code === 'ENOENT' ? ' (does the target directory exist?)' : '';
  return new SafetensorsError(`write failed${hint}: ${(e as Error)?.message ?? String(e)}`, { path, cause: e });
}

function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // best effort (not supported on every platform / filesystem)
  } finally {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        /* ignore */
      }
    }
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch {
    // best effort
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

function writeAllSync(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.byteLength) {
    const len = Math.min(IO_CHUNK, data.byteLength - off);
    off += fs.writeSync(fd, data, off, len);
  }
}

/**
 * Atomically writes a safetensors file: data goes to `${path}.tmp-<pid>-<rand>` in the same
 * directory, is fsynced, then renamed over `path`; the directory is fsynced best-effort.
 * On failure the temporary file is removed and `path` is left untouched.
 */
export function writeSafetensorsFileSync(
  path: string,
  tensors: Record<string, RawTensor>,
  metadata?: Record<string, string>,
): void {
  const p = prepare(tensors, metadata); // validation errors are thrown before touching the disk
  const tmp = tmpPathFor(path);
  let fd: number | undefined;
  let created = false;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
    created = true;
    writeAllSync(fd, p.header);
    for (const c of p.chunks) writeAllSync(fd, c);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, path);
    created = false;
  } catch (e) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        /* ignore */
      }
    }
    if (created) {
      try {
        fs.unlinkSync(tmp);
      } catch {
        /* ignore */
      }
    }
    throw writeError(path, e);
  }
  fsyncDirSync(nodePath.dirname(path));
}

/**
 * {@link writeSafetensorsFileSync} for tensors that may be {@link LazyRawTensor}s: each is read just
 * before its bytes are written, so memory holds one tensor at a time (converting a multi-gigabyte
 * checkpoint). A read that returns the wrong number of bytes fails the write, naming the tensor.
 */
export function writeSafetensorsFileLazySync(
  path: string,
  tensors: Record<string, RawTensor | LazyRawTensor>,
  metadata?: Record<string, string>,
): void {
  const p = prepareAny(tensors, metadata, true);
  const tmp = tmpPathFor(path);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
    writeAllSync(fd, p.header);
    for (const c of p.chunks) {
      const data = typeof c.data === 'function' ? c.data() : c.data;
      if (!(data instanceof Uint8Array) || data.byteLength !== c.bytes) {
        throw new SafetensorsError(`read() gave ${data instanceof Uint8Array ? `${data.byteLength} bytes` : 'no Uint8Array'}, the shape needs ${c.bytes}`, { tensor: c.name });
      }
      writeAllSync(fd, data);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e instanceof SafetensorsError ? e : writeError(path, e);
  }
  fsyncDirSync(nodePath.dirname(path));
}

/** Async version of {@link writeSafetensorsFileSync} (same atomicity guarantees). */
export async function writeSafetensorsFile(
  path: string,
  tensors: Record<string, RawTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const p = prepare(tensors, metadata);
  const tmp = tmpPathFor(path);
  let fh: fsp.FileHandle | undefined;
  let created = false;
  try {
    fh = await fsp.open(tmp, 'wx', 0o644);
    created = true;
    for (const c of [p.header, ...p.chunks]) {
      for (let off = 0; off < c.byteLength; ) {
        const len = Math.min(IO_CHUNK, c.byteLength - off);
        const { bytesWritten } = await fh.write(c, off, len);
        off += bytesWritten;
      }
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fsp.rename(tmp, path);
    created = false;
  } catch (e) {
    await fh?.close().catch(() => undefined);
    if (created) await fsp.unlink(tmp).catch(() => undefined);
    throw writeError(path, e);
  }
  await fsyncDir(nodePath.dirname(path));
}

function ioError(path: string, e: unknown): SafetensorsError {
  return new SafetensorsError(`read failed: ${(e as Error)?.message ?? String(e)}`, { path, cause: e });
}

/**
 * Reads and parses a safetensors file. The header length is validated against the file
 * size and `maxHeaderBytes` BEFORE the file is read, then the whole file is read into one
 * Buffer (in < 2 GiB chunks); tensor `data` are views into that Buffer.
 */
export function readSafetensorsFileSync(path: string, opts?: DecodeOptions): DecodedSafetensors {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw ioError(path, e);
  }
  let buf: Buffer;
  try {
    const size = fs.fstatSync(fd).size;
    const prefix = Buffer.alloc(8);
    if (size >= 8) fs.readSync(fd, prefix, 0, 8, 0);
    checkPrefix(prefix, size, resolveMaxHeader(opts, path), path);
    buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const r = fs.readSync(fd, buf, off, Math.min(IO_CHUNK, size - off), off);
      if (r === 0) throw new Error(`unexpected end of file at byte ${off} of ${size} (file changed while reading?)`);
      off += r;
    }
  } catch (e) {
    if (e instanceof SafetensorsError) throw e;
    throw ioError(path, e);
  } finally {
    fs.closeSync(fd);
  }
  return decodeImpl(buf, opts, path);
}

/** Async version of {@link readSafetensorsFileSync}. */
export async function readSafetensorsFile(path: string, opts?: DecodeOptions): Promise<DecodedSafetensors> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path, 'r');
  } catch (e) {
    throw ioError(path, e);
  }
  let buf: Buffer;
  try {
    const size = (await fh.stat()).size;
    const prefix = Buffer.alloc(8);
    if (size >= 8) await fh.read(prefix, 0, 8, 0);
    checkPrefix(prefix, size, resolveMaxHeader(opts, path), path);
    buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, off, Math.min(IO_CHUNK, size - off), off);
      if (bytesRead === 0) {
        throw new Error(`unexpected end of file at byte ${off} of ${size} (file changed while reading?)`);
      }
      off += bytesRead;
    }
  } catch (e) {
    if (e instanceof SafetensorsError) throw e;
    throw ioError(path, e);
  } finally {
    await fh.close();
  }
  return decodeImpl(buf, opts, path);
}
