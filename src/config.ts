// Pretraining configuration: plain data, defaults, YAML loading, flag overrides and validation.
// A bad value is refused before any work starts, naming the field.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { VIT_SIZES, vitConfig, type ViTConfig } from './nn/vit.js';
import { CJEPA_PLACEMENTS, DECORRELATIONS, type CjepaPlacement, type Decorrelation } from './method/losses.js';
import { PERCENT, type StepCount } from './method/schedulers.js';

export type Method = 'cjepa' | 'ijepa' | 'vicreg';

export interface PretrainConfig {
  method: Method;
  data: string;                 // dataset spec, e.g. fashion-mnist, folder:<path>
  valSplit: number;             // fraction held out (seeded) for monitoring / eval; 0 = none
  out: string;                  // run directory (checkpoints, metrics.jsonl, plots)
  seed: number;
  threads: number;              // libtorch intra-op threads, 0 = all cores
  workers: number;              // data-loader worker threads
  /** compute precision of the network forwards: fp32, bf16 (autocast; weights, optimiser and losses stay fp32), auto */
  precision: 'fp32' | 'bf16' | 'auto';
  model: {
    name: string;               // vit_tiny ... vit_giant
    patch: number;
    imgSize: number;
    depth?: number;             // overrides of the named size (small-image presets use fewer blocks)
    embedDim?: number;
    numHeads?: number;
  };
  predictor: { embedDim: number; depth: number; numHeads: number };
  masks: {
    mode: 'faithful' | 'unbiased';
    nTargets: number;
    targetScale: [number, number];
    targetAspect: [number, number];
    contextScale: [number, number];
    contextAspect: [number, number];
    minKeep: number;
    /** 'block' (official): one context block minus the targets; 'complement': every patch not in a target */
    contextMode: 'block' | 'complement';
    /** 'truncate' (official): contexts cut to the batch's shortest; 'pad': whole contexts, padding masked in attention */
    contextFit: 'truncate' | 'pad';
  };
  loss: { distance: 'smooth_l1' | 'l2' };
  cjepa: {
    betaVicreg: number; inv: number; var: number; cov: number;
    /** 0: betaVicreg throughout; N > 0: betaVicreg cosine-decays to 0 over N steps (then I-JEPA); '25%': a quarter of the run */
    betaDecaySteps: StepCount;
    /** the step the decay begins (betaVicreg until then), or a share of the run ('25%'); 0: from the first step */
    betaDecayStart: StepCount;
    /** what the cov term penalises: 'covariance' (official) or the scale-free 'correlation' */
    decorrelate: Decorrelation;
    /** the std the variance hinge asks of each pooled dimension (VICReg's gamma, official 1) */
    stdTarget: number;
    placement: CjepaPlacement;
    /** 'views' and 'target' placements: widths of the projector on pooled embeddings before VICReg ([] = none) */
    projector: number[];
    /**
     * trunc-normal std of the projector's Linear weights (0.02, the ViT's). With a one-Linear projector the scale sets
     * where VICReg's variance term acts: at 0.02 on the representation, at 0.1 on the projector (its std fell 10x:
     * docs/results/fashion-quickstart/, session 18)
     */
    projectorInitStd: number;
    /** 'views' placement: augmentation of the two views (VICReg's official pair, or two I-JEPA crops) */
    viewAug: 'vicreg' | 'crop';
    /** 'views' placement: what VICReg pools: the context encoder's masked tokens, or a full (unmasked) pass of the online encoder */
    viewInput: 'context' | 'full';
    /**
     * 'target' placement: what the EMA teacher pools: the same crop the context came from ('same'), or a second,
     * VICReg-augmented view of the image ('augmented': one extra no-grad target forward per step)
     */
    teacherView: 'same' | 'augmented';
  };
  vicreg: { inv: number; var: number; cov: number; decorrelate: Decorrelation; stdTarget: number; expander: number[] };
  optim: {
    batch: number;
    epochs: number;             // used when steps is 0
    steps: number;              // total optimiser steps; 0 = epochs * steps-per-epoch
    lr: number;
    startLr: number;
    finalLr: number;
    warmupEpochs: number;       // fraction allowed; converted with steps-per-epoch
    /** Cut a warmup longer than 25 % of the run to 10 % of it (schedulers.ts scaledWarmup); false: as configured */
    scaleWarmup: boolean;
    weightDecay: number;
    finalWeightDecay: number;
    betas: [number, number];
    eps: number;
    clipGrad: number;           // 0 = off
    /** EMA momentum [start, end], linear over the run; 'auto': start chosen from the run length (autoEmaStart), end 1 */
    ema: [number, number] | 'auto';
    ipeScale: number;
  };
  /** scale/flip: the I-JEPA crop; viewScale: random-resized-crop scale of the VICReg-style views (official [0.08, 1]) */
  aug: { scale: [number, number]; flip: boolean; viewScale: [number, number] };
  log: { every: number; monitorEvery: number; checkpointEvery: number; monitorSamples: number; keepCheckpoints: number };
}

