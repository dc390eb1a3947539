// The pretraining loop for C-JEPA, I-JEPA and VICReg. Reads top to bottom: data, networks, optimiser
// and schedules, resume, then per step: masks -> forward -> loss -> backward -> AdamW -> EMA, with
// metrics, collapse monitors and atomic checkpoints.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, tensor, tidy, noGrad, cat, setNumThreads, manualSeed, Generator, liveTensors } from '../tensor/index.js';
import { VisionTransformer, vitConfig, gridOf } from '../nn/vit.js';
import { Predictor } from '../nn/predictor.js';
import { Expander } from '../nn/expander.js';
import { Module } from '../nn/module.js';
import { type PretrainConfig, validateConfig } from '../config.js';
import { openDatasets, DataLoader, ijepaTransform, vicregViews, evalTransform, type Dataset, type Batch } from '../data/index.js';
import { MultiBlockMaskSampler } from './masks.js';
import { WarmupCosineSchedule, CosineWDSchedule, momentumAt } from './schedulers.js';
import { AdamW, ijepaParamGroups, clipGradNorm } from './optim.js';
import { emaUpdate } from './ema.js';
import { jepaForward, vicregForward, maskTensors } from './step.js';
import { saveCheckpoint, hasCheckpoint, resolveIntactCheckpoint, readCheckpointState, loadNet, type CheckpointState } from './checkpoint.js';
import { acquireRunLock, type RunLock } from './run_lock.js';
import { collapseStats, type CollapseStats } from '../eval/monitors.js';
import { writeLineChartPng } from '../util/plot.js';

export interface StepLog {
  kind: 'step';
  step: number;
  epoch: number;
  loss: number;
  terms: Record<string, number>;
  lr: number;
  wd: number;
  momentum: number;
  imgs_per_s: number;
  data_wait_ms: number;
  step_ms: number;
  skipped: number;
  live_tensors: number;
  time_s: number;
}
export interface MonitorLog extends CollapseStats {
  kind: 'monitor';
  step: number;
  epoch: number;
}

export interface PretrainOptions {
  resume?: boolean;
  /** Called after each logged step and each monitor (progress display). */
  onLog?: (l: StepLog | MonitorLog, totalSteps: number) => void;
  onMessage?: (msg: string) => void;
  /** Stop early (e.g. SIGINT): a checkpoint is written, then pretrain returns. */
  signal?: AbortSignal;
  /** Testing hook: stop (without a final checkpoint) after this many steps, as if killed. */
  killAfterSteps?: number;
}

export interface PretrainResult {
  steps: number;
  finalLoss: number;
  checkpoint: string | null;
  out: string;
}

/** The networks of a run, built from a config (also used by eval to rebuild an encoder). */
export function buildNetworks(cfg: PretrainConfig, channels: number) {
  const m = cfg.model;
  const encCfg = vitConfig(m.name, {
    imgSize: m.imgSize, patchSize: m.patch, inChans: channels, seed: cfg.seed,
    ...(m.depth !== undefined ? { depth: m.depth } : {}),
    ...(m.embedDim !== undefined ? { embedDim: m.embedDim } : {}),
    ...(m.numHeads !== undefined ? { numHeads: m.numHeads } : {}),
  });
  const encoder = new VisionTransformer(encCfg);
  if (cfg.method === 'vicreg') {
    const expander = new Expander([encCfg.embedDim, ...cfg.vicreg.expander], cfg.seed);
    return { encoder, targetEncoder: null, predictor: null, expander };
  }
  const targetEncoder = new VisionTransformer(encCfg);
  targetEncoder.loadStateDict(encoder.stateDict());
  for (const p of targetEncoder.parameters()) p.requiresGrad_(false);
  const predictor = new Predictor({
    grid: gridOf(m.imgSize, m.patch), embedDim: encCfg.embedDim, seed: cfg.seed,
    predictorEmbedDim: cfg.predictor.embedDim, depth: cfg.predictor.depth, numHeads: cfg.predictor.numHeads,
  });
  return { encoder, targetEncoder, predictor, expander: null };
}

/** Average-pooled target-encoder (or encoder) features of a few fixed images. */
async function monitorEmbeddings(enc: VisionTransformer, loader: DataLoader, n: number): Promise<Tensor> {
  const rows: Tensor[] = [];
  let got = 0;
  for await (const b of loader.epoch(0)) {
    rows.push(noGrad(() => tidy(() => enc.forward(tensor(b.views[0]!, b.shape)).mean(1))));
    got += b.shape[0];
    if (got >= n) break;
  }
  const all = tidy(() => cat(rows, 0).narrow(0, 0, Math.min(n, got)));
  rows.forEach((r) => r.dispose());
  return all;
}

