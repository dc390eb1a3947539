// The pretraining loop for C-JEPA, I-JEPA and VICReg. Reads top to bottom: data, networks, optimiser
// and schedules, resume, then per step: masks -> forward -> loss -> backward -> AdamW -> EMA, with
// metrics, collapse monitors and atomic checkpoints.
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, tensor, tidy, noGrad, cat, setNumThreads, manualSeed, Generator, liveTensors, onDefaultDevice, runtime, setPrecision, autoPrecision } from '../tensor/index.js';
import type { VisionTransformer } from '../nn/vit.js';
import type { Predictor } from '../nn/predictor.js';
import type { Expander } from '../nn/expander.js';
import type { Module } from '../nn/module.js';
import { type PretrainConfig, validateConfig, architectureConflict } from '../config.js';
import { openDatasets, DataLoader, evalTransform, type Dataset, type Batch } from '../data/index.js';
import { WarmupCosineSchedule, CosineWDSchedule, scaledWarmup, WARMUP_MAX_FRACTION } from './schedulers.js';
import { AdamW, ijepaParamGroups, clipGradNorm_ } from './optim.js';
import { createMethod, lossFormula, type TrainingMethod } from './training_method.js';
import { saveCheckpoint, hasCheckpoint, resolveIntactCheckpoint, readCheckpointState, loadNet, type CheckpointState } from './checkpoint.js';
import { acquireRunLock, LOCK_FILE, type RunLock } from './run_lock.js';
import { collapseStats, collapseVerdict, TokenRankMe, type CollapseStats } from './monitors.js';
import { writeLineChartPng } from '../util/plot.js';
import type { ProcessGroup } from '../distributed/process_group.js';
import { dataParallel, singleProcess, type StepSync } from '../distributed/ddp.js';

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
  /** Data parallelism: ms spent averaging gradients over ranks in this step. */
  allreduce_ms?: number;
  /** Data parallelism: ms in all collectives of this step (gradients, all-gathers, loss terms), waiting for peers included. */
  comm_ms?: number;
}
/** Collapse monitors of the evaluated encoder (the EMA target for JEPA methods) and of the online encoder. */
export interface MonitorLog extends CollapseStats {
  kind: 'monitor';
  step: number;
  epoch: number;
  verdict: ReturnType<typeof collapseVerdict>;
  online?: CollapseStats;
}

/** What a run is about to do, told once before the first step (progress display). */
export interface RunStart {
  /** The step training starts from (> 0 after a resume): ETAs count from here. */
  startStep: number;
  totalSteps: number;
  stepsPerEpoch: number;
  /** Warmup steps used, and whether the configured warmup was cut to fit the run (scaledWarmup). */
  warmupSteps: number;
  warmupCapped: boolean;
  /** How the loss is made of the logged terms, e.g. 'loss = jepa + 0.001·vicreg (vicreg = 25·inv + 25·var + 1·cov)'. */
  loss: string;
}

export interface PretrainOptions {
  /** Continue the run in config.out from its newest intact checkpoint (refused when out holds no run). */
  resume?: boolean;
  /** Called once before the first step. */
  onStart?: (s: RunStart) => void;
  /** Called after each logged step and each monitor (progress display). */
  onLog?: (l: StepLog | MonitorLog, totalSteps: number) => void;
  onMessage?: (msg: string) => void;
  /** Stop early (e.g. SIGINT): a checkpoint is written, then pretrain returns. */
  signal?: AbortSignal;
  /**
   * Pause the run after this step with a checkpoint, its schedules (learning rate, weight decay, EMA
   * momentum, VICReg weight) staying those of the whole run, so that `resume` continues it exactly as if
   * it had not stopped: a long run in time-boxed pieces, or a screen read at one checkpoint of the full
   * schedule. At or past the run's length it changes nothing.
   */
  stopAt?: number;
  /** Testing hook: stop (without a final checkpoint) after this many steps, as if killed. */
  killAfterSteps?: number;
  /**
   * Data-parallel training: this process is one rank of the group. `optim.batch` is per rank (the
   * global batch is batch x world size); only rank 0 writes to the run directory.
   */
  processGroup?: ProcessGroup;
}

export interface PretrainResult {
  steps: number;
  /** The run's length (its schedule's last step); `steps < totalSteps` after a stop (stopAt, signal). */
  totalSteps: number;
  finalLoss: number;
  checkpoint: string | null;
  out: string;
}

