import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  decodeSafetensors,
  dtypeByteSize,
  encodeSafetensors,
  readSafetensorsFile,
  readSafetensorsFileSync,
  writeSafetensorsFile,
  writeSafetensorsFileSync,
  writeSafetensorsFileLazySync,
  type RawTensor,
  type SafeDType,
} from '../src/io/safetensors.js';

const PY = '/usr/bin/python3';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'cjepa-st-'));
}

// ---- helpers to build raw little-endian bytes ------------------------------------------

function f16Bits(x: number): number {
  // exact for the values used in the tests (normal numbers representable in half)
  if (x === 0) return Object.is(x, -0) ? 0x8000 : 0;
  const sign = x < 0 ? 0x8000 : 0;
  const a = Math.abs(x);
  const e = Math.floor(Math.log2(a));
  const m = Math.round((a / 2 ** e - 1) * 1024);
  return sign | ((e + 15) << 10) | m;
}
function f16Value(b: number): number {
  const s = b & 0x8000 ? -1 : 1;
  const e = (b >> 10) & 0x1f;
  const m = b & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

type Val = number | bigint | boolean;

function bytesOf(dtype: SafeDType, values: Val[]): Uint8Array {
  const size = dtypeByteSize(dtype);
  const out = new Uint8Array(values.length * size);
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => {
    const o = i * size;
    switch (dtype) {
      case 'F64': dv.setFloat64(o, v as number, true); break;
      case 'F32': dv.setFloat32(o, v as number, true); break;
      case 'F16': dv.setUint16(o, f16Bits(v as number), true); break;
      case 'BF16': {
        const t = new DataView(new ArrayBuffer(4));
        t.setFloat32(0, v as number, true);
        dv.setUint16(o, t.getUint32(0, true) >>> 16, true);
        break;
      }
      case 'I64': dv.setBigInt64(o, BigInt(v as bigint | number), true); break;
      case 'I32': dv.setInt32(o, v as number, true); break;
      case 'I16': dv.setInt16(o, v as number, true); break;
      case 'I8': dv.setInt8(o, v as number); break;
      case 'U8': dv.setUint8(o, v as number); break;
      case 'BOOL': dv.setUint8(o, v ? 1 : 0); break;
    }
  });
  return out;
}

function valuesOf(t: RawTensor): Val[] {
  const size = dtypeByteSize(t.dtype);
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out: Val[] = [];
  for (let o = 0; o < t.data.byteLength; o += size) {
    switch (t.dtype) {
      case 'F64': out.push(dv.getFloat64(o, true)); break;
      case 'F32': out.push(dv.getFloat32(o, true)); break;
      case 'F16': out.push(f16Value(dv.getUint16(o, true))); break;
      case 'BF16': {
        const x = new DataView(new ArrayBuffer(4));
        x.setUint32(0, dv.getUint16(o, true) << 16 >>> 0, true);
        out.push(x.getFloat32(0, true));
        break;
      }
      case 'I64': out.push(dv.getBigInt64(o, true)); break;
      case 'I32': out.push(dv.getInt32(o, true)); break;
      case 'I16': out.push(dv.getInt16(o, true)); break;
      case 'I8': out.push(dv.getInt8(o)); break;
      case 'U8': out.push(dv.getUint8(o)); break;
      case 'BOOL': out.push(dv.getUint8(o) !== 0); break;
    }
  }
  return out;
}

interface Spec { dtype: SafeDType; shape: number[]; values: Val[] }

const SPECS: Record<string, Spec> = {
  'w.f64': { dtype: 'F64', shape: [2, 2], values: [1.5, -2.25, 1e300, -0.1] },
  'w.f32': { dtype: 'F32', shape: [3], values: [0.5, -3, 1024.125] },
  'h.f16': { dtype: 'F16', shape: [2, 1], values: [1.5, -65504] },
  'b.bf16': { dtype: 'BF16', shape: [2], values: [3.140625, -0.0078125] },
  'idx.i64': { dtype: 'I64', shape: [3], values: [-(2n ** 63n), 2n ** 63n - 1n, 42n] },
  'scalar.i32': { dtype: 'I32', shape: [], values: [-123456] },
  'empty.i16': { dtype: 'I16', shape: [0, 3], values: [] },
  'c.i16': { dtype: 'I16', shape: [2], values: [-32768, 32767] },
  'z.i8': { dtype: 'I8', shape: [3], values: [-128, 0, 127] },
  'a.u8': { dtype: 'U8', shape: [1, 1, 5], values: [0, 1, 2, 254, 255] },
  mask: { dtype: 'BOOL', shape: [3], values: [true, false, true] },
};
const META: Record<string, string> = { format: 'pt', 'ключ ✓': 'значение "quoted" \\ \n', empty: '' };

