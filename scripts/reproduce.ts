// Small-scale reproduction: pretrain I-JEPA, C-JEPA and VICReg with identical encoders, budgets and
// seeds on CIFAR-10 (seeded 45,000 / 5,000 split, CPU preset), evaluate every saved checkpoint on the
// validation split (k-NN, linear probe, RankMe), add the floors (raw pixels, a randomly initialised
// encoder), and write docs/results/<name>/: results.md, results.json, accuracy and RankMe plots.
//
//   npm run reproduce -- [--steps 2000] [--batch 64] [--eval-every 500] [--methods ijepa,cjepa,vicreg]
//                        [--runs-dir runs/repro] [--reuse] [--name cifar10-small] [--train-subset 0]
//                        [--ablation]   (C-JEPA: beta_vicreg x placement at the same budget)
//                        [--eval-only --prefix curves-]  (evaluate the checkpoints of existing runs <runs-dir>/<prefix><method>)
//                        [--only run1,run2]  (train/evaluate only these runs, e.g. to split the grid over processes)
//                        [--warmup-steps N]  (override the preset's 1-epoch warmup, for budgets shorter than an epoch)
//                        [--run 'name:method=cjepa;cjepa.placement=views;optim.ema=[0.99,1]' ...]  (runs of your own:
//                           config fields in YAML, on top of the preset; with --only to pick among them)
//                        [--online]  (JEPA runs: evaluate the online (context) encoder too, as <run>/online)
//                        [--stop-at N]  (pause each run after step N of the --steps schedule, evaluate what exists;
//                           --reuse with a later --stop-at, or none, continues it: a screen read at step N)
// Features of every evaluation are kept next to the run (<run>/features/), so a change of probe re-scores
// without re-extracting: --rescore. --knn-only skips the linear probe (screens; re-score later).
// Evaluations are cached next to each run (<run>/eval.json) and the floors in <runs-dir>/floors.json, so a
// later call with --reuse (or --eval-only) only evaluates what is new and rewrites the report.
// CJEPA_THREADS=1 runs one process per core.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { existsSync, mkdirSync, readdirSync, writeFileSync, readFileSync, renameSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '../src/tensor/index.js';
import { resolveConfig, mergeConfig, type PretrainConfig } from '../src/config.js';
import { parse as parseYaml } from 'yaml';
import { saveTensors, loadTensors } from '../src/io/tensors.js';
import { pretrain, buildNetworks } from '../src/method/trainer.js';
import { openDatasets, DataLoader, evalTransform, SubsetDataset, type Dataset } from '../src/data/index.js';
import { extractFeatures } from '../src/eval/features.js';
import { loadEncoderFromCheckpoint } from '../src/eval/load_encoder.js';
import { knnClassify } from '../src/eval/knn.js';
import { linearProbe } from '../src/eval/linear_probe.js';
import { rankMe, normalisedStd } from '../src/method/monitors.js';
import { writeLineChartPng } from '../src/util/plot.js';
import { floorsKey as floorsKeyOf, readFloorsFile } from './floors_file.js';
import type { VisionTransformer } from '../src/nn/vit.js';
import { intArg } from '../src/cli/args.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const OPTIONS = {
  steps: { type: 'string', default: '2000' }, batch: { type: 'string', default: '64' }, 'eval-every': { type: 'string', default: '500' },
  methods: { type: 'string', default: 'ijepa,cjepa,vicreg' }, 'runs-dir': { type: 'string', default: 'runs/repro' },
  reuse: { type: 'boolean', default: false }, name: { type: 'string', default: 'cifar10-small' },
  'train-subset': { type: 'string', default: '0' }, ablation: { type: 'boolean', default: false },
  data: { type: 'string', default: 'folder:../shared/data/cifar10/train' }, seed: { type: 'string', default: '0' },
  'eval-only': { type: 'boolean', default: false }, prefix: { type: 'string', default: '' },
  only: { type: 'string', default: '' }, 'warmup-steps': { type: 'string', default: '' },
  run: { type: 'string', multiple: true, default: [] as string[] }, online: { type: 'boolean', default: false },
  rescore: { type: 'boolean', default: false }, 'stop-at': { type: 'string', default: '' }, 'knn-only': { type: 'boolean', default: false },
} satisfies ParseArgsConfig['options'];
const USAGE = 'usage: npm run reproduce -- [--steps N] [--batch N] [--eval-every N] [--methods ijepa,cjepa,vicreg] [--runs-dir DIR] ' +
  '[--reuse] [--name NAME] [--train-subset N] [--data SPEC] [--seed N] [--ablation] [--eval-only --prefix P] [--only RUNS] ' +
  "[--warmup-steps N] [--run 'name:field=value;...'] [--online] [--stop-at N] [--rescore] [--knn-only] (scripts/reproduce.ts says what each does)";