export const DEFAULT_CONFIG: PretrainConfig = {
  method: 'cjepa',
  data: 'fashion-mnist',
  valSplit: 0,
  out: 'runs/cjepa',
  seed: 0,
  threads: 0,
  workers: 1,
  precision: 'auto',  // bf16 autocast where the CPU has AVX512-BF16/AMX (or on CUDA): k-NN within 0.5 point of fp32 on two seeds (docs/results/bf16-check)
  model: { name: 'vit_tiny', patch: 4, imgSize: 32, depth: 6, embedDim: undefined, numHeads: undefined },
  predictor: { embedDim: 96, depth: 2, numHeads: 3 },
  masks: {
    mode: 'unbiased', nTargets: 4, targetScale: [0.15, 0.2], targetAspect: [0.75, 1.5],
    contextScale: [0.85, 1.0], contextAspect: [1.0, 1.0], minKeep: 4, contextMode: 'block', contextFit: 'truncate',
  },
  loss: { distance: 'smooth_l1' },
  // context placement: the regulariser must act on the encoder (docs/results/cifar10-ablation/)
  cjepa: { betaVicreg: 0.001, betaDecaySteps: 0, betaDecayStart: 0, inv: 25, var: 25, cov: 1, decorrelate: 'covariance', stdTarget: 1, placement: 'context', projector: [], projectorInitStd: 0.02, viewAug: 'vicreg', viewInput: 'context', teacherView: 'same' },
  vicreg: { inv: 25, var: 25, cov: 1, decorrelate: 'covariance', stdTarget: 1, expander: [768, 768, 768] },
  optim: {
    batch: 128, epochs: 10, steps: 0, lr: 1e-3, startLr: 2e-4, finalLr: 1e-6, warmupEpochs: 1, scaleWarmup: true,
    weightDecay: 0.04, finalWeightDecay: 0.4, betas: [0.9, 0.999], eps: 1e-8, clipGrad: 0, ema: [0.996, 1.0], ipeScale: 1.0,
  },
  aug: { scale: [0.3, 1.0], flip: false, viewScale: [0.08, 1.0] },
  log: { every: 10, monitorEvery: 200, checkpointEvery: 500, monitorSamples: 512, keepCheckpoints: 2 },
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge of `over` onto `base`, refusing keys the base does not have (typos). */
export function mergeConfig<T>(base: T, over: unknown, path = ''): T {
  if (over === undefined || over === null) return base;
  if (!isObj(over)) throw new Error(`config: '${path || '<root>'}' must be a mapping`);
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over)) {
    const p = path ? `${path}.${k}` : k;
    if (!Object.hasOwn(out, k)) throw new Error(`config: unknown field '${p}'`); // own keys only: not 'constructor', '__proto__'
    const cur = out[k];
    out[k] = isObj(cur) && !Array.isArray(cur) ? mergeConfig(cur, v, p) : v;
  }
  return out as T;
}

export function loadConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`config file '${path}' cannot be read: ${(e as Error).message}`);
  }
  try {
    return parseYaml(text) as Json;
  } catch (e) {
    throw new Error(`config file '${path}' is not valid YAML: ${(e as Error).message}`);
  }
}