function makeTensors(): Record<string, RawTensor> {
  const out: Record<string, RawTensor> = {};
  for (const [name, s] of Object.entries(SPECS)) out[name] = { dtype: s.dtype, shape: s.shape, data: bytesOf(s.dtype, s.values) };
  return out;
}

function assertMatchesSpecs(tensors: Record<string, RawTensor>): void {
  assert.deepEqual(Object.keys(tensors).sort(), Object.keys(SPECS).sort());
  for (const [name, s] of Object.entries(SPECS)) {
    const t = tensors[name]!;
    assert.equal(t.dtype, s.dtype, name);
    assert.deepEqual(t.shape, s.shape, name);
    assert.deepEqual(valuesOf(t), s.values, name);
  }
}

function rawFile(header: string | object, data: Uint8Array | number = 0, headerLenOverride?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = Buffer.alloc(8 + json.length + d.length);
  out.writeBigUInt64LE(headerLenOverride ?? BigInt(json.length), 0);
  json.copy(out, 8);
  out.set(d, 8 + json.length);
  return out;
}

// ---- round trip ---------------------------------------------------------------------------

test('dtypeByteSize', () => {
  assert.deepEqual(
    (['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'] as SafeDType[]).map(dtypeByteSize),
    [8, 4, 2, 2, 8, 4, 2, 1, 1, 1],
  );
  assert.throws(() => dtypeByteSize('F8' as SafeDType), /unknown dtype "F8"/);
});

test('encode/decode round trip: all dtypes, scalar and empty shapes, metadata', () => {
  const buf = Buffer.from(encodeSafetensors(makeTensors(), META));
  const n = Number(buf.readBigUInt64LE(0));
  assert.equal(n % 8, 0, 'header length padded to a multiple of 8');
  const headerText = buf.subarray(8, 8 + n).toString('utf8');
  assert.match(headerText, /^\{"__metadata__":\{.*\} *$/s);
  const header = JSON.parse(headerText) as Record<string, { dtype: SafeDType; data_offsets: [number, number] }>;
  // every tensor is naturally aligned in the file (reference ordering + padding)
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    assert.equal((8 + n + info.data_offsets[0]) % dtypeByteSize(info.dtype), 0, name);
  }
  // documented order: descending dtype alignment, then name
  const order = Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0] || a[1].data_offsets[1] - b[1].data_offsets[1])
    .map(([k]) => k);
  assert.deepEqual(order.filter((k) => SPECS[k]!.values.length > 0), [
    'idx.i64', 'w.f64', 'w.f32', 'scalar.i32', 'b.bf16', 'h.f16', 'c.i16', 'z.i8', 'a.u8', 'mask',
  ]);

  const { tensors, metadata } = decodeSafetensors(buf);
  assertMatchesSpecs(tensors);
  assert.deepEqual(metadata, META);
  assert.equal(tensors['empty.i16']!.data.byteLength, 0);

  // decode returns views aliasing the input buffer (documented)
  const u8 = tensors['a.u8']!;
  assert.equal(u8.data.buffer, buf.buffer);
  buf[u8.data.byteOffset - buf.byteOffset] = 77;
  assert.equal(u8.data[0], 77);

  // without metadata: no __metadata__ key, empty metadata on read
  const noMeta = Buffer.from(encodeSafetensors({ x: { dtype: 'U8', shape: [1], data: new Uint8Array([9]) } }));
  assert.doesNotMatch(noMeta.toString('latin1'), /__metadata__/);
  assert.deepEqual(decodeSafetensors(noMeta).metadata, {});
});

