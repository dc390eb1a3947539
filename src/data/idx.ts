// IDX files (MNIST, Fashion-MNIST), gzipped or raw.
// Format: 2 zero bytes, a type byte (0x08 = unsigned byte), a byte with the number of
// dimensions, then each dimension as a big-endian uint32, then the data.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { MemoryDataset, type NormStats, sharedBytes, sharedInt32 } from './dataset.js';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Parse an IDX buffer (gunzips it first when it starts with the gzip magic). */
export function parseIdx(buf: Uint8Array, source = 'IDX data'): IdxArray {
  let b = buf;
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) {
    try {
      b = gunzipSync(b);
    } catch (e) {
      throw new Error(`${source}: corrupt gzip stream (${(e as Error).message})`);
    }
  }
  if (b.length < 4 || b[0] !== 0 || b[1] !== 0) throw new Error(`${source}: not an IDX file (bad magic)`);
  if (b[2] !== 0x08) throw new Error(`${source}: IDX element type 0x${b[2]!.toString(16)} unsupported (only unsigned byte, 0x08)`);
  const nd = b[3]!;
  if (nd < 1 || b.length < 4 + 4 * nd) throw new Error(`${source}: truncated IDX header`);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < nd; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, d) => a * d, 1);
  const off = 4 + 4 * nd;
  if (b.length < off + count) {
    throw new Error(`${source}: truncated IDX data (${b.length - off} of ${count} bytes; dims ${dims.join('x')})`);
  }
  return { dims, data: b.subarray(off, off + count) };
}

export function readIdxFile(path: string): IdxArray {
  if (!existsSync(path)) throw new Error(`IDX file not found: ${path}`);
  if (!statSync(path).isFile()) throw new Error(`IDX path is not a file: ${path}`);
  return parseIdx(readFileSync(path), path);
}

/** Encode an IDX array (used by tests and tools). */
export function encodeIdx(dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out[2] = 0x08;
  out[3] = dims.length;
  const view = new DataView(out.buffer);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/**
 * An images file (N x H x W, or N x H x W x C with C in {1,3}) and an optional labels file (N).
 * Pixels go into shared memory so that worker threads read them without copies.
 */
export function openIdxDataset(
  imagesPath: string,
  labelsPath: string | undefined,
  spec: string,
  normStats?: NormStats,
  classNames?: string[],
): MemoryDataset {
  const img = readIdxFile(imagesPath);
  if (img.dims.length !== 3 && img.dims.length !== 4) {
    throw new Error(`${imagesPath}: expected 3 or 4 IDX dimensions (N,H,W[,C]) for images, got ${img.dims.join('x')}`);
  }
  const [n, h, w] = img.dims as [number, number, number];
  const c = img.dims.length === 4 ? img.dims[3]! : 1;
  if (c !== 1 && c !== 3) throw new Error(`${imagesPath}: ${c} channels unsupported (1 or 3)`);
  if (n === 0) throw new Error(`${spec}: the dataset is empty (0 images in ${imagesPath})`);
  if (h === 0 || w === 0) throw new Error(`${spec}: images of size ${w}x${h} in ${imagesPath}`);
  const data = sharedBytes(img.data.length);
  data.set(img.data);
  const labels = sharedInt32(n).fill(-1);
  let numClasses = 0;
  if (labelsPath) {
    const lab = readIdxFile(labelsPath);
    if (lab.dims.length !== 1 || lab.dims[0] !== n) {
      throw new Error(`${labelsPath}: expected ${n} labels (to match ${imagesPath}), got dims ${lab.dims.join('x')}`);
    }
    let max = -1;
    for (let i = 0; i < n; i++) {
      labels[i] = lab.data[i]!;
      if (lab.data[i]! > max) max = lab.data[i]!;
    }
    numClasses = Math.max(max + 1, classNames?.length ?? 0);
  }
  return new MemoryDataset({
    kind: 'memory',
    spec,
    data,
    labels,
    n,
    height: h,
    width: w,
    channels: c,
    numClasses,
    normStats,
    classNames,
  });
}