const parsed = (() => {
  try {
    return parseArgs({ options: OPTIONS });
  } catch (e) {
    console.error(`reproduce: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
})();
const { values: a } = parsed;
const steps = Number(a.steps), batch = Number(a.batch), evalEvery = Number(a['eval-every']), seed = Number(a.seed);
// --stop-at N: pause each run after step N (a checkpoint, the schedule still that of --steps), then evaluate what exists;
// the same command with --reuse and a later --stop-at (or none) continues it
const stopAt = a['stop-at'] ? intArg('--stop-at', 1)(a['stop-at']) : undefined;
const outDir = join(ROOT, 'docs', 'results', a.name!);
mkdirSync(outDir, { recursive: true });
const say = (m: string) => console.error(`[reproduce] ${m}`);

let trainLength = 45000; // set from the opened split in main()

interface Row { run: string; method: string; step: number; epoch: number; knn20: number; knn200: number; linear: number; rankme: number; rankmeCentred?: number; std?: number; wallS?: number }

async function main(): Promise<void> {
  const { train, val } = await openDatasets(a.data!, { valSplit: 0.1, seed });
  if (!val) throw new Error('no validation split');
  trainLength = train.length;
  const subsetN = Number(a['train-subset']);
  const evalTrain: Dataset = subsetN > 0 && subsetN < train.length
    ? new SubsetDataset(train, Int32Array.from(T.randperm(train.length, { generator: new T.Generator(seed) }).toArray().slice(0, subsetN)))
    : train;
  say(`train ${train.length}, val ${val.length}, evaluation features from ${evalTrain.length} train images`);
  const rows: Row[] = [];
  const floors: Row[] = [];

  // features are cached in `featFile` (when given) so that a new probe re-scores without re-extracting
  const evaluate = async (enc: VisionTransformer | null, run: string, method: string, step: number, epoch: number, featFile?: string): Promise<Row> => {
    let trX: T.Tensor, teX: T.Tensor, trY: Int32Array, teY: Int32Array;
    if (featFile && existsSync(featFile)) {
      const t = loadTensors(featFile).tensors;
      [trX, teX] = [t['train']!, t['test']!];
      trY = Int32Array.from(T.tidy(() => t['train_labels']!.toArray()));
      teY = Int32Array.from(T.tidy(() => t['test_labels']!.toArray()));
      t['train_labels']!.dispose(); t['test_labels']!.dispose();
    } else {
      if (!enc) throw new Error(`no encoder and no cached features for ${run} step ${step}`);
      const tr = await extractFeatures(enc, evalTrain, { batchSize: 256 });
      const te = await extractFeatures(enc, val, { batchSize: 256 });
      [trX, teX, trY, teY] = [tr.features, te.features, tr.labels, te.labels];
      if (featFile) {
        mkdirSync(dirname(featFile), { recursive: true });
        const lab = (y: Int32Array) => T.tensor(Int32Array.from(y), [y.length]);
        const [a1, a2] = [lab(trY), lab(teY)];
        saveTensors(featFile, { train: trX, test: teX, train_labels: a1, test_labels: a2 });
        a1.dispose(); a2.dispose();
      }
    }
    const row = scoreFeatures(trX, trY, teX, teY, run, method, step, epoch);
    trX.dispose(); teX.dispose();
    return row;
  };

  // ------------------------------------------------------------ floors
  const floorsFile = join(a['runs-dir']!, 'floors.json');
  const floorsKey = floorsKeyOf(a.data!, subsetN, seed);
  const readFloors = () => readFloorsFile<Row>(floorsFile);
  const cachedFloors = readFloors()[floorsKey];
  if (cachedFloors) {
    floors.push(...cachedFloors);
    say(`floors from ${floorsFile}`);
  } else {
    const size = 32;
    const pix = async (ds: Dataset) => {
      const loader = new DataLoader(ds, { batchSize: 500, views: evalTransform({ size }), shuffle: false, dropLast: false, workers: 0, imageSize: size, channels: 3 });
      const parts: Float32Array[] = []; const labels: number[] = [];
      for await (const b of loader.epoch(0)) { parts.push(b.views[0]!.slice()); labels.push(...b.labels); }
      await loader.close();
      const D = 3 * size * size, N = labels.length, flat = new Float32Array(N * D);
      let o = 0; for (const p of parts) { flat.set(p, o); o += p.length; }
      return { x: T.tensor(flat, [N, D]), y: Int32Array.from(labels) };
    };
    const tr = await pix(evalTrain), te = await pix(val);
    floors.push(scoreFeatures(tr.x, tr.y, te.x, te.y, 'raw pixels', 'floor', 0, 0));
    tr.x.dispose(); te.x.dispose();
    say(`raw pixels: ${JSON.stringify(floors[0])}`);
    const cfg = presetConfig('ijepa', 'unused');
    const nets = buildNetworks(cfg, 3);
    floors.push(await evaluate(nets.encoder, 'random init', 'floor', 0, 0));
    say(`random init: ${JSON.stringify(floors[1])}`);
    for (const n of [nets.encoder, nets.targetEncoder, nets.predictor]) n?.dispose();
    mkdirSync(a['runs-dir']!, { recursive: true });
    // re-read (a run beside this one may have added its seed), then write whole and rename
    const tmp = `${floorsFile}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ ...readFloors(), [floorsKey]: floors }, null, 2));
    renameSync(tmp, floorsFile);
  }

  // ------------------------------------------------------------ runs
  const runs: { name: string; cfg: PretrainConfig }[] = [];
  for (const m of a.methods!.split(',').filter(Boolean)) runs.push({ name: m, cfg: presetConfig(m as PretrainConfig['method'], join(a['runs-dir']!, `${a.prefix}${m}`)) });
  if (a.ablation) {
    for (const placement of ['block-pair', 'patch', 'context'] as const) {
      for (const beta of [0.001, 0.01, 0.1, 1]) {
        const name = `cjepa-${placement}-b${beta}`;
        const cfg = presetConfig('cjepa', join(a['runs-dir']!, name));
        cfg.cjepa.placement = placement; cfg.cjepa.betaVicreg = beta;
        runs.push({ name, cfg });
      }
    }
  }
  for (const spec of a.run ?? []) {
    const colon = spec.indexOf(':');
    if (colon <= 0) throw new Error(`--run expects 'name:field=value;field=value', got '${spec}'`);
    const name = spec.slice(0, colon);
    const over: Record<string, unknown> = {};
    for (const kv of spec.slice(colon + 1).split(';').filter(Boolean)) {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new Error(`--run ${name}: expected field=value, got '${kv}'`);
      const keys = kv.slice(0, eq).trim().split('.');
      let o = over;
      for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
      o[keys.at(-1)!] = parseYaml(kv.slice(eq + 1));
    }
    const m = (over['method'] as PretrainConfig['method'] | undefined) ?? 'cjepa';
    runs.push({ name, cfg: mergeConfig(presetConfig(m, join(a['runs-dir']!, `${a.prefix}${name}`)), over) });
  }
  const only = a.only ? new Set(a.only.split(',')) : undefined;
  if (only) {
    const unknown = [...only].filter((n) => !runs.some((r) => r.name === n));
    if (unknown.length > 0) throw new Error(`--only: unknown run(s) ${unknown.join(', ')}; known: ${runs.map((r) => r.name).join(', ')}`);
  }
  const wall: Record<string, number> = {};
  // with --only, in the order given (most informative runs first when the time may run out)
  for (const r of only ? [...only].map((n) => runs.find((x) => x.name === n)!) : runs) {
    // --eval-only over a grid that was cut short: report the cell as not run rather than fail the report
    if (a['eval-only'] && a.ablation && r.name.startsWith('cjepa-') && !existsSync(join(r.cfg.out, 'checkpoints'))) {
      say(`${r.name}: not run (no ${join(r.cfg.out, 'checkpoints')}), left out of the report`);
      continue;
    }
    const done = existsSync(join(r.cfg.out, 'latest.json')) && JSON.parse(readFileSync(join(r.cfg.out, 'latest.json'), 'utf8')).step >= steps;
    if (!a['eval-only'] && !(a.reuse && done)) {
      say(`pretraining ${r.name} for ${steps} steps (batch ${batch}) -> ${r.cfg.out}`);
      const t0 = Date.now();
      // --reuse continues a run that exists and starts one that does not
      await pretrain(r.cfg, { resume: a.reuse && existsSync(join(r.cfg.out, 'config.json')), stopAt, onMessage: say });
      wall[r.name] = (Date.now() - t0) / 1000;
    } else {
      wall[r.name] = trainingLog(r.cfg.out).timeS;
    }
    const ckRoot = join(r.cfg.out, 'checkpoints');
    if (!existsSync(ckRoot)) throw new Error(`run ${r.name}: no checkpoints in ${ckRoot} (train it first: drop --eval-only)`);
    const cacheFile = join(r.cfg.out, 'eval.json');
    const cache: Record<string, Row> = existsSync(cacheFile) ? JSON.parse(readFileSync(cacheFile, 'utf8')) : {};
    const encoders: [string, 'auto' | 'encoder'][] = [[r.name, 'auto'], ...(a.online && r.cfg.method !== 'vicreg' ? [[`${r.name}/online`, 'encoder'] as [string, 'encoder']] : [])];
    for (const d of readdirSync(ckRoot).filter((x) => /^step-\d+$/.test(x)).sort()) {
      const st = JSON.parse(readFileSync(join(ckRoot, d, 'state.json'), 'utf8'));
      for (const [name, which] of encoders) {
        const key = `${floorsKey}|step ${st.step}${which === 'encoder' ? '|online' : ''}`;
        let row = a.rescore ? undefined : cache[key];
        if (!row) {
          const featFile = join(r.cfg.out, 'features', `step-${st.step}-${which === 'encoder' ? 'online' : 'target'}-${subsetN}.safetensors`);
          const loaded = existsSync(featFile) ? null : loadEncoderFromCheckpoint(join(ckRoot, d), { which });
          const epoch = (st.step * batch) / train.length;
          row = await evaluate(loaded?.encoder ?? null, name, r.cfg.method, st.step, epoch, featFile);
          loaded?.encoder.dispose();
          cache[key] = row;
          writeFileSync(cacheFile, JSON.stringify(cache, null, 2));
        }
        rows.push(row);
        say(`${name} step ${st.step}: ${JSON.stringify(row)}`);
      }
    }
    rows.filter((x) => x.run === r.name || x.run === `${r.name}/online`).forEach((x) => { x.wallS = wall[r.name]; });
  }
  if (only) say('--only: report not written (run again without --only, with --reuse, to write it from the cached evaluations)');
  else await report(rows, floors, wall, runs);
}