test('byte-exact with the reference serializer test vectors', () => {
  // safetensors crate tests: test_serialization / test_empty
  const f32 = bytesOf('F32', [0, 1, 2, 3, 4, 5]);
  const out = encodeSafetensors({ 'attn.0': { dtype: 'F32', shape: [1, 2, 3], data: f32 } });
  assert.deepEqual([...out], [
    64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58,
    34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116,
    97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
    0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
  ]);
  assert.deepEqual([...encodeSafetensors({})], [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
  assert.deepEqual([...encodeSafetensors({}, { framework: 'pt' })], [
    40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95, 95, 34, 58, 123, 34, 102,
    114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32, 32,
  ]);
  assert.deepEqual(decodeSafetensors(encodeSafetensors({})), { tensors: {}, metadata: {} });
});

test('names such as "__proto__" and numeric names round-trip as own keys', () => {
  const t: Record<string, RawTensor> = {};
  Object.defineProperty(t, '__proto__', {
    value: { dtype: 'U8', shape: [1], data: new Uint8Array([1]) }, enumerable: true,
  });
  t['10'] = { dtype: 'U8', shape: [1], data: new Uint8Array([2]) };
  const { tensors } = decodeSafetensors(encodeSafetensors(t));
  assert.equal(Object.getPrototypeOf(tensors), Object.prototype);
  assert.deepEqual(Object.keys(tensors).sort(), ['10', '__proto__']);
  assert.equal(tensors['__proto__']!.data[0], 1);
  assert.equal(tensors['10']!.data[0], 2);
});

test('file round trip (sync and async)', async () => {
  const dir = tmpDir();
  try {
    const p1 = path.join(dir, 'a.safetensors');
    writeSafetensorsFileSync(p1, makeTensors(), META);
    const r1 = readSafetensorsFileSync(p1);
    assertMatchesSpecs(r1.tensors);
    assert.deepEqual(r1.metadata, META);
    assert.deepEqual(fs.readFileSync(p1), encodeSafetensors(makeTensors(), META));

    const p2 = path.join(dir, 'b.safetensors');
    await writeSafetensorsFile(p2, makeTensors(), META);
    const r2 = await readSafetensorsFile(p2);
    assertMatchesSpecs(r2.tensors);
    assert.deepEqual(r2.metadata, META);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['a.safetensors', 'b.safetensors']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---- interoperability with independent Python implementations ----------------------------

const PY_WRITER = String.raw`
import json, struct, sys
path = sys.argv[1]
bf = lambda x: struct.unpack('<I', struct.pack('<f', x))[0] >> 16
tensors = {
  'w.f64': ('F64', [2, 2], struct.pack('<4d', 1.5, -2.25, 1e300, -0.1)),
  'w.f32': ('F32', [3], struct.pack('<3f', 0.5, -3.0, 1024.125)),
  'h.f16': ('F16', [2, 1], struct.pack('<2e', 1.5, -65504.0)),
  'b.bf16': ('BF16', [2], struct.pack('<2H', bf(3.140625), bf(-0.0078125))),
  'idx.i64': ('I64', [3], struct.pack('<3q', -2**63, 2**63 - 1, 42)),
  'scalar.i32': ('I32', [], struct.pack('<i', -123456)),
  'empty.i16': ('I16', [0, 3], b''),
  'c.i16': ('I16', [2], struct.pack('<2h', -32768, 32767)),
  'z.i8': ('I8', [3], struct.pack('<3b', -128, 0, 127)),
  'a.u8': ('U8', [1, 1, 5], bytes([0, 1, 2, 254, 255])),
  'mask': ('BOOL', [3], bytes([1, 0, 1])),
}
# reference order: descending dtype alignment (enum order), then name
rank = {'BOOL': 0, 'U8': 1, 'I8': 2, 'I16': 3, 'F16': 4, 'BF16': 5, 'I32': 6, 'F32': 7, 'F64': 8, 'I64': 9}
names = sorted(tensors, key=lambda k: (-rank[tensors[k][0]], k))
header, data, off = {}, b'', 0
for k in names:
    dt, shape, raw = tensors[k]
    header[k] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + len(raw)]}
    off += len(raw); data += raw
header['__metadata__'] = json.loads(sys.argv[2])
# keys sorted alphabetically: header order differs from data order on purpose
h = json.dumps(header, separators=(',', ':'), sort_keys=True).encode('utf-8')
h += b' ' * ((8 - len(h) % 8) % 8)
with open(path, 'wb') as f:
    f.write(struct.pack('<Q', len(h)) + h + data)
`;

const PY_READER = String.raw`
import json, struct, sys
buf = open(sys.argv[1], 'rb').read()
n, = struct.unpack('<Q', buf[:8])
assert n % 8 == 0, 'header not padded to 8'
raw = buf[8:8 + n]
text = raw.decode('utf-8')
assert text == text.rstrip(' ') + ' ' * (len(text) - len(text.rstrip(' '))), 'bad padding'
header = json.loads(text)
meta = header.pop('__metadata__', {})
data = buf[8 + n:]
fmt = {'F64': 'd', 'F32': 'f', 'F16': 'e', 'I64': 'q', 'I32': 'i', 'I16': 'h', 'I8': 'b', 'U8': 'B', 'BOOL': '?', 'BF16': 'H'}
size = {'F64': 8, 'F32': 4, 'F16': 2, 'BF16': 2, 'I64': 8, 'I32': 4, 'I16': 2, 'I8': 1, 'U8': 1, 'BOOL': 1}
pos = 0
out = {}
for name, info in sorted(header.items(), key=lambda kv: tuple(kv[1]['data_offsets'])):
    b, e = info['data_offsets']
    assert b == pos, 'offsets not contiguous at %s' % name
    numel = 1
    for d in info['shape']:
        numel *= d
    assert e - b == numel * size[info['dtype']], 'size mismatch %s' % name
    assert (8 + n + b) % size[info['dtype']] == 0, 'misaligned %s' % name
    vals = list(struct.unpack('<%d%s' % (numel, fmt[info['dtype']]), data[b:e]))
    if info['dtype'] == 'BF16':
        vals = [struct.unpack('<f', struct.pack('<I', v << 16))[0] for v in vals]
    if info['dtype'] == 'I64':
        vals = [str(v) for v in vals]
    out[name] = {'dtype': info['dtype'], 'shape': info['shape'], 'values': vals}
    pos = e
assert pos == len(data), 'trailing bytes'
print(json.dumps({'tensors': out, 'metadata': meta}))
`;

function py(script: string, ...args: string[]): string {
  const r = spawnSync(PY, ['-c', script, ...args], { encoding: 'utf8' });
  if (r.error) throw r.error;
  assert.equal(r.status, 0, `python failed: ${r.stderr}`);
  return r.stdout;
}

test('reads a file written by an independent Python (struct/json) writer', () => {
  const dir = tmpDir();
  try {
    const p = path.join(dir, 'py.safetensors');
    py(PY_WRITER, p, JSON.stringify(META));
    const { tensors, metadata } = readSafetensorsFileSync(p);
    assertMatchesSpecs(tensors);
    assert.deepEqual(metadata, META);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a file we write is parsed by an independent Python (struct/json) reader', () => {
  const dir = tmpDir();
  try {
    const p = path.join(dir, 'ts.safetensors');
    writeSafetensorsFileSync(p, makeTensors(), META);
    const parsed = JSON.parse(py(PY_READER, p)) as {
      tensors: Record<string, { dtype: SafeDType; shape: number[]; values: Array<number | string | boolean> }>;
      metadata: Record<string, string>;
    };
    assert.deepEqual(parsed.metadata, META);
    assert.deepEqual(Object.keys(parsed.tensors).sort(), Object.keys(SPECS).sort());
    for (const [name, s] of Object.entries(SPECS)) {
      const got = parsed.tensors[name]!;
      assert.equal(got.dtype, s.dtype, name);
      assert.deepEqual(got.shape, s.shape, name);
      const expected = s.values.map((v) => (typeof v === 'bigint' ? v.toString() : v));
      assert.deepEqual(got.values, expected, name);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const PY_HAS_SAFETENSORS = (() => {
  const r = spawnSync(PY, ['-c', 'import safetensors'], { encoding: 'utf8' });
  return r.status === 0;
})();

const PY_ST_CHECK = String.raw`
import json, sys
from safetensors import deserialize
buf = open(sys.argv[1], 'rb').read()
out = {}
for name, t in deserialize(buf):
    out[name] = {'dtype': str(t['dtype']), 'shape': list(t['shape']), 'hex': bytes(t['data']).hex()}
print(json.dumps(out))
`;

test(`cross-check with the python safetensors package (${PY_HAS_SAFETENSORS ? 'importable' : 'not importable: the struct/json reader test above is the assertion'})`, () => {
  if (!PY_HAS_SAFETENSORS) {
    // Not a skip: the independent struct/json reader/writer tests above already exercise
    // interoperability. Prove here that the module is really absent, so this branch cannot
    // hide a broken check.
    const r = spawnSync(PY, ['-c', 'import safetensors'], { encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /No module named .?safetensors/);
    return;
  }
  const dir = tmpDir();
  try {
    const p = path.join(dir, 'ts.safetensors');
    const tensors = makeTensors();
    writeSafetensorsFileSync(p, tensors, META);
    const got = JSON.parse(py(PY_ST_CHECK, p)) as Record<string, { dtype: string; shape: number[]; hex: string }>;
    const alias: Record<SafeDType, string[]> = {
      F64: ['F64', 'float64'], F32: ['F32', 'float32'], F16: ['F16', 'float16'], BF16: ['BF16', 'bfloat16'],
      I64: ['I64', 'int64'], I32: ['I32', 'int32'], I16: ['I16', 'int16'], I8: ['I8', 'int8'], U8: ['U8', 'uint8'],
      BOOL: ['BOOL', 'bool'],
    };
    assert.deepEqual(Object.keys(got).sort(), Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const g = got[name]!;
      assert.ok(alias[t.dtype].some((a) => a.toLowerCase() === g.dtype.toLowerCase()), `${name}: ${g.dtype}`);
      assert.deepEqual(g.shape, t.shape, name);
      assert.equal(g.hex, Buffer.from(t.data).toString('hex'), name);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---- malformed inputs -----------------------------------------------------------------------

test('malformed: truncated / bad header length', () => {
  assert.throws(() => decodeSafetensors(new Uint8Array(5)), /file too short: 5 bytes/);
  assert.throws(() => decodeSafetensors(rawFile('{}', 0, 1000n)), /header length 1000 \+ 8 exceeds the file size 10/);
  // huge header lengths are rejected from the prefix alone (nothing of that size is allocated)
  assert.throws(() => decodeSafetensors(rawFile('{}', 0, 2n ** 64n - 1n)), /header too large/);
  assert.throws(() => decodeSafetensors(rawFile('{}', 0, 100_000_001n)), /header too large.*100000000/);
  const ok = encodeSafetensors({ x: { dtype: 'F32', shape: [2], data: new Uint8Array(8) } });
  assert.throws(() => decodeSafetensors(ok, { maxHeaderBytes: 16 }), /header too large: header length \d+ exceeds maxHeaderBytes 16/);
  // data truncated: the last tensor runs past the end
  assert.throws(() => decodeSafetensors(ok.subarray(0, ok.length - 1)), /tensor "x".*out of range/);
});

test('malformed: header content', () => {
  const badUtf8 = Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0x7b, 0xc3, 0x7d])]);
  assert.throws(() => decodeSafetensors(badUtf8), /not valid UTF-8/);
  assert.throws(() => decodeSafetensors(rawFile('{"x": ')), /not valid JSON/);
  assert.throws(() => decodeSafetensors(rawFile('[1,2]')), /JSON must be an object/);
  assert.throws(
    () => decodeSafetensors(rawFile({ q: { dtype: 'Q4', shape: [1], data_offsets: [0, 1] } }, 1)),
    /tensor "q": unknown dtype "Q4"/,
  );
  assert.throws(
    () => decodeSafetensors(rawFile({ s: { dtype: 'U8', shape: [-1], data_offsets: [0, 0] } })),
    /tensor "s": shape must be an array of non-negative/,
  );
  assert.throws(
    () => decodeSafetensors(rawFile({ s: { dtype: 'U8', shape: 3, data_offsets: [0, 3] } }, 3)),
    /tensor "s": shape must be an array/,
  );
  assert.throws(
    () => decodeSafetensors(rawFile({ o: { dtype: 'U8', shape: [2], data_offsets: [0] } }, 2)),
    /tensor "o": invalid data_offsets/,
  );
  assert.throws(
    () => decodeSafetensors(rawFile({ o: { dtype: 'U8', shape: [4], data_offsets: [0, 4] } }, 2)),
    /tensor "o": data_offsets \[0, 4\] out of range: data buffer is 2 bytes/,
  );
  assert.throws(
    () => decodeSafetensors(rawFile({ o: { dtype: 'U8', shape: [0], data_offsets: [2, 1] } }, 2)),
    /tensor "o".*begin > end/,
  );
  assert.throws(
    () => decodeSafetensors(rawFile({ m: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4)),
    /tensor "m": byte length mismatch.*needs 8/,
  );
  assert.throws(
    () => decodeSafetensors(rawFile({ m: { dtype: 'U8', shape: [1], data_offsets: [0, 1] }, __metadata__: { k: 1 } }, 1)),
    /__metadata__.*"k" must be a string/,
  );
  assert.throws(
    () => decodeSafetensors(rawFile({ __metadata__: ['x'] })),
    /invalid __metadata__/,
  );
});

test('malformed: overlaps, holes and unreferenced bytes (reference requires contiguous coverage)', () => {
  const a = { dtype: 'F32', shape: [2] };
  assert.throws(
    () => decodeSafetensors(rawFile({ a: { ...a, data_offsets: [0, 8] }, b: { ...a, data_offsets: [4, 12] } }, 12)),
    /tensor "b": overlapping data_offsets \[4, 12\].*"a"/,
  );
  assert.throws(
    () => decodeSafetensors(rawFile({ a: { ...a, data_offsets: [0, 8] }, b: { ...a, data_offsets: [0, 8] } }, 8)),
    /overlapping/,
  );
  assert.throws(
    () => decodeSafetensors(rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 12)),
    /tensor "b": hole in data buffer/,
  );
  assert.throws(() => decodeSafetensors(rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8)), /tensor "a": hole/);
  assert.throws(
    () => decodeSafetensors(rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 6)),
    /incomplete buffer.*2 unreferenced trailing bytes/,
  );
  // valid, in arbitrary header order, with zero-size tensors sharing offsets
  const okFile = rawFile(
    {
      b: { dtype: 'U8', shape: [2], data_offsets: [4, 6] },
      e: { dtype: 'F32', shape: [0], data_offsets: [4, 4] },
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      e2: { dtype: 'U8', shape: [3, 0], data_offsets: [6, 6] },
    },
    new Uint8Array([0, 0, 128, 63, 7, 8]),
  );
  const { tensors } = decodeSafetensors(okFile);
  assert.deepEqual(valuesOf(tensors['a']!), [1]);
  assert.deepEqual([...tensors['b']!.data], [7, 8]);
  assert.equal(tensors['e']!.data.byteLength, 0);
  assert.deepEqual(tensors['e2']!.shape, [3, 0]);
});

test('file read errors name the file path', async () => {
  const dir = tmpDir();
  try {
    const p = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(p, rawFile({ q: { dtype: 'XX', shape: [1], data_offsets: [0, 1] } }, 1));
    const re = new RegExp(`file ${JSON.stringify(p).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} tensor "q": unknown dtype "XX"`);
    assert.throws(() => readSafetensorsFileSync(p), re);
    await assert.rejects(readSafetensorsFile(p), re);
    // huge header length in a tiny file: refused from the 8-byte prefix before reading the rest
    fs.writeFileSync(p, rawFile('{}', 0, 50_000_000_000n));
    assert.throws(() => readSafetensorsFileSync(p), /bad\.safetensors.*header too large/);
    await assert.rejects(readSafetensorsFile(p), /bad\.safetensors.*header too large/);
    fs.writeFileSync(p, rawFile('{}', 0, 64n));
    assert.throws(() => readSafetensorsFileSync(p), /bad\.safetensors.*exceeds the file size/);
    fs.writeFileSync(p, Buffer.from([1, 2, 3]));
    assert.throws(() => readSafetensorsFileSync(p), /bad\.safetensors.*file too short: 3 bytes/);
    assert.throws(() => readSafetensorsFileSync(path.join(dir, 'missing.safetensors')), /missing\.safetensors.*ENOENT/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('write validation', () => {
  const u8 = (n: number): RawTensor => ({ dtype: 'U8', shape: [n], data: new Uint8Array(n) });
  assert.throws(() => encodeSafetensors({ '': u8(1) }), /tensor name must not be empty/);
  assert.throws(() => encodeSafetensors({ __metadata__: u8(1) }), /"__metadata__" is reserved/);
  assert.throws(
    () => encodeSafetensors({ x: u8(1) }, { k: 3 as unknown as string }),
    /metadata value for key "k" must be a string/,
  );
  assert.throws(
    () => encodeSafetensors({ x: { dtype: 'F32', shape: [2, 2], data: new Uint8Array(12) } }),
    /tensor "x": data byte length mismatch: shape \[2,2\] of F32 needs 16 bytes, got 12/,
  );
  assert.throws(() => encodeSafetensors({ x: { dtype: 'F8' as SafeDType, shape: [1], data: new Uint8Array(1) } }), /tensor "x": unknown dtype/);
  assert.throws(() => encodeSafetensors({ x: { dtype: 'U8', shape: [1.5], data: new Uint8Array(1) } }), /tensor "x": shape/);
  assert.throws(
    () => encodeSafetensors({ x: { dtype: 'F32', shape: [1], data: new Float32Array(1) as unknown as Uint8Array } }),
    /tensor "x": data must be a Uint8Array/,
  );
});

// ---- atomic writes ----------------------------------------------------------------------------

test('atomic write: no temp file left, overwrite, failures leave no partial target', async () => {
  const dir = tmpDir();
  try {
    const p = path.join(dir, 'model.safetensors');
    writeSafetensorsFileSync(p, { a: { dtype: 'U8', shape: [1], data: new Uint8Array([1]) } });
    writeSafetensorsFileSync(p, makeTensors(), META); // overwrite in place
    assert.deepEqual(fs.readdirSync(dir), ['model.safetensors']);
    assertMatchesSpecs(readSafetensorsFileSync(p).tensors);
    await writeSafetensorsFile(p, { b: { dtype: 'U8', shape: [1], data: new Uint8Array([2]) } });
    assert.deepEqual(fs.readdirSync(dir), ['model.safetensors']);
    assert.deepEqual(Object.keys(readSafetensorsFileSync(p).tensors), ['b']);

    // target directory does not exist
    const missing = path.join(dir, 'nope', 'model.safetensors');
    assert.throws(() => writeSafetensorsFileSync(missing, makeTensors()), /nope.*write failed \(does the target directory exist\?\)/);
    await assert.rejects(writeSafetensorsFile(missing, makeTensors()), /write failed \(does the target directory exist\?\)/);
    assert.equal(fs.existsSync(missing), false);
    assert.equal(fs.existsSync(path.dirname(missing)), false);

    // failure after the temp file was fully written (rename onto a non-empty directory fails):
    // the temp file is removed and the target is untouched
    const blocker = path.join(dir, 'blocked.safetensors');
    fs.mkdirSync(blocker);
    fs.writeFileSync(path.join(blocker, 'keep'), 'x');
    assert.throws(() => writeSafetensorsFileSync(blocker, makeTensors()), /blocked\.safetensors.*write failed/);
    await assert.rejects(writeSafetensorsFile(blocker, makeTensors()), /blocked\.safetensors.*write failed/);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['blocked.safetensors', 'model.safetensors']);
    assert.deepEqual(fs.readdirSync(blocker), ['keep']);

    // validation errors happen before touching the disk
    assert.throws(() => writeSafetensorsFileSync(path.join(dir, 'v.safetensors'), { '': makeTensors()['mask']! }), /must not be empty/);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['blocked.safetensors', 'model.safetensors']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('lazy write: tensors read one at a time give the same file bytes; a read of the wrong size fails naming the tensor, leaving nothing', () => {
  const dir = tmpDir();
  try {
    const tensors: Record<string, RawTensor> = {
      b: { dtype: 'F32', shape: [2, 2], data: new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer) },
      a: { dtype: 'I64', shape: [1], data: new Uint8Array(new BigInt64Array([-5n]).buffer) },
      c: { dtype: 'U8', shape: [0], data: new Uint8Array(0) },
    };
    const reads: string[] = [];
    const lazy = Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape, read: () => (reads.push(k), t.data) }]));
    const meta = { format: 'pt' };
    writeSafetensorsFileLazySync(path.join(dir, 'lazy.safetensors'), { ...lazy, eager: tensors['a']! }, meta);
    writeSafetensorsFileSync(path.join(dir, 'eager.safetensors'), { ...tensors, eager: tensors['a']! }, meta);
    assert.deepEqual(fs.readFileSync(path.join(dir, 'lazy.safetensors')), fs.readFileSync(path.join(dir, 'eager.safetensors')));
    assert.deepEqual(reads.sort(), ['a', 'b', 'c'], 'each lazy tensor read once');

    const bad = { ok: lazy['a']!, short: { dtype: 'F32' as SafeDType, shape: [3], read: () => new Uint8Array(8) } };
    assert.throws(() => writeSafetensorsFileLazySync(path.join(dir, 'bad.safetensors'), bad), /short.*read\(\) gave 8 bytes, the shape needs 12/s);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['eager.safetensors', 'lazy.safetensors']);
    // the eager writers do not take lazy tensors
    assert.throws(() => encodeSafetensors(lazy as never), /data must be a Uint8Array/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