/** The networks of a run, built from a config (the method object's networks; for scripts and benchmarks). */
export function buildNetworks(cfg: PretrainConfig, channels: number) {
  const m = createMethod(cfg, channels);
  const n = m.networks as Partial<Record<string, Module>>;
  return {
    encoder: m.onlineEncoder, targetEncoder: (n['target_encoder'] as VisionTransformer | undefined) ?? null,
    predictor: (n['predictor'] as Predictor | undefined) ?? null, expander: (n['expander'] as Expander | undefined) ?? null,
  };
}

/** Average-pooled target-encoder (or encoder) features of a few fixed images; their patch tokens go to `tokens`. */
async function monitorEmbeddings(enc: VisionTransformer, loader: DataLoader, n: number, tokens: TokenRankMe): Promise<Tensor> {
  const rows: Tensor[] = [];
  let got = 0;
  for await (const b of loader.epoch(0)) {
    const take = Math.min(b.shape[0], n - got);
    rows.push(noGrad(() => tidy(() => {
      const t = enc.forward(tensor(b.views[0]!, b.shape, onDefaultDevice())).narrow(0, 0, take);
      tokens.add(t);
      return t.mean(1);
    })));
    got += b.shape[0];
    if (got >= n) break;
  }
  const all = tidy(() => cat(rows, 0));
  rows.forEach((r) => r.dispose());
  return all;
}

/**
 * Refuses a resume of a directory that holds no run (missing, or without config.json, latest.json and a
 * run lock), in one line suggesting to drop --resume. A run killed before its first checkpoint is
 * resumable (from step 0); a run still starting (its lock taken) is refused by the lock, naming its PID.
 */
export function checkResumable(out: string): void {
  if (!existsSync(out)) throw new Error(`--resume: '${out}' does not exist, so there is no run to continue; drop --resume to start a new run`);
  if (!hasCheckpoint(out) && !existsSync(join(out, 'config.json')) && !existsSync(join(out, LOCK_FILE))) {
    const what = readdirSync(out).length === 0 ? 'is empty' : 'holds no run (no config.json, no checkpoint)';
    throw new Error(`--resume: '${out}' ${what}; drop --resume to start a new run there`);
  }
}

/**
 * Which checkpoint file a network of a resumed run loads from: its own; in a converted run (cjepa
 * convert) that lacks it, the encoder's for the target encoder (a plain state dict holds one encoder),
 * or none (the network keeps its initialisation), each with a warning.
 */
function networkFile(dir: string, stem: string, st: CheckpointState, say: (m: string) => void): string | null {
  if (existsSync(join(dir, `${stem}.safetensors`)) || st.convertedFrom === undefined) return stem; // our own checkpoints are complete (loadNet names what is missing)
  if (stem === 'target_encoder' && existsSync(join(dir, 'encoder.safetensors'))) {
    say(`warning: the converted checkpoint has no target_encoder: it starts as a copy of the encoder`);
    return 'encoder';
  }
  say(`warning: the converted checkpoint has no ${stem}: it starts from its initialisation`);
  return null;
}

function optimizerMissingWhy(st: CheckpointState): string {
  const c = st.convertedFrom as { optimizerNotConverted?: string } | undefined;
  return c ? `converted without the optimiser state: ${c.optimizerNotConverted ?? 'none in the file'}` : 'not saved';
}

/** Pretrains; one writer per run directory (run_lock.ts): the lock is held from the first write to the return. */
export async function pretrain(config: PretrainConfig, o: PretrainOptions = {}): Promise<PretrainResult> {
  const held: RunLock[] = [];
  const sync = o.processGroup && o.processGroup.worldSize > 1 ? dataParallel(o.processGroup) : singleProcess;
  const precision = runtime.precision; // the run sets its own; the caller's is restored after
  try {
    return await pretrainLocked(config, o, held, sync);
  } catch (e) {
    sync.fail((e as Error).message); // the other ranks then name this one instead of timing out blind
    throw e;
  } finally { held.forEach((l) => l.release()); runtime.precision = precision; }
}

