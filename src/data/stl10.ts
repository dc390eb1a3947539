// STL-10 "binary" release (stl10_binary/): train_X.bin (5,000 images), test_X.bin (8,000),
// unlabeled_X.bin (100,000), train_y.bin / test_y.bin (one byte per image, classes 1..10),
// class_names.txt. An image is 3 x 96 x 96 uint8, each channel plane stored column-major
// (byte c*9216 + x*96 + y is row y, column x of channel c). We store HWC, labels 0..9.

import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryDataset, type NormStats, sharedBytes, sharedInt32 } from './dataset.js';

export type Stl10Split = 'train' | 'test' | 'unlabeled' | 'train+unlabeled';
export const STL10_SPLITS: readonly Stl10Split[] = ['train', 'test', 'unlabeled', 'train+unlabeled'];

const S = 96;
const PLANE = S * S;
const IMAGE = 3 * PLANE;

/** Column-major planar (CHW, x-major) -> row-major HWC for `n` images. */
export function stl10ToHwc(src: Uint8Array, dst: Uint8Array, n: number): void {
  for (let k = 0; k < n; k++) {
    const s = k * IMAGE;
    for (let c = 0; c < 3; c++) {
      const p = s + c * PLANE;
      for (let x = 0; x < S; x++) {
        const col = p + x * S;
        let o = s + x * 3 + c;
        for (let y = 0; y < S; y++, o += S * 3) dst[o] = src[col + y]!;
      }
    }
  }
}

function imageCount(path: string, spec: string): number {
  const size = statSync(path).size;
  if (size === 0 || size % IMAGE !== 0) throw new Error(`${spec}: ${path}: size ${size} is not a multiple of the STL-10 image size ${IMAGE}`);
  return size / IMAGE;
}

/** Reads `n` images of `path` into `dst` (HWC) at image offset `at`, a few MB at a time. */
function readImages(path: string, dst: Uint8Array, at: number, n: number): void {
  const chunk = 256;
  const buf = new Uint8Array(chunk * IMAGE);
  const fd = openSync(path, 'r');
  try {
    for (let i = 0; i < n; i += chunk) {
      const m = Math.min(chunk, n - i);
      const want = m * IMAGE;
      let got = 0;
      while (got < want) {
        const r = readSync(fd, buf, got, want - got, i * IMAGE + got);
        if (r === 0) throw new Error(`${path}: unexpected end of file`);
        got += r;
      }
      stl10ToHwc(buf, dst.subarray((at + i) * IMAGE, (at + i + m) * IMAGE), m);
    }
  } finally {
    closeSync(fd);
  }
}

export function openStl10Bin(dir: string, split: Stl10Split, spec: string, normStats?: NormStats): MemoryDataset {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${spec}: directory not found: ${dir}`);
  const root = existsSync(join(dir, 'stl10_binary')) && !existsSync(join(dir, 'train_X.bin')) ? join(dir, 'stl10_binary') : dir;
  const parts: Array<'train' | 'test' | 'unlabeled'> = split === 'train+unlabeled' ? ['train', 'unlabeled'] : [split];
  const files = parts.map((p) => {
    const x = join(root, `${p}_X.bin`);
    if (!existsSync(x)) throw new Error(`${spec}: no STL-10 ${p} images (${p}_X.bin) in ${root}`);
    const n = imageCount(x, spec);
    let labels: Uint8Array | null = null;
    if (p !== 'unlabeled') {
      const y = join(root, `${p}_y.bin`);
      if (!existsSync(y)) throw new Error(`${spec}: no STL-10 ${p} labels (${p}_y.bin) in ${root}`);
      labels = readFileSync(y);
      if (labels.length !== n) throw new Error(`${spec}: ${y} has ${labels.length} labels for ${n} images`);
    }
    return { x, n, labels };
  });
  const n = files.reduce((a, f) => a + f.n, 0);
  const data = sharedBytes(n * IMAGE);
  const labels = sharedInt32(n);
  let at = 0;
  for (const f of files) {
    readImages(f.x, data, at, f.n);
    for (let i = 0; i < f.n; i++) {
      const l = f.labels ? f.labels[i]! : 0;
      if (f.labels && (l < 1 || l > 10)) throw new Error(`${spec}: label ${l} out of range 1..10 in ${f.x.replace(/_X\.bin$/, '_y.bin')} at ${i}`);
      labels[at + i] = f.labels ? l - 1 : -1;
    }
    at += f.n;
  }
  const labelled = files.some((f) => f.labels);
  let classNames: string[] | undefined;
  const namesFile = join(root, 'class_names.txt');
  if (labelled && existsSync(namesFile)) {
    const names = readFileSync(namesFile, 'utf8').split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
    if (names.length === 10) classNames = names;
  }
  return new MemoryDataset({
    kind: 'memory',
    spec,
    data,
    labels,
    n,
    height: S,
    width: S,
    channels: 3,
    numClasses: labelled ? 10 : 0,
    normStats,
    classNames,
  });
}
