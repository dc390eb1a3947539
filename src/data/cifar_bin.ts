// CIFAR-10 / CIFAR-100 "binary version" releases.
// CIFAR-10: data_batch_1..5.bin (train), test_batch.bin (test); records of 1 label byte + 3072 pixel bytes.
// CIFAR-100: train.bin, test.bin; records of 2 label bytes (coarse, fine) + 3072 pixel bytes; we use fine.
// Pixels are planar: 1024 R, 1024 G, 1024 B, each row-major 32x32. We store HWC.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryDataset, type NormStats, sharedBytes, sharedInt32 } from './dataset.js';

export type CifarVariant = 'cifar10' | 'cifar100';

const SUBDIR: Record<CifarVariant, string> = { cifar10: 'cifar-10-batches-bin', cifar100: 'cifar-100-binary' };

function batchFiles(variant: CifarVariant, split: 'train' | 'test'): string[] {
  if (variant === 'cifar100') return [split === 'train' ? 'train.bin' : 'test.bin'];
  return split === 'train' ? [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`) : ['test_batch.bin'];
}

function readNames(path: string): string[] | undefined {
  if (!existsSync(path)) return undefined;
  const names = readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return names.length ? names : undefined;
}

export function openCifarBin(
  dir: string,
  variant: CifarVariant,
  split: 'train' | 'test',
  spec: string,
  normStats?: NormStats,
): MemoryDataset {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${spec}: directory not found: ${dir}`);
  // Accept the release folder itself or its parent.
  let root = dir;
  const wanted = batchFiles(variant, split);
  if (!wanted.some((f) => existsSync(join(root, f))) && existsSync(join(dir, SUBDIR[variant]))) {
    root = join(dir, SUBDIR[variant]);
  }
  const present = wanted.filter((f) => existsSync(join(root, f)));
  if (present.length === 0) {
    throw new Error(`${spec}: no ${variant} ${split} files (${wanted.join(', ')}) in ${root}`);
  }
  const labelBytes = variant === 'cifar10' ? 1 : 2;
  const rec = labelBytes + 3072;
  const bufs = present.map((f) => {
    const p = join(root, f);
    const b = readFileSync(p);
    if (b.length === 0 || b.length % rec !== 0) {
      throw new Error(`${p}: size ${b.length} is not a multiple of the ${variant} record size ${rec}`);
    }
    return b;
  });
  const n = bufs.reduce((a, b) => a + b.length / rec, 0);
  const data = sharedBytes(n * 3072);
  const labels = sharedInt32(n);
  const numClasses = variant === 'cifar10' ? 10 : 100;
  let k = 0;
  for (const b of bufs) {
    for (let r = 0; r < b.length; r += rec, k++) {
      const label = b[r + labelBytes - 1]!; // cifar-100: the fine label is the second byte
      if (label >= numClasses) throw new Error(`${spec}: label ${label} out of range in record ${k}`);
      labels[k] = label;
      const src = r + labelBytes;
      const dst = k * 3072;
      for (let p = 0; p < 1024; p++) {
        data[dst + 3 * p] = b[src + p]!;
        data[dst + 3 * p + 1] = b[src + 1024 + p]!;
        data[dst + 3 * p + 2] = b[src + 2048 + p]!;
      }
    }
  }
  const classNames =
    variant === 'cifar10' ? readNames(join(root, 'batches.meta.txt')) : readNames(join(root, 'fine_label_names.txt'));
  return new MemoryDataset({
    kind: 'memory',
    spec,
    data,
    labels,
    n,
    height: 32,
    width: 32,
    channels: 3,
    numClasses,
    normStats,
    classNames,
  });
}