async function pretrainLocked(config: PretrainConfig, o: PretrainOptions, held: RunLock[], sync: StepSync): Promise<PretrainResult> {
  const main = sync.isMain; // rank 0 alone touches the run directory
  if (o.stopAt !== undefined && !(Number.isInteger(o.stopAt) && o.stopAt >= 1)) throw new Error(`stopAt: expected a step number >= 1, got ${o.stopAt}`);
  let cfg = validateConfig(structuredClone(config));
  if (sync.worldSize > 1) {
    // every rank trains rank 0's config (its threads and workers are local choices)
    const c0 = JSON.parse(sync.shareString('cjepa/config', main ? JSON.stringify(cfg) : null)) as PretrainConfig;
    if (!main) cfg = validateConfig({ ...c0, threads: cfg.threads, workers: cfg.workers });
  }
  const sayAll = o.onMessage ?? ((m: string) => console.error(m));
  const say = main ? sayAll : () => {}; // run-level messages once; a rank's own data problems from every rank
  const out = cfg.out;
  if (main) {
    if (!o.resume && hasCheckpoint(out)) {
      throw new Error(`'${out}' already holds a run (latest.json); pass --resume to continue it or choose another --out`);
    }
    if (o.resume) checkResumable(out);
    mkdirSync(out, { recursive: true });
    held.push(acquireRunLock(out)); // a second writer (pretrain or resume) is refused, naming the holder
  }
  if (cfg.threads > 0) setNumThreads(cfg.threads);
  manualSeed(cfg.seed);
  const precision = setPrecision(cfg.precision);
  if (precision === 'bf16') say('precision: bf16 autocast for the network forwards (weights, optimiser, losses fp32)');
  // where `auto` would not pick bf16, libtorch emulates it: slower than fp32, its bf16 matmuls accumulate in bf16
  if (precision === 'bf16' && autoPrecision() === 'fp32') say('warning: this CPU has no AVX512-BF16 or AMX: libtorch emulates bf16 here, slower than fp32 and with bf16 accumulation in its matmuls; --precision fp32 (or auto) is the better choice');

  // ---------------------------------------------------------------- data and the method's networks
  // rank 0 first: a dataset fetched by name lands once in the shared cache
  const { train, val } = await sync.mainFirst('dataset opening', () => openDatasets(cfg.data, { valSplit: cfg.valSplit, seed: cfg.seed }));
  const channels = train.channels;
  const size = cfg.model.imgSize;
  const method = createMethod(cfg, channels, { rank: sync.rank, worldSize: sync.worldSize, allGather: sync.allGather });
  const loader = new DataLoader(train, {
    batchSize: cfg.optim.batch, views: method.views, seed: cfg.seed, workers: cfg.workers, imageSize: size, patchSize: cfg.model.patch, channels,
    onSkip: (src, why) => sayAll(`[data] skipping ${src}: ${why}`), shard: { rank: sync.rank, worldSize: sync.worldSize },
  });
  const monitorSet: Dataset = val ?? train;
  const monitorLoader = new DataLoader(monitorSet, {
    batchSize: Math.min(cfg.log.monitorSamples, monitorSet.length, 256), views: evalTransform({ size }), shuffle: false, dropLast: false,
    seed: cfg.seed, workers: 0, imageSize: size, channels,
  });

  // ---------------------------------------------------------------- optimiser, schedules
  const named = method.trainable.flatMap(([prefix, m]) => m.namedParameters(`${prefix}.`));
  const opt = new AdamW(ijepaParamGroups(named), { betas: cfg.optim.betas, eps: cfg.optim.eps });
  const params = opt.groups.flatMap((g) => g.params.map(([, p]) => p));
  const ipe = loader.stepsPerEpoch;
  const total = cfg.optim.steps > 0 ? cfg.optim.steps : Math.max(1, Math.round(cfg.optim.epochs * ipe));
  const wu = cfg.optim.scaleWarmup ? scaledWarmup(cfg.optim.warmupEpochs, ipe, total) : null;
  const warmup = Math.min(total, wu ? wu.steps : Math.round(cfg.optim.warmupEpochs * ipe));
  const lrs = new WarmupCosineSchedule({ warmupSteps: warmup, startLr: cfg.optim.startLr, refLr: cfg.optim.lr, finalLr: cfg.optim.finalLr, totalSteps: Math.round(cfg.optim.ipeScale * total) });
  const wds = new CosineWDSchedule({ refWd: cfg.optim.weightDecay, finalWd: cfg.optim.finalWeightDecay, totalSteps: Math.max(1, Math.round(cfg.optim.ipeScale * total)) });
  const globalGen = Generator.default();

  // ---------------------------------------------------------------- resume
  let step = 0, epoch = 0, stepInEpoch = 0;
  const metricsPath = join(out, 'metrics.jsonl');
  if (main && o.resume && hasCheckpoint(out)) {
    const dir = resolveIntactCheckpoint(out, say); // a damaged newest checkpoint: the newest intact one, with a warning
    const st = readCheckpointState(dir);
    const clash = architectureConflict(st.config as PretrainConfig, cfg, out);
    if (clash) throw new Error(clash);
    tidy(() => {
      for (const [stem, net] of Object.entries(method.networks)) {
        const from = networkFile(dir, stem, st, say);
        if (from) net.loadStateDict(loadNet(dir, from));
      }
      if (existsSync(join(dir, 'optimizer.safetensors'))) opt.loadStateTensors(loadNet(dir, 'optimizer'), st.optimizerStep);
      else say(`warning: ${dir} has no optimizer.safetensors (${optimizerMissingWhy(st)}): AdamW starts with fresh moments`);
      if (st.torchRng) globalGen.setState(tensor(Uint8Array.from(st.torchRng)));
    });
    method.loadState(st);
    step = st.step; epoch = st.epoch; stepInEpoch = st.stepInEpoch;
    const was = typeof st.worldSize === 'number' ? st.worldSize : 1;
    if (was !== sync.worldSize) {
      say(`resuming a run trained on ${was} rank(s) with ${sync.worldSize}: the global batch changes from ${was * cfg.optim.batch} to ` +
        `${sync.worldSize * cfg.optim.batch} (optim.batch is per rank), so the batches from here differ from the original run's`);
    }
    // metrics logged after the checkpoint belong to the lost steps: drop them
    if (existsSync(metricsPath)) {
      const kept = readFileSync(metricsPath, 'utf8').split('\n').filter((l) => { try { return (JSON.parse(l) as { step: number }).step <= step; } catch { return false; } }); // a torn last line (disk full) is dropped
      writeFileSync(metricsPath, kept.map((l) => l + '\n').join(''));
    }
    say(`resumed from ${dir} at step ${step} (epoch ${epoch})`);
  } else if (main) {
    if (o.resume) say(`no checkpoint in '${out}' yet: starting the run from step 0`);
    if (existsSync(metricsPath)) writeFileSync(metricsPath, '');
  }
  if (main) writeFileSync(join(out, 'config.json'), JSON.stringify(cfg, null, 2));
  if (sync.worldSize > 1) ({ step, epoch, stepInEpoch } = shareStart(sync, method, opt, globalGen, { step, epoch, stepInEpoch }));

  const checkpoint = (): string => {
    const state: CheckpointState = {
      step, epoch, stepInEpoch, config: cfg, method: cfg.method, optimizerStep: opt.step,
      ...method.saveState(), worldSize: sync.worldSize, torchRng: tidy(() => Array.from(globalGen.getState().data<'uint8'>())),
    };
    const netsOut = Object.fromEntries(Object.entries(method.networks).map(([stem, net]) => [stem, net.stateDict()]));
    return saveCheckpoint(out, { nets: netsOut, optimizer: opt.stateTensors(), state }, cfg.log.keepCheckpoints);
  };
  const log = (l: StepLog | MonitorLog) => {
    if (!main) return;
    appendFileSync(metricsPath, JSON.stringify(l) + '\n');
    o.onLog?.(l, total);
  };
  const monitor = async () => {
    if (!main) return; // the monitors run no collective: rank 0 alone
    // the evaluated encoder (EMA target for JEPA), and the online encoder when it is another network
    const stats = async (enc: VisionTransformer) => {
      const tokens = new TokenRankMe();
      try {
        const emb = await monitorEmbeddings(enc, monitorLoader, cfg.log.monitorSamples, tokens);
        try { return collapseStats(emb, tokens); } finally { emb.dispose(); }
      } finally {
        tokens.dispose();
      }
    };
    const ev = await stats(method.evalEncoder);
    const online = method.onlineEncoder !== method.evalEncoder ? await stats(method.onlineEncoder) : undefined;
    log({ kind: 'monitor', step, epoch, ...ev, verdict: collapseVerdict(ev), ...(online ? { online } : {}) });
  };

  // ---------------------------------------------------------------- the loop
  if (wu?.capped) {
    say(`warmup: ${warmup} steps (the configured ${wu.configured} = ${cfg.optim.warmupEpochs} epoch(s) would be over ` +
      `${Math.round(WARMUP_MAX_FRACTION * 100)} % of this ${total}-step run; --set optim.scaleWarmup=false keeps it)`);
  }
  o.onStart?.({ startStep: step, totalSteps: total, stepsPerEpoch: ipe, warmupSteps: warmup, warmupCapped: wu?.capped ?? false, loss: lossFormula(cfg, total) });
  const t0 = Date.now();
  let lastCkpt: string | null = null;
  let finalLoss = NaN;
  let killed = false;
  if (step === 0 && cfg.log.monitorEvery > 0) await sync.mainOnly('monitors at step 0', monitor);
  try {
    if (o.stopAt !== undefined && o.stopAt <= step && step < total) { // inside the try: the loaders are closed on the way out
      throw new Error(`stopAt ${o.stopAt}: the run in '${out}' is already at step ${step} (of ${total}); give a later step`);
    }
    outer: while (step < total) {
      let skip = stepInEpoch;
      for await (const batch of loader.epoch(epoch)) {
        if (skip > 0) { skip--; continue; } // resuming mid-epoch: same batches as the uninterrupted run
        if (step >= total) break outer;
        const ts = Date.now();
        const lr = lrs.lrAt(step), wd = wds.wdAt(step);
        sync.markStep(step);
        const comm0 = sync.commMs();
        const terms = trainStep(batch);
        const gradMs = sync.averageGrads(params);
        if (cfg.optim.clipGrad > 0) clipGradNorm_(params, cfg.optim.clipGrad).dispose();
        opt.update(lr, wd);
        for (const [, m] of method.trainable) m.zeroGrad();
        const momentum = method.afterUpdate(step, total);
        const commMs = sync.commMs() - comm0;
        step++; stepInEpoch++;
        finalLoss = terms.loss!;
        const stepMs = Date.now() - ts;
        if (step % cfg.log.every === 0 || step === total) {
          const { loss, ...rest } = terms;
          log({
            kind: 'step', step, epoch, loss: loss!, terms: rest, lr, wd, momentum: momentum ?? NaN,
            imgs_per_s: (cfg.optim.batch * sync.worldSize * 1000) / Math.max(1, stepMs + batch.waitMs), data_wait_ms: batch.waitMs, step_ms: stepMs,
            skipped: batch.skipped, live_tensors: liveTensors(), time_s: (Date.now() - t0) / 1000,
            ...(sync.worldSize > 1 ? { allreduce_ms: Math.round(gradMs * 100) / 100, comm_ms: Math.round(commMs * 100) / 100 } : {}),
          });
        }
        const doMonitor = cfg.log.monitorEvery > 0 && step % cfg.log.monitorEvery === 0;
        const doCkpt = step % cfg.log.checkpointEvery === 0 && step < total;
        if (doMonitor || doCkpt) {
          await sync.mainOnly(`checkpoint or monitors at step ${step}`, async () => {
            if (doMonitor) await monitor();
            if (doCkpt) lastCkpt = checkpoint();
          });
        }
        if (o.killAfterSteps !== undefined && step >= o.killAfterSteps) { killed = true; break outer; }
        if (o.stopAt !== undefined && step === o.stopAt && step < total) {
          if (!doCkpt) await sync.mainOnly(`checkpoint at step ${step} (stopAt)`, async () => { lastCkpt = checkpoint(); });
          await sync.mainOnly('plots', () => writePlots(out, cfg));
          say(`paused at step ${step} of ${total} (stop at ${o.stopAt}); checkpoint ${lastCkpt}`);
          killed = true; break outer;
        }
        if (o.signal) await new Promise((r) => setImmediate(r)); // let a signal handler run (a synchronous loader never yields to it)
        if (sync.any(o.signal?.aborted ?? false)) { // every rank stops at the same step
          await sync.mainOnly(`checkpoint at the stop (step ${step})`, async () => { lastCkpt = checkpoint(); });
          say(`stopped at step ${step}; checkpoint ${lastCkpt}`); killed = true; break outer;
        }
      }
      if (step < total) { epoch++; stepInEpoch = 0; }
    }
    if (!killed) {
      await sync.mainOnly('final checkpoint', async () => {
        if (cfg.log.monitorEvery > 0 && step % cfg.log.monitorEvery !== 0) await monitor();
        lastCkpt = checkpoint();
        await writePlots(out, cfg);
      });
    }
  } finally {
    await loader.close();
    await monitorLoader.close();
    opt.dispose();
    method.dispose();
  }
  return { steps: step, totalSteps: total, finalLoss, checkpoint: lastCkpt, out };

  /** forward + backward of one batch; returns the loss terms as numbers (throws on a non-finite one). */
  function trainStep(batch: Batch): Record<string, number> {
    return tidy(() => {
      const terms = method.forward(batch, step, total);
      const local: Record<string, number> = {};
      for (const [k, v] of Object.entries(terms)) local[k] = v.item();
      // the global batch's terms (each rank's are means over its rows): every rank sees the same values
      const values = sync.averageTerms(local);
      for (const [k, x] of Object.entries(values)) {
        if (!Number.isFinite(x)) {
          throw new Error(`non-finite loss at step ${step + 1}: term '${k}' = ${x}. Training stopped; the last good checkpoint is kept` +
            (lastCkpt ? ` (${lastCkpt})` : '') + '. Lower optim.lr or enable optim.clipGrad.');
        }
      }
      sync.backward(() => terms.loss!.backward());
      return values;
    });
  }
}

