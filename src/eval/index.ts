// Evaluation: frozen features, k-NN, linear probe, fine-tuning, collapse monitors, and the two
// end-to-end entry points behind `cjepa eval` and `cjepa embed`.
import { mkdirSync, existsSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import { dirname, resolve, relative, sep, isAbsolute } from 'node:path';
import { Tensor, tensor, tidy } from '../tensor/index.js';
import { saveTensors } from '../io/tensors.js';
import { openDataset, openDatasets, permutation, SubsetDataset, FolderDataset, evalTransform, resolveNorm, type Dataset, type NormName, type NormStats, type ViewSpec } from '../data/index.js';
import { loadEncoderFromCheckpoint, type EncoderChoice, type LoadedEncoder } from './load_encoder.js';
import { extractFeatures, pooledDim, type Pooling, type SkippedSample, type Features } from './features.js';
import { knnClassify, type KnnOptions } from './knn.js';
import { linearProbe, type LinearProbeOptions } from './linear_probe.js';
import { finetune, type FinetuneOptions } from './finetune.js';
import { collapseStats, covarianceSpectrum, collapseVerdict, TokenRankMe } from '../method/monitors.js';
import type { PretrainConfig } from '../config.js';

export * from '../method/monitors.js';
export { extractFeatures, poolFeatures, pooledDim, evalLoader, POOLINGS, type Pooling, type Features, type ExtractOptions, type SkippedSample } from './features.js';
export { knnClassify, type KnnOptions, type KnnResult } from './knn.js';
export {
  linearProbe, trainLinear, predictLinear, linearObjective, fitStandardizer, standardize, accuracy, DEFAULT_L2_GRID,
  type LinearProbeOptions, type LinearProbeResult, type LinearModel, type LinearFit, type Standardizer, type TrainLinearOptions,
  type ProbeFitEvent, type SweepEntry,
} from './linear_probe.js';
export { lbfgs, type LbfgsOptions, type LbfgsResult, type StopReason } from './lbfgs.js';
export { finetune, layerId, layerScales, type FinetuneOptions, type FinetuneResult } from './finetune.js';
export {
  loadEncoderFromCheckpoint, inferEncoderConfig, encoderConfigFromPretrain, encoderChoice,
  type LoadedEncoder, type LoadEncoderOptions, type EncoderChoice,
} from './load_encoder.js';

export type Protocol = 'knn' | 'linear' | 'finetune';
export const PROTOCOLS: readonly Protocol[] = ['knn', 'linear', 'finetune'];

interface EncoderSource {
  /** Run directory, checkpoint directory or .safetensors file. */
  checkpoint: string;
  /** 'auto' (target encoder, else encoder), 'target_encoder' or 'encoder'. */
  which?: EncoderChoice;
  /** Architecture for a bare .safetensors file (pretrain config, state.json or config.json). */
  config?: string;
  /** Heads when the architecture is inferred from shapes. */
  heads?: number;
  /** ViT size name settling the heads of an inferred architecture. */
  model?: string;
}

export interface EvaluateOptions extends EncoderSource {
  /** Training set spec (`--data`). */
  data: string;
  /** Test set spec; default: a seeded valSplit of `data`. */
  valData?: string;
  /** Fraction of `data` held out as the test set when valData is absent (default 0.1). */
  valSplit?: number;
  /** Use a seeded subset of this many train samples (e.g. a 10,000-image k-NN bank); 0 = all. */
  trainSubset?: number;
  seed?: number;
  /** Default ['knn', 'linear']; [] = collapse monitors only. */
  protocols?: Protocol[];
  batchSize?: number;
  pooling?: Pooling;
  workers?: number;
  knn?: KnnOptions;
  linear?: LinearProbeOptions;
  finetune?: FinetuneOptions;
  /** Rows of train features used for the monitors (seeded subset; default 16384). */
  monitorSamples?: number;
  /** Patch tokens (of the first train images, whole images) that give `rankme_tokens` (default 65,536: 1,024 images of an 8 x 8 grid). */
  tokenSamples?: number;
  onMessage?: (msg: string) => void;
  /** Progress of the long stages (feature extraction, probe fits, fine-tuning), for a progress bar. */
  onProgress?: (p: Progress) => void;
}

/**
 * Progress of one stage: `done` of `total` units (images, L-BFGS iterations of a fit, fine-tuning
 * steps). A new `stage` string starts a new stage; `total` is an upper bound for 'iter' (maxIter).
 */
export interface Progress {
  stage: string;
  done: number;
  total: number;
  unit: 'img' | 'iter' | 'step';
  /** A short status, e.g. the loss. */
  info?: string;
}

/** The result of `cjepa eval` (also its --json output). Accuracies are fractions in [0, 1]. */
export interface EvalReport {
  checkpoint: string;
  network: string;
  architecture: LoadedEncoder['architecture'];
  step: number | null;
  method: string | null;
  data: string;
  test_data: string;
  pooling: Pooling;
  embedding_dim: number;
  n_train: number;
  n_test: number;
  num_classes: number;
  knn_top1?: Record<string, number>;
  knn_k_used?: Record<string, number>;
  knn_temperature?: number;
  linear_top1?: number;
  linear_train_top1?: number;
  linear_l2?: number;
  /** Validation accuracy (and L-BFGS iterations) of each L2 strength tried, by increasing strength. */
  linear_sweep?: { l2: number; valTop1: number; iterations: number }[];
  /** The chosen L2 is the smallest or largest tried after the sweep's extensions (the optimum may lie beyond). */
  linear_l2_at_edge?: boolean;
  /** L-BFGS iterations and objective (mean CE + l2/2 ||W||^2) of the final probe fit. */
  linear_iterations?: number;
  linear_final_loss?: number;
  finetune_top1?: number;
  finetune_epoch_loss?: number[];
  /** RankMe of the train features (1..min(N, D)). */
  rankme: number;
  /** RankMe of the centred train features: tells a collapsed encoder from an untrained one (1..min(N, D)). */
  rankme_centred: number;
  /** Centred RankMe of the final patch tokens of the first train images, every token a row (1..D; method/monitors.ts TokenRankMe). */
  rankme_tokens: number;
  /** Tokens `rankme_tokens` was measured on. */
  token_samples: number;
  /** 'healthy' | 'low-rank' | 'collapsed', from the centred RankMe and the normalised std (method/monitors.ts). */
  verdict: string;
  /** Per-dimension std of the L2-normalised train features (healthy ~ 1/sqrt(D), 0 at collapse). */
  normalised_std: number;
  /** Largest eigenvalues (at most 64) of the train features' covariance, largest first. */
  eigenspectrum: number[];
  monitor_samples: number;
  /** Corrupt samples left out of the features (train then test), when any. */
  skipped?: { path: string; reason: string }[];
  /** Class names of the training set, by label index (when the dataset names its classes: folders, Fashion-MNIST). */
  class_names?: string[];
  /** Per-channel normalisation of [0, 1] pixels the features were computed with. */
  normalisation: { mean: number[]; std: number[] };
  time_s: number;
}

function labelsOk(ds: Dataset): boolean {
  if (ds.numClasses <= 0) return false;
  for (let i = 0; i < ds.length; i++) if (ds.labelOf(i) < 0) return false;
  return true;
}

/** Seeded subset of at most n rows (all rows when N <= n). */
function sampleRows(x: Tensor, n: number, seed: number): Tensor {
  const N = x.size(0);
  if (N <= n) return x.clone();
  const idx = permutation(N, seed, -3).slice(0, n).sort();
  return tidy(() => x.indexSelect(0, tensor(idx, [n]).long()));
}

/**
 * The seed of the test split: the one given, else the checkpoint's own run seed when that run held out the
 * same fraction of the same data (so the test images are the ones its pretraining never saw), else 0. A given
 * seed that differs from such a run's gets a warning: most of that test split was in the run's training data
 * (as does any split of data the run pretrained on whole).
 */
export function splitSeed(given: number | undefined, valSplit: number | undefined, data: string, run: PretrainConfig | null,
                          say: (m: string) => void = () => {}): number {
  const sameData = run !== null && valSplit !== undefined && run.data === data ? run : null;
  if (sameData?.valSplit === 0) {
    say(`note: the checkpoint's run pretrained on all of ${data} (no held-out split): this test split was in its pretraining data`);
  }
  const own = sameData !== null && sameData.valSplit === valSplit ? sameData.seed : undefined;  // the run held out this very fraction
  if (given === undefined) {
    if (!own) return 0;
    say(`test split: seed ${own}, the pretraining run's own held-out ${valSplit} of ${data}`);
    return own;
  }
  if (own !== undefined && given !== own) {
    say(`warning: the checkpoint's run held out the ${valSplit} split of ${data} with seed ${own}; with seed ${given} ` +
      `about ${Math.round(100 * (1 - valSplit!))} % of the test images were in its pretraining data (pass --seed ${own})`);
  }
  return given;
}

/** Loads the encoder of a checkpoint, extracts frozen features and runs the requested protocols. */
export async function evaluateCheckpoint(o: EvaluateOptions): Promise<EvalReport> {
  const t0 = Date.now();
  const say = o.onMessage ?? (() => {});
  const protocols = [...new Set<Protocol>(o.protocols ?? ['knn', 'linear'])];
  for (const p of protocols) if (!PROTOCOLS.includes(p)) throw new Error(`unknown protocol '${String(p)}' (expected ${PROTOCOLS.join(', ')})`);
  const pooling = o.pooling ?? 'mean';
  const valSplit = o.valData ? undefined : (o.valSplit ?? 0.1);
  if (valSplit !== undefined && !(valSplit > 0 && valSplit < 1)) throw new Error(`--val-split must be in (0, 1), got ${valSplit}`);

  const loaded = loadEncoderFromCheckpoint(o.checkpoint, { which: o.which, config: o.config, heads: o.heads, model: o.model, onMessage: say });
  const seed = splitSeed(o.seed, valSplit, o.data, loaded.config, say);
  const enc = loaded.encoder;
  const feats: Tensor[] = [];
  const tokens = new TokenRankMe();
  try {
    const { train: fullTrain, val } = await openDatasets(o.data, { valData: o.valData, valSplit, seed });
    const test = val!;
    const sub = o.trainSubset ?? 0;
    const train = sub > 0 && sub < fullTrain.length
      ? new SubsetDataset(fullTrain, permutation(fullTrain.length, seed, -4).slice(0, sub).sort(), `${fullTrain.spec}[seeded subset of ${sub}]`)
      : fullTrain;
    const needLabels = protocols.length > 0;
    if (needLabels) {
      for (const ds of [train, test]) {
        if (!labelsOk(ds)) {
          throw new Error(`${ds.spec} is unlabelled (or has unlabelled samples): --protocol ${protocols.join(',')} needs class labels ` +
            '(use `cjepa embed` for unlabelled data)');
        }
      }
    }
    const numClasses = Math.max(train.numClasses, test.numClasses);
    say(`encoder: ${loaded.network} (${loaded.architecture}) ${loaded.file}, ${enc.blocks.length} blocks, dim ${enc.embedDim}, ` +
      `${loaded.imgSize} px / patch ${loaded.patchSize}, ${loaded.channels} ch; pooling ${pooling} -> ${pooledDim(enc, pooling)} dims`);
    say(`train: ${train.spec} (${train.length}); test: ${test.spec} (${test.length})`);
    const xo = { batchSize: o.batchSize ?? 128, pooling, workers: o.workers ?? 0, onSkip: (s: string, r: string) => say(`[data] skipping ${s}: ${r} (left out)`) };
    const progress = (stage: string) => (done: number, total: number) => o.onProgress?.({ stage, done, total, unit: 'img' });
    const tr = await extractFeatures(enc, train, { ...xo, onProgress: progress('train features'), tokens, tokenLimit: o.tokenSamples ?? 65536 });
    feats.push(tr.features);
    const te = await extractFeatures(enc, test, { ...xo, onProgress: progress('test features') });
    feats.push(te.features);
    const skipped = [...tr.skipped, ...te.skipped];
    say(`features: train ${tr.features.shape.join('x')}, test ${te.features.shape.join('x')}` +
      (skipped.length ? ` (${skipped.length} corrupt samples left out)` : ''));

    const mon = sampleRows(tr.features, o.monitorSamples ?? 16384, seed);
    feats.push(mon);
    const stats = collapseStats(mon, tokens);
    const report: EvalReport = {
      checkpoint: loaded.file, network: loaded.network, architecture: loaded.architecture,
      step: loaded.step ?? null, method: loaded.method ?? null,
      data: train.spec, test_data: test.spec, pooling, embedding_dim: tr.features.size(1),
      n_train: tr.features.size(0), n_test: te.features.size(0), num_classes: numClasses,
      rankme: stats.rankme, rankme_centred: stats.rankme_centred, normalised_std: stats.std,
      rankme_tokens: stats.rankme_tokens ?? NaN, token_samples: tokens.count, verdict: collapseVerdict(stats),
      eigenspectrum: covarianceSpectrum(mon).slice(0, 64),
      monitor_samples: mon.size(0), ...(skipped.length ? { skipped: skippedList(skipped) } : {}),
      ...(train.classNames?.length ? { class_names: [...train.classNames] } : {}), normalisation: tr.norm, time_s: 0,
    };
    if (protocols.includes('knn')) {
      const r = knnClassify(tr.features, tr.labels, te.features, te.labels, { numClasses, ...o.knn });
      report.knn_top1 = r.top1;
      report.knn_k_used = r.kUsed;
      report.knn_temperature = o.knn?.temperature ?? 0.07;
      say(`k-NN: ${Object.entries(r.top1).map(([k, v]) => `k=${k} ${(100 * v).toFixed(2)}%`).join(', ')}`);
    }
    if (protocols.includes('linear')) {
      const maxIter = o.linear?.maxIter ?? 1000;
      const r = linearProbe(tr.features, tr.labels, te.features, te.labels, {
        numClasses, seed, ...o.linear,
        onIter: (e) => {
          o.onProgress?.({ stage: `linear probe ${e.phase === 'final' ? 'final fit' : 'sweep'}, l2 ${e.l2}`, done: e.iter, total: maxIter, unit: 'iter', info: `loss ${e.loss.toFixed(5)}` });
          o.linear?.onIter?.(e);
        },
        onFit: (e) => {
          say(`linear probe ${e.phase === 'final' ? 'final fit (all train features)' : `sweep fit ${e.fit}`}: l2 ${e.l2}, ` +
            `${e.iterations} L-BFGS iterations (${e.reason}), loss ${e.loss.toFixed(5)}, ${e.seconds.toFixed(1)} s` +
            (e.valTop1 !== undefined ? `, held-out ${(100 * e.valTop1).toFixed(2)}%` : ''));
          o.linear?.onFit?.(e);
        },
      });
      report.linear_top1 = r.top1;
      report.linear_train_top1 = r.trainTop1;
      report.linear_l2 = r.l2;
      report.linear_sweep = r.sweep;
      report.linear_l2_at_edge = r.atEdge;
      report.linear_iterations = r.iterations;
      report.linear_final_loss = r.finalLoss;
      say(`linear probe: ${(100 * r.top1).toFixed(2)}% (train ${(100 * r.trainTop1).toFixed(2)}%; l2 ${r.l2}, chosen on ${r.nVal} held-out train samples` +
        `${r.atEdge ? ', AT THE EDGE of the extended sweep' : ''}; ${r.iterations} iterations, final loss ${r.finalLoss.toFixed(5)})`);
    }
    if (protocols.includes('finetune')) {
      say('fine-tuning the encoder (frozen-feature results above are unaffected)...');
      const r = await finetune(enc, train, test, {
        numClasses, seed, workers: o.workers ?? 0, ...o.finetune,
        onLog: (l) => {
          o.onProgress?.({ stage: 'fine-tuning', done: l.step, total: l.totalSteps, unit: 'step', info: `epoch ${l.epoch + 1}/${l.epochs} loss ${l.loss.toFixed(4)}` });
          o.finetune?.onLog?.(l);
        },
      });
      report.finetune_top1 = r.top1;
      report.finetune_epoch_loss = r.epochLoss;
      say(`fine-tuning: ${(100 * r.top1).toFixed(2)}%`);
    }
    report.time_s = (Date.now() - t0) / 1000;
    return report;
  } finally {
    feats.forEach((t) => t.dispose());
    tokens.dispose();
    enc.dispose();
  }
}

export interface EmbedImagesOptions extends Omit<EncoderSource, 'checkpoint'> {
  batchSize?: number;
  pooling?: Pooling;
  workers?: number;
  onMessage?: (msg: string) => void;
  onProgress?: (p: Progress) => void;
}

export interface EmbedOptions extends EncoderSource, EmbedImagesOptions {
  data: string;
  /** Output .safetensors file (written atomically). */
  out: string;
  /** Replace an existing `out` that is not an earlier embeddings file (default false: refuse). */
  force?: boolean;
}
export interface EmbedResult {
  out: string;
  n: number;
  dim: number;
  network: string;
  /** Whether file paths were stored (folder datasets). */
  paths: boolean;
  /** Corrupt samples left out (no row), also listed in the file's `skipped` metadata. */
  skipped: { path: string; reason: string }[];
  /** Class names by label index (when the dataset names its classes), also in the file's `class_names` metadata. */
  classNames?: string[];
  /** Per-channel normalisation of [0, 1] pixels, also in the file's `normalisation` metadata. */
  normalisation: { mean: number[]; std: number[] };
}

/** The embeddings `embedImages` returns; the caller owns (disposes) `embeddings`. */
export interface Embeddings {
  /** (N, D) float32, row i = `paths[i]`. */
  embeddings: Tensor;
  /** Image paths in row order (corrupt images get no row: see skipped). */
  paths: string[];
  /** Label per row (-1 when unlabelled: a list of paths, or files directly in the folder). */
  labels: Int32Array;
  /** Class names by label (a folder's subfolders). */
  classNames: string[];
  skipped: { path: string; reason: string }[];
  normalisation: { mean: number[]; std: number[] };
  /** The weights file read, and which network it is. */
  checkpoint: string;
  network: string;
  pooling: Pooling;
}

function skippedList(s: SkippedSample[]): { path: string; reason: string }[] {
  return s.map((x) => ({ path: x.source, reason: x.reason }));
}

/** The `format` metadata of a safetensors file, or null when `path` is not one (read from its header only). */
function safetensorsFormat(path: string): string | null {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = statSync(path).size, prefix = Buffer.alloc(8);
    if (size < 8 || readSync(fd, prefix, 0, 8, 0) !== 8) return null;
    const n = Number(prefix.readBigUInt64LE(0));
    if (n < 2 || n > Math.min(size - 8, 100_000_000)) return null;
    const header = Buffer.alloc(n);
    readSync(fd, header, 0, n, 8);
    const meta = (JSON.parse(header.toString('utf8')) as Record<string, unknown>)['__metadata__'] as Record<string, unknown> | undefined;
    return typeof meta?.['format'] === 'string' ? meta['format'] : '';
  } catch {
    return null;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

const EMBEDDINGS_FORMAT = 'cjepa-embeddings/1';

/** Refuses to replace anything at `out` but an earlier embeddings file, unless forced. */
function checkOut(out: string, force: boolean): void {
  if (!existsSync(out)) return;
  if (statSync(out).isDirectory()) throw new Error(`--out ${out} is a directory`);
  if (force || safetensorsFormat(out) === EMBEDDINGS_FORMAT) return;
  throw new Error(`--out ${out} exists and is not an embeddings file; refusing to overwrite it (use --force)`);
}

/**
 * The preprocessing of `cjepa eval` / `embed` / embedImages for an encoder of `size` px: the view
 * (shorter side resized, centre crop) and the per-channel normalisation (x - mean) / std of [0, 1]
 * pixels: the dataset's own statistics when it has them (Fashion-MNIST, CIFAR), else ImageNet's.
 */
export function evalPreprocessing(size: number, norm: NormName | NormStats = 'imagenet', channels = 3): { view: ViewSpec } & NormStats {
  return { view: evalTransform({ size }), ...resolveNorm(norm, null, channels) };
}

/** Loads the checkpoint's encoder and extracts the features of every sample of a dataset (opened once the encoder loaded). */
async function embedRows(open: () => Promise<Dataset>, o: EncoderSource & EmbedImagesOptions) {
  const say = o.onMessage ?? (() => {});
  const loaded = loadEncoderFromCheckpoint(o.checkpoint, { which: o.which, config: o.config, heads: o.heads, model: o.model, onMessage: say });
  try {
    const ds = await open();
    const pooling = o.pooling ?? 'mean';
    say(`embedding ${ds.spec} (${ds.length}) with ${loaded.network} ${loaded.file}, pooling ${pooling}`);
    const f: Features = await extractFeatures(loaded.encoder, ds, {
      batchSize: o.batchSize ?? 128, pooling, workers: o.workers ?? 0,
      onProgress: (done, total) => o.onProgress?.({ stage: 'embedding', done, total, unit: 'img' }),
      onSkip: (src, r) => say(`[data] skipping ${src}: ${r} (no row; listed in the skipped metadata)`),
    });
    return { f, ds, pooling, file: loaded.file, network: loaded.network };
  } finally {
    loaded.encoder.dispose();
  }
}

/** A folder dataset of the given image files (unlabelled), rooted at their deepest common directory. */
function filesDataset(paths: readonly string[]): Dataset {
  if (paths.length === 0) throw new Error('embedImages: the list of image paths is empty');
  const abs = paths.map((p) => resolve(p));
  for (const p of abs) if (!existsSync(p) || !statSync(p).isFile()) throw new Error(`embedImages: no such image file: ${p}`);
  let root = dirname(abs[0]!);
  while (!abs.every((p) => { const r = relative(root, p); return !r.startsWith('..') && !isAbsolute(r); })) root = dirname(root);
  return new FolderDataset({
    kind: 'folder', spec: `${abs.length} image file(s) under ${root}`, root, files: abs.map((p) => relative(root, p).split(sep).join('/')),
    labels: new Int32Array(abs.length).fill(-1), classNames: [], channels: 3, imageSize: null, cache: null,
  });
}

/**
 * Embeds images with a checkpoint's encoder (the target encoder by default: `which`): a list of image
 * files, or a folder (searched recursively for images; subfolders are classes). Images are
 * resized (shorter side), centre-cropped to the encoder's size and normalised (`normalisation`), as
 * `cjepa eval` / `cjepa embed` do. Returns the pooled embeddings in row order with their paths.
 */
export async function embedImages(pathsOrFolder: string | readonly string[], checkpoint: string, o: EmbedImagesOptions = {}): Promise<Embeddings> {
  const open = typeof pathsOrFolder === 'string' && existsSync(pathsOrFolder) && statSync(pathsOrFolder).isDirectory()
    ? () => openDataset(`folder:${pathsOrFolder}`)
    : async () => filesDataset(typeof pathsOrFolder === 'string' ? [pathsOrFolder] : pathsOrFolder);
  const { f, ds, pooling, file, network } = await embedRows(open, { ...o, checkpoint });
  const paths = ds.paths!;
  return {
    embeddings: f.features, paths: Array.from(f.indices, (i) => paths[i]!), labels: f.labels, classNames: [...(ds.classNames ?? [])],
    skipped: skippedList(f.skipped), normalisation: f.norm, checkpoint: file, network, pooling,
  };
}

/**
 * Embeds every sample of a dataset and writes a safetensors file with
 *  - `embeddings` (N, D) float32, row i = sample `indices[i]` (dataset order),
 *  - `indices` (N) int64, and `labels` (N) int64 (-1 when unlabelled),
 *  - `__metadata__`: `paths` (JSON array, row order; folder datasets only), `skipped` (JSON array of
 *    {path, reason}: corrupt samples, which get no row), `class_names` (JSON array by label, when the
 *    dataset names its classes), `normalisation` (JSON {mean, std} of the [0, 1] pixels), `data`,
 *    `checkpoint`, `network`, `pooling`, `format` = "cjepa-embeddings/1".
 * An existing `out` is replaced only when it is an earlier embeddings file, or with `force`.
 */
export async function embedDataset(o: EmbedOptions): Promise<EmbedResult> {
  const out = resolve(o.out);
  checkOut(out, o.force ?? false);
  const { f, ds, pooling, file, network } = await embedRows(() => openDataset(o.data), o);
  const idx = tensor(BigInt64Array.from(f.indices, (i) => BigInt(i)), [f.indices.length]);
  const lab = tensor(BigInt64Array.from(f.labels, (i) => BigInt(i)), [f.labels.length]);
  try {
    const skipped = skippedList(f.skipped);
    const classNames = ds.classNames?.length ? [...ds.classNames] : undefined;
    const meta: Record<string, string> = {
      format: EMBEDDINGS_FORMAT, data: ds.spec, checkpoint: file, network, pooling, skipped: JSON.stringify(skipped),
      normalisation: JSON.stringify(f.norm), ...(classNames ? { class_names: JSON.stringify(classNames) } : {}),
    };
    const paths = ds.paths;
    if (paths) meta['paths'] = JSON.stringify(Array.from(f.indices, (i) => paths[i]!));
    mkdirSync(dirname(out), { recursive: true });
    checkOut(out, o.force ?? false); // again: the file may have appeared meanwhile
    saveTensors(out, { embeddings: f.features, indices: idx, labels: lab }, meta);
    return {
      out, n: f.features.size(0), dim: f.features.size(1), network, paths: paths !== undefined, skipped,
      ...(classNames ? { classNames } : {}), normalisation: f.norm,
    };
  } finally {
    f.features.dispose(); idx.dispose(); lab.dispose();
  }
}