/** Pretrains; one writer per run directory (run_lock.ts): the lock is held from the first write to the return. */
export async function pretrain(config: PretrainConfig, o: PretrainOptions = {}): Promise<PretrainResult> {
  const held: RunLock[] = [];
  try { return await pretrainLocked(config, o, held); } finally { held.forEach((l) => l.release()); }
}

async function pretrainLocked(config: PretrainConfig, o: PretrainOptions, held: RunLock[]): Promise<PretrainResult> {
  const cfg = validateConfig(structuredClone(config));
  const say = o.onMessage ?? ((m: string) => console.error(m));
  const out = cfg.out;
  if (!o.resume && hasCheckpoint(out)) {
    throw new Error(`'${out}' already holds a run (latest.json); pass --resume to continue it or choose another --out`);
  }
  mkdirSync(out, { recursive: true });
  held.push(acquireRunLock(out)); // a second writer (pretrain or resume) is refused, naming the holder
  if (cfg.threads > 0) setNumThreads(cfg.threads);
  manualSeed(cfg.seed);

  // ---------------------------------------------------------------- data
  const { train, val } = await openDatasets(cfg.data, { valSplit: cfg.valSplit, seed: cfg.seed });
  const channels = train.channels;
  const size = cfg.model.imgSize;
  const views = cfg.method === 'vicreg' ? vicregViews({ size }) : ijepaTransform({ size, scale: cfg.aug.scale, flip: cfg.aug.flip });
  const loader = new DataLoader(train, {
    batchSize: cfg.optim.batch, views, seed: cfg.seed, workers: cfg.workers, imageSize: size, patchSize: cfg.model.patch, channels,
    onSkip: (src, why) => say(`[data] skipping ${src}: ${why}`),
  });
  const monitorSet: Dataset = val ?? train;
  const monitorLoader = new DataLoader(monitorSet, {
    batchSize: Math.min(cfg.log.monitorSamples, monitorSet.length, 256), views: evalTransform({ size }), shuffle: false, dropLast: false,
    seed: cfg.seed, workers: 0, imageSize: size, channels,
  });

  // ---------------------------------------------------------------- networks, optimiser, schedules
  const nets = buildNetworks(cfg, channels);
  const trainable: [string, Module][] = [['encoder', nets.encoder], ...(nets.predictor ? [['predictor', nets.predictor] as [string, Module]] : []),
    ...(nets.expander ? [['expander', nets.expander] as [string, Module]] : [])];
  const named = trainable.flatMap(([prefix, m]) => m.namedParameters(`${prefix}.`));
  const opt = new AdamW(ijepaParamGroups(named), { betas: cfg.optim.betas, eps: cfg.optim.eps });
  const ipe = loader.stepsPerEpoch;
  const total = cfg.optim.steps > 0 ? cfg.optim.steps : Math.max(1, Math.round(cfg.optim.epochs * ipe));
  const warmup = Math.min(total, Math.round(cfg.optim.warmupEpochs * ipe));
  const lrs = new WarmupCosineSchedule({ warmupSteps: warmup, startLr: cfg.optim.startLr, refLr: cfg.optim.lr, finalLr: cfg.optim.finalLr, totalSteps: Math.round(cfg.optim.ipeScale * total) });
  const wds = new CosineWDSchedule({ refWd: cfg.optim.weightDecay, finalWd: cfg.optim.finalWeightDecay, totalSteps: Math.max(1, Math.round(cfg.optim.ipeScale * total)) });
  const grid = gridOf(size, cfg.model.patch);
  const sampler = cfg.method === 'vicreg' ? null : new MultiBlockMaskSampler({ gridSize: grid, allowOverlap: false, ...cfg.masks }, cfg.seed);
  const globalGen = Generator.default();
  const cjepaOpts = {
    betaVicreg: cfg.method === 'ijepa' ? 0 : cfg.cjepa.betaVicreg,
    weights: { inv: cfg.cjepa.inv, var: cfg.cjepa.var, cov: cfg.cjepa.cov },
    placement: cfg.cjepa.placement, distance: cfg.loss.distance,
  };

  // ---------------------------------------------------------------- resume
  let step = 0, epoch = 0, stepInEpoch = 0;
  const metricsPath = join(out, 'metrics.jsonl');
  if (o.resume && hasCheckpoint(out)) {
    const dir = resolveIntactCheckpoint(out, say); // a damaged newest checkpoint: the newest intact one, with a warning
    const st = readCheckpointState(dir);
    const old = st.config as PretrainConfig;
    if (old.method !== cfg.method || old.model.name !== cfg.model.name || old.model.imgSize !== cfg.model.imgSize || old.model.patch !== cfg.model.patch) {
      throw new Error(`--resume: the checkpoint in '${out}' is a ${old.method} ${old.model.name} run; the config asks for ${cfg.method} ${cfg.model.name}`);
    }
    tidy(() => {
      nets.encoder.loadStateDict(loadNet(dir, 'encoder'));
      if (nets.targetEncoder) nets.targetEncoder.loadStateDict(loadNet(dir, 'target_encoder'));
      if (nets.predictor) nets.predictor.loadStateDict(loadNet(dir, 'predictor'));
      if (nets.expander) nets.expander.loadStateDict(loadNet(dir, 'expander'));
      opt.loadStateTensors(loadNet(dir, 'optimizer'), st.optimizerStep);
      if (st.torchRng) globalGen.setState(tensor(Uint8Array.from(st.torchRng)));
    });
    if (sampler && st.maskRng) sampler.rng.setState(st.maskRng);
    step = st.step; epoch = st.epoch; stepInEpoch = st.stepInEpoch;
    // metrics logged after the checkpoint belong to the lost steps: drop them
    if (existsSync(metricsPath)) {
      const kept = readFileSync(metricsPath, 'utf8').split('\n').filter((l) => { try { return (JSON.parse(l) as { step: number }).step <= step; } catch { return false; } }); // a torn last line (disk full) is dropped
      writeFileSync(metricsPath, kept.map((l) => l + '\n').join(''));
    }
    say(`resumed from ${dir} at step ${step} (epoch ${epoch})`);
  } else if (existsSync(metricsPath)) {
    writeFileSync(metricsPath, '');
  }
  writeFileSync(join(out, 'config.json'), JSON.stringify(cfg, null, 2));

  const checkpoint = (): string => {
    const state: CheckpointState = {
      step, epoch, stepInEpoch, config: cfg, method: cfg.method, optimizerStep: opt.step,
      maskRng: sampler?.rng.state(), torchRng: tidy(() => Array.from(globalGen.getState().data<'uint8'>())),
    };
    const netsOut: Record<string, Record<string, Tensor>> = { encoder: nets.encoder.stateDict() };
    if (nets.targetEncoder) netsOut.target_encoder = nets.targetEncoder.stateDict();
    if (nets.predictor) netsOut.predictor = nets.predictor.stateDict();
    if (nets.expander) netsOut.expander = nets.expander.stateDict();
    return saveCheckpoint(out, { nets: netsOut, optimizer: opt.stateTensors(), state }, cfg.log.keepCheckpoints);
  };
  const log = (l: StepLog | MonitorLog) => {
    appendFileSync(metricsPath, JSON.stringify(l) + '\n');
    o.onLog?.(l, total);
  };
  const monitor = async () => {
    const enc = nets.targetEncoder ?? nets.encoder;
    const emb = await monitorEmbeddings(enc, monitorLoader, cfg.log.monitorSamples);
    const stats = collapseStats(emb);
    emb.dispose();
    log({ kind: 'monitor', step, epoch, ...stats });
  };

  // ---------------------------------------------------------------- the loop
  const t0 = Date.now();
  let lastCkpt: string | null = null;
  let finalLoss = NaN;
  let killed = false;
  if (step === 0 && cfg.log.monitorEvery > 0) await monitor();
  try {
    outer: while (step < total) {
      let skip = stepInEpoch;
      for await (const batch of loader.epoch(epoch)) {
        if (skip > 0) { skip--; continue; } // resuming mid-epoch: same batches as the uninterrupted run
        if (step >= total) break outer;
        const ts = Date.now();
        const lr = lrs.lrAt(step), wd = wds.wdAt(step);
        const momentum = momentumAt(step, total, cfg.optim.ema[0], cfg.optim.ema[1], cfg.optim.ipeScale);
        const terms = trainStep(batch);
        if (cfg.optim.clipGrad > 0) clipGradNorm(opt.groups.flatMap((g) => g.params.map(([, p]) => p)), cfg.optim.clipGrad);
        opt.update(lr, wd);
        for (const [, m] of trainable) m.zeroGrad();
        if (nets.targetEncoder) emaUpdate(nets.targetEncoder.parameters(), nets.encoder.parameters(), momentum);
        step++; stepInEpoch++;
        finalLoss = terms.loss!;
        const stepMs = Date.now() - ts;
        if (step % cfg.log.every === 0 || step === total) {
          const { loss, ...rest } = terms;
          log({
            kind: 'step', step, epoch, loss: loss!, terms: rest, lr, wd, momentum,
            imgs_per_s: (cfg.optim.batch * 1000) / Math.max(1, stepMs + batch.waitMs), data_wait_ms: batch.waitMs, step_ms: stepMs,
            skipped: batch.skipped, live_tensors: liveTensors(), time_s: (Date.now() - t0) / 1000,
          });
        }
        if (cfg.log.monitorEvery > 0 && step % cfg.log.monitorEvery === 0) await monitor();
        if (step % cfg.log.checkpointEvery === 0 && step < total) lastCkpt = checkpoint();
        if (o.killAfterSteps !== undefined && step >= o.killAfterSteps) { killed = true; break outer; }
        if (o.signal?.aborted) { lastCkpt = checkpoint(); say(`stopped at step ${step}; checkpoint ${lastCkpt}`); killed = true; break outer; }
      }
      if (step < total) { epoch++; stepInEpoch = 0; }
    }
    if (!killed) {
      if (cfg.log.monitorEvery > 0 && step % cfg.log.monitorEvery !== 0) await monitor();
      lastCkpt = checkpoint();
      await writePlots(out);
    }
  } finally {
    await loader.close();
    await monitorLoader.close();
    opt.dispose();
    for (const n of [nets.encoder, nets.targetEncoder, nets.predictor, nets.expander]) n?.dispose();
  }
  return { steps: step, finalLoss, checkpoint: lastCkpt, out };

  /** forward + backward of one batch; returns the loss terms as numbers (throws on a non-finite one). */
  function trainStep(batch: Batch): Record<string, number> {
    return tidy(() => {
      let terms: Record<string, Tensor>;
      if (cfg.method === 'vicreg') {
        const v1 = tensor(batch.views[0]!, batch.shape), v2 = tensor(batch.views[1]!, batch.shape);
        terms = { ...vicregForward(nets.encoder, nets.expander!, v1, v2, cfg.vicreg) };
      } else {
        const masks = maskTensors(sampler!.sample(batch.shape[0]));
        const images = tensor(batch.views[0]!, batch.shape);
        const t = jepaForward({ encoder: nets.encoder, targetEncoder: nets.targetEncoder!, predictor: nets.predictor! }, images, masks.ctx, masks.tgt, cjepaOpts);
        terms = cfg.method === 'ijepa' ? { loss: t.loss } : { ...t };
      }
      const values: Record<string, number> = {};
      for (const [k, v] of Object.entries(terms)) {
        const x = v.item();
        if (!Number.isFinite(x)) {
          throw new Error(`non-finite loss at step ${step + 1}: term '${k}' = ${x}. Training stopped; the last good checkpoint is kept` +
            (lastCkpt ? ` (${lastCkpt})` : '') + '. Lower optim.lr or enable optim.clipGrad.');
        }
        values[k] = x;
      }
      terms.loss!.backward();
      return values;
    });
  }
}

/** loss.png and monitors.png from metrics.jsonl. */
export async function writePlots(out: string): Promise<void> {
  const p = join(out, 'metrics.jsonl');
  if (!existsSync(p)) return;
  const lines = readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as StepLog | MonitorLog);
  const steps = lines.filter((l): l is StepLog => l.kind === 'step');
  const mons = lines.filter((l): l is MonitorLog => l.kind === 'monitor');
  if (steps.length > 1) {
    const keys = ['loss', ...Object.keys(steps[0]!.terms)];
    await writeLineChartPng(join(out, 'loss.png'), keys.map((k) => ({
      name: k, x: steps.map((s) => s.step), y: steps.map((s) => (k === 'loss' ? s.loss : s.terms[k]!)),
    })), { title: 'Training loss', xLabel: 'step', yLabel: 'value', logY: true });
  }
  if (mons.length > 1) {
    await writeLineChartPng(join(out, 'rankme.png'), [{ name: 'RankMe', x: mons.map((m) => m.step), y: mons.map((m) => m.rankme) }],
      { title: 'RankMe of target-encoder embeddings', xLabel: 'step', yLabel: 'RankMe' });
  }
}