/** Checks every field; throws naming the first bad one. */
export function validateConfig(c: PretrainConfig): PretrainConfig {
  const fail = (field: string, msg: string): never => { throw new Error(`config: '${field}' ${msg}`); };
  const num = (field: string, v: unknown, o: { min?: number; max?: number; int?: boolean; gt?: number } = {}) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(field, `must be a number, got ${JSON.stringify(v)}`);
    const n = v as number;
    if (o.int && !Number.isInteger(n)) fail(field, `must be an integer, got ${n}`);
    if (o.min !== undefined && n < o.min) fail(field, `must be >= ${o.min}, got ${n}`);
    if (o.gt !== undefined && n <= o.gt) fail(field, `must be > ${o.gt}, got ${n}`);
    if (o.max !== undefined && n > o.max) fail(field, `must be <= ${o.max}, got ${n}`);
  };
  const range = (field: string, v: unknown, lo: number, hi: number) => {
    if (!Array.isArray(v) || v.length !== 2) fail(field, `must be a pair [min, max], got ${JSON.stringify(v)}`);
    const [a, b] = v as number[];
    num(`${field}[0]`, a, { min: lo, max: hi });
    num(`${field}[1]`, b, { min: lo, max: hi });
    if (a! > b!) fail(field, `must have min <= max, got [${a}, ${b}]`);
  };
  if (!['cjepa', 'ijepa', 'vicreg'].includes(c.method)) fail('method', `must be cjepa, ijepa or vicreg, got '${c.method}'`);
  if (typeof c.data !== 'string' || !c.data) fail('data', 'must be a dataset spec (fashion-mnist, folder:<path>, ...)');
  num('valSplit', c.valSplit, { min: 0, max: 0.9 });
  if (typeof c.out !== 'string' || !c.out) fail('out', 'must be a directory path');
  num('seed', c.seed, { int: true, min: 0 });
  num('threads', c.threads, { int: true, min: 0 });
  num('workers', c.workers, { int: true, min: 0, max: 64 });
  if (!['fp32', 'bf16', 'auto'].includes(c.precision)) fail('precision', `must be fp32, bf16 or auto, got '${String(c.precision)}'`);
  if (!Object.hasOwn(VIT_SIZES, c.model.name)) fail('model.name', `must be one of ${Object.keys(VIT_SIZES).join(', ')}, got '${c.model.name}'`);
  num('model.patch', c.model.patch, { int: true, min: 1 });
  num('model.imgSize', c.model.imgSize, { int: true, min: 1 });
  if (c.model.imgSize % c.model.patch !== 0) fail('model.imgSize', `(${c.model.imgSize}) must be divisible by model.patch (${c.model.patch})`);
  if (c.model.imgSize / c.model.patch < 2) fail('model.imgSize', 'must give a patch grid of at least 2x2');
  for (const k of ['depth', 'embedDim', 'numHeads'] as const) if (c.model[k] !== undefined) num(`model.${k}`, c.model[k], { int: true, min: 1 });
  num('predictor.embedDim', c.predictor.embedDim, { int: true, min: 4 });
  if (c.predictor.embedDim % 4 !== 0) fail('predictor.embedDim', 'must be divisible by 4 (sin-cos position embedding)');
  num('predictor.depth', c.predictor.depth, { int: true, min: 1 });
  num('predictor.numHeads', c.predictor.numHeads, { int: true, min: 1 });
  if (c.predictor.embedDim % c.predictor.numHeads !== 0) fail('predictor.numHeads', `must divide predictor.embedDim (${c.predictor.embedDim})`);
  if (!['faithful', 'unbiased'].includes(c.masks.mode)) fail('masks.mode', `must be faithful or unbiased, got '${c.masks.mode}'`);
  num('masks.nTargets', c.masks.nTargets, { int: true, min: 1, max: 16 });
  range('masks.targetScale', c.masks.targetScale, 0, 1);
  range('masks.targetAspect', c.masks.targetAspect, 0.01, 100);
  range('masks.contextScale', c.masks.contextScale, 0, 1);
  range('masks.contextAspect', c.masks.contextAspect, 0.01, 100);
  num('masks.minKeep', c.masks.minKeep, { int: true, min: 1 });
  if (!['block', 'complement'].includes(c.masks.contextMode)) fail('masks.contextMode', `must be block or complement, got '${c.masks.contextMode}'`);
  if (!['truncate', 'pad'].includes(c.masks.contextFit)) fail('masks.contextFit', `must be truncate or pad, got '${c.masks.contextFit}'`);
  if (!['smooth_l1', 'l2'].includes(c.loss.distance)) fail('loss.distance', `must be smooth_l1 or l2, got '${c.loss.distance}'`);
  num('cjepa.betaVicreg', c.cjepa.betaVicreg, { min: 0 });
  for (const k of ['betaDecaySteps', 'betaDecayStart'] as const) {
    const v = c.cjepa[k];
    if (typeof v === 'string') {
      if (!PERCENT.test(v) || parseFloat(v) > 100) fail(`cjepa.${k}`, `must be a step count or a share of the run from 0% to 100% ('25%'), got '${v}'`);
    } else num(`cjepa.${k}`, v, { int: true, min: 0 });
  }
  for (const k of ['inv', 'var', 'cov'] as const) { num(`cjepa.${k}`, c.cjepa[k], { min: 0 }); num(`vicreg.${k}`, c.vicreg[k], { min: 0 }); }
  for (const k of ['cjepa', 'vicreg'] as const) {
    if (!DECORRELATIONS.includes(c[k].decorrelate)) fail(`${k}.decorrelate`, `must be one of ${DECORRELATIONS.join(', ')}, got '${c[k].decorrelate}'`);
    num(`${k}.stdTarget`, c[k].stdTarget, { gt: 0 });
  }
  if (!CJEPA_PLACEMENTS.includes(c.cjepa.placement)) fail('cjepa.placement', `must be one of ${CJEPA_PLACEMENTS.join(', ')}, got '${c.cjepa.placement}'`);
  if (!Array.isArray(c.cjepa.projector)) fail('cjepa.projector', 'must be a list of layer widths ([] = no projector)');
  c.cjepa.projector.forEach((d, i) => num(`cjepa.projector[${i}]`, d, { int: true, min: 1 }));
  num('cjepa.projectorInitStd', c.cjepa.projectorInitStd, { gt: 0 });
  if (!['vicreg', 'crop'].includes(c.cjepa.viewAug)) fail('cjepa.viewAug', `must be vicreg or crop, got '${c.cjepa.viewAug}'`);
  if (!['context', 'full'].includes(c.cjepa.viewInput)) fail('cjepa.viewInput', `must be context or full, got '${c.cjepa.viewInput}'`);
  if (!['same', 'augmented'].includes(c.cjepa.teacherView)) fail('cjepa.teacherView', `must be same or augmented, got '${c.cjepa.teacherView}'`);
  if (c.method === 'cjepa' && ['block-pair', 'patch'].includes(c.cjepa.placement) && c.cjepa.betaVicreg > 0 && c.masks.nTargets < 2) {
    fail('masks.nTargets', 'must be >= 2 for the C-JEPA block-pair regulariser');
  }
  if (!Array.isArray(c.vicreg.expander) || c.vicreg.expander.length < 1) fail('vicreg.expander', 'must be a non-empty list of layer widths');
  c.vicreg.expander.forEach((d, i) => num(`vicreg.expander[${i}]`, d, { int: true, min: 1 }));
  const o = c.optim;
  num('optim.batch', o.batch, { int: true, min: 2 });
  num('optim.epochs', o.epochs, { min: 0 });
  num('optim.steps', o.steps, { int: true, min: 0 });
  if (o.steps === 0 && o.epochs <= 0) fail('optim.epochs', 'or optim.steps must be > 0');
  num('optim.lr', o.lr, { gt: 0 });
  num('optim.startLr', o.startLr, { min: 0 });
  num('optim.finalLr', o.finalLr, { min: 0 });
  num('optim.warmupEpochs', o.warmupEpochs, { min: 0 });
  if (typeof o.scaleWarmup !== 'boolean') fail('optim.scaleWarmup', 'must be true or false');
  num('optim.weightDecay', o.weightDecay, { min: 0 });
  num('optim.finalWeightDecay', o.finalWeightDecay, { min: 0 });
  range('optim.betas', o.betas, 0, 0.999999);
  num('optim.eps', o.eps, { gt: 0 });
  num('optim.clipGrad', o.clipGrad, { min: 0 });
  if (o.ema !== 'auto') range('optim.ema', o.ema, 0, 1);
  num('optim.ipeScale', o.ipeScale, { gt: 0 });
  range('aug.scale', c.aug.scale, 0.01, 1);
  range('aug.viewScale', c.aug.viewScale, 0.01, 1);
  if (typeof c.aug.flip !== 'boolean') fail('aug.flip', 'must be true or false');
  num('log.every', c.log.every, { int: true, min: 1 });
  num('log.monitorEvery', c.log.monitorEvery, { int: true, min: 0 });
  num('log.checkpointEvery', c.log.checkpointEvery, { int: true, min: 1 });
  num('log.monitorSamples', c.log.monitorSamples, { int: true, min: 16 });
  num('log.keepCheckpoints', c.log.keepCheckpoints, { int: true, min: 1 });
  return c;
}