interface Counters { step: number; epoch: number; stepInEpoch: number }

/**
 * Data parallelism: rank 0 alone read the run directory (a resume), so every rank takes its weights,
 * buffers, optimiser state, counters and RNG states before the first step.
 */
function shareStart(sync: StepSync, method: TrainingMethod, opt: AdamW, gen: Generator, c: Counters): Counters {
  type Start = Counters & { optimizerStep: number; method: Partial<CheckpointState>; torchRng: number[] };
  const mine: Start | null = sync.isMain
    ? { ...c, optimizerStep: opt.step, method: method.saveState(), torchRng: tidy(() => Array.from(gen.getState().data<'uint8'>())) }
    : null;
  const start = JSON.parse(sync.shareString('cjepa/start', mine && JSON.stringify(mine))) as Start;
  sync.broadcast([
    ...Object.values(method.networks).flatMap((n) => [...n.namedParameters(), ...n.namedBuffers()].map(([, t]) => t)),
    ...Object.values(opt.stateTensors()),
  ]);
  if (!sync.isMain) {
    opt.step = start.optimizerStep;
    method.loadState(start.method as CheckpointState);
    tidy(() => gen.setState(tensor(Uint8Array.from(start.torchRng))));
  }
  return { step: start.step, epoch: start.epoch, stepInEpoch: start.stepInEpoch };
}