function presetConfig(method: PretrainConfig['method'], out: string): PretrainConfig {
  // warmup given in steps -> the preset's unit (epochs of the training split, drop_last)
  const optim = a['warmup-steps'] ? { batch, steps, warmupEpochs: Number(a['warmup-steps']) / Math.floor(trainLength / batch) } : { batch, steps };
  return resolveConfig(join(ROOT, 'configs', 'cifar10-cpu.yaml'), {
    method, data: a.data, out, seed, optim, log: { checkpointEvery: evalEvery, keepCheckpoints: 1000, monitorEvery: Math.min(evalEvery, 100) },
  });
}

function scoreFeatures(trX: T.Tensor, trY: Int32Array, teX: T.Tensor, teY: Int32Array, run: string, method: string, step: number, epoch: number): Row {
  const knn = knnClassify(trX, trY, teX, teY, { ks: [20, 200] });
  // --knn-only: a quick screen; the cached features are re-scored with the probe later (--rescore)
  const lin = a['knn-only'] ? { top1: NaN } : linearProbe(trX, trY, teX, teY);
  return {
    run, method, step, epoch, knn20: knn.top1['20']!, knn200: knn.top1['200']!, linear: lin.top1,
    rankme: rankMe(teX), rankmeCentred: rankMe(teX, { centred: true }), std: normalisedStd(teX),
  };
}