/** Default config, then the YAML file, then flag overrides (each a partial config). */
export function resolveConfig(file?: string, ...overrides: unknown[]): PretrainConfig {
  let c = structuredClone(DEFAULT_CONFIG);
  if (file) c = mergeConfig(c, loadConfigFile(file));
  for (const o of overrides) c = mergeConfig(c, o);
  return validateConfig(c);
}

/** The value at a dotted path ('model.depth') of a config, or undefined. */
export function configValue(c: unknown, path: string): unknown {
  let v: unknown = c;
  for (const k of path.split('.')) v = isObj(v) && Object.hasOwn(v, k) ? v[k] : undefined;
  return v;
}

/** Dotted paths of the leaves where two configs differ (arrays compared whole), in `a`'s key order, then `b`'s. */
export function configDiff(a: unknown, b: unknown, path = ''): string[] {
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => configDiff(a[k], b[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [path];
}

/**
 * Fields that fix the networks' shapes or what they learn: a resumed run cannot change them (its
 * checkpoint's tensors would not fit, or it would silently become another method).
 */
export const ARCHITECTURE_FIELDS = [
  'method', 'model.name', 'model.patch', 'model.imgSize', 'model.depth', 'model.embedDim', 'model.numHeads',
  'predictor.embedDim', 'predictor.depth', 'predictor.numHeads', 'cjepa.placement', 'cjepa.projector', 'vicreg.expander',
] as const;

/** The first architecture field where `asked` differs from the run's config, as one line naming it; null when none. */
export function architectureConflict(run: PretrainConfig, asked: PretrainConfig, where: string): string | null {
  const f = ARCHITECTURE_FIELDS.find((k) => JSON.stringify(configValue(run, k)) !== JSON.stringify(configValue(asked, k)));
  if (!f) return null;
  const show = (v: unknown) => (v === undefined ? '(unset)' : JSON.stringify(v));
  return `--resume: '${f}' is ${show(configValue(run, f))} in the run in '${where}' but ${show(configValue(asked, f))} was asked for; ` +
    'a resumed run keeps its architecture (drop the flag, or start a new run with another --out)';
}

/**
 * The config of a resumed run: the run's saved config.json (complete, so it wins over the defaults
 * and over a --config file), then `overrides` (flags). A conflicting architecture is refused.
 */
export function resumeConfig(saved: unknown, overrides: unknown[], where: string): PretrainConfig {
  const run = resolveConfig(undefined, saved);
  const asked = resolveConfig(undefined, saved, ...overrides);
  const clash = architectureConflict(run, asked, where);
  if (clash) throw new Error(clash);
  return asked;
}

/** The encoder's ViT config of a pretrain config (the named size with the config's overrides). */
export function encoderConfig(cfg: PretrainConfig, channels: number): ViTConfig {
  const m = cfg.model;
  return vitConfig(m.name, {
    imgSize: m.imgSize, patchSize: m.patch, inChans: channels, seed: cfg.seed,
    ...(m.depth !== undefined ? { depth: m.depth } : {}),
    ...(m.embedDim !== undefined ? { embedDim: m.embedDim } : {}),
    ...(m.numHeads !== undefined ? { numHeads: m.numHeads } : {}),
  });
}