/** loss.png and rankme.png from metrics.jsonl (the loss formula in the title when `cfg` is given). */
export async function writePlots(out: string, cfg?: PretrainConfig): Promise<void> {
  const p = join(out, 'metrics.jsonl');
  if (!existsSync(p)) return;
  const lines = readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as StepLog | MonitorLog);
  const steps = lines.filter((l): l is StepLog => l.kind === 'step');
  const mons = lines.filter((l): l is MonitorLog => l.kind === 'monitor');
  if (steps.length > 1) {
    const keys = ['loss', ...Object.keys(steps[0]!.terms)];
    await writeLineChartPng(join(out, 'loss.png'), keys.map((k) => ({
      name: k, x: steps.map((s) => s.step), y: steps.map((s) => (k === 'loss' ? s.loss : s.terms[k]!)),
    })), { title: `Training loss${cfg ? `: ${lossFormula(cfg).split(' (')[0]}` : ''}`, xLabel: 'step', yLabel: 'value', logY: true });
  }
  if (mons.length > 1) {
    const x = mons.map((m) => m.step);
    const series = [
      { name: 'RankMe, centred', x, y: mons.map((m) => m.rankme_centred ?? NaN) },
      { name: 'RankMe, uncentred', x, y: mons.map((m) => m.rankme) },
      ...(mons[0]!.online ? [{ name: 'online encoder, centred', x, y: mons.map((m) => m.online?.rankme_centred ?? NaN) }] : []),
    ];
    await writeLineChartPng(join(out, 'rankme.png'), series,
      { title: `RankMe of ${mons[0]!.online ? 'target-' : ''}encoder embeddings (of ${mons[0]!.dim})`, xLabel: 'step', yLabel: 'RankMe' });
  }
}