/** Last logged training terms and time, and the RankMe curve of a run, from its metrics.jsonl. */
function trainingLog(out: string): { last?: Record<string, number>; timeS: number; rankme: { step: number; rankme: number }[] } {
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const lastStep = lines.filter((l) => l.kind === 'step').at(-1);
  const monitors = lines.filter((l) => l.kind === 'monitor');
  return { last: lastStep?.terms, timeS: lastStep?.time_s ?? NaN, rankme: monitors.map((m) => ({ step: m.step, rankme: m.rankme })) };
}

const pct = (x: number | undefined | null) => (x === undefined || x === null || Number.isNaN(x) ? '–' : (100 * x).toFixed(1));
const rm = (r: Row) => `${r.rankme.toFixed(1)} / ${r.rankmeCentred === undefined ? '–' : r.rankmeCentred.toFixed(1)}`;

async function report(rows: Row[], floors: Row[], wall: Record<string, number>, runs: { name: string; cfg: PretrainConfig }[]): Promise<void> {
  writeFileSync(join(outDir, 'results.json'), JSON.stringify({ args: a, floors, rows, wall_s: wall }, null, 2));
  const last = new Map<string, Row>();
  for (const r of rows) last.set(r.run, r);
  const lines = [
    `# ${a.name}: I-JEPA vs C-JEPA vs VICReg on CIFAR-10 (small budget)`, '',
    `Budget: ${steps} steps of batch ${batch} per method (${((steps * batch) / 45000).toFixed(1)} epochs of the 45,000-image split), ` +
    'CIFAR-10 CPU preset (ViT 192 dim / 6 blocks / 3 heads, patch 4, predictor 96 / 2 blocks, unbiased masks), seed ' + seed + '. ' +
    'Evaluated on the seeded 5,000-image validation split: frozen target-encoder features (encoder for VICReg), mean-pooled; ' +
    'k-NN (cosine, T = 0.07); linear probe (standardised features, L2 sweep on a held-out 20 % of train). RankMe on the validation embeddings (of 192).', '',
    '| run | step | epochs | k-NN@20 | k-NN@200 | linear | RankMe (uncentred / centred) | wall time |', '|---|---|---|---|---|---|---|---|',
    ...floors.map((f) => `| ${f.run} (floor) | – | – | ${pct(f.knn20)} | ${pct(f.knn200)} | ${pct(f.linear)} | ${rm(f)} | – |`),
    ...[...last.values()].map((r) => `| ${r.run} | ${r.step} | ${r.epoch.toFixed(2)} | ${pct(r.knn20)} | ${pct(r.knn200)} | ${pct(r.linear)} | ${rm(r)} | ${((r.wallS ?? NaN) / 60).toFixed(0)} min |`),
    ...ablationSection(rows, runs),
    '', '## Every evaluated checkpoint', '', '| run | step | k-NN@20 | k-NN@200 | linear | RankMe (uncentred / centred) |', '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.run} | ${r.step} | ${pct(r.knn20)} | ${pct(r.knn200)} | ${pct(r.linear)} | ${rm(r)} |`),
    '', '![k-NN accuracy](knn.png)', '', '![RankMe](rankme.png)', '',
    '## Commands', '', '```sh', `npm run reproduce -- ${process.argv.slice(2).join(' ')}`, '```', '',
  ];
  writeFileSync(join(outDir, 'results.md'), lines.join('\n'));
  const byRun = [...new Set(rows.map((r) => r.run))];
  const series = (f: (r: Row) => number) => byRun.map((name) => {
    const rs = rows.filter((r) => r.run === name);
    return { name, x: rs.map((r) => r.epoch), y: rs.map(f) };
  });
  const floorSeries = (f: (r: Row) => number) => floors.map((fl) => ({ name: fl.run, x: [0, Math.max(...rows.map((r) => r.epoch), 1)], y: [f(fl), f(fl)] }));
  await writeLineChartPng(join(outDir, 'knn.png'), [...series((r) => 100 * r.knn20), ...floorSeries((r) => 100 * r.knn20)], { title: 'k-NN@20 top-1 on the CIFAR-10 validation split', xLabel: 'epoch', yLabel: 'accuracy (%)' });
  await writeLineChartPng(join(outDir, 'rankme.png'), [...series((r) => r.rankme), ...floorSeries((r) => r.rankme)], { title: 'RankMe of validation embeddings (of 192)', xLabel: 'epoch', yLabel: 'RankMe' });
  if (a.ablation) {
    for (const placement of ['block-pair', 'patch', 'context']) {
      const chosen = runs.filter((r) => (r.name === 'ijepa' || r.name.startsWith(`cjepa-${placement}-`)) && existsSync(join(r.cfg.out, 'metrics.jsonl')));
      const s = chosen.map((r) => { const m = trainingLog(r.cfg.out).rankme; return { name: r.name, x: m.map((p) => p.step), y: m.map((p) => p.rankme) }; });
      await writeLineChartPng(join(outDir, `rankme-${placement}.png`), s, { title: `RankMe during training (512 train images), placement ${placement}`, xLabel: 'step', yLabel: 'RankMe' });
    }
  }
  say(`wrote ${outDir}/results.md`);
}

/** beta x placement grid of the last checkpoint of each ablation run, beside I-JEPA (beta = 0). */
function ablationSection(rows: Row[], runs: { name: string; cfg: PretrainConfig }[]): string[] {
  if (!a.ablation) return [];
  const last = (name: string) => rows.filter((r) => r.run === name).at(-1);
  const betas = [0.001, 0.01, 0.1, 1];
  const ij = last('ijepa');
  const cell = (name: string) => {
    const r = last(name);
    const run = runs.find((x) => x.name === name);
    const t = run && existsSync(join(run.cfg.out, 'metrics.jsonl')) ? trainingLog(run.cfg.out).last : undefined;
    return r ? `${pct(r.knn20)} / ${rm(r)} / ${t?.var !== undefined ? t.var.toFixed(2) : '–'}` : 'not run';
  };
  return [
    '', '## Ablation: beta_vicreg x placement (last checkpoint)', '',
    'Each cell: k-NN@20 top-1 (%) / RankMe of the validation embeddings / variance hinge at the last step (0 = every dimension has std >= 1).',
    `I-JEPA (beta = 0) at the same budget: ${ij ? `${pct(ij.knn20)} / ${ij.rankme.toFixed(1)}` : 'not run'}.`, '',
    `| placement | ${betas.map((b) => `beta ${b}`).join(' | ')} |`, `|---|${betas.map(() => '---').join('|')}|`,
    ...['block-pair', 'patch', 'context'].map((p) => `| ${p} | ${betas.map((b) => cell(`cjepa-${p}-b${b}`)).join(' | ')} |`),
    '', '![RankMe, block-pair](rankme-block-pair.png)', '', '![RankMe, patch](rankme-patch.png)', '', '![RankMe, context](rankme-context.png)',
  ];
}

main().catch((e: unknown) => { console.error(`reproduce: ${(e as Error).stack}`); process.exit(1); });
