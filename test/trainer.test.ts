// End-to-end pretraining on a tiny IDX dataset: all three methods, kill + resume equivalence,
// non-finite loss handling, config validation, and the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { fileURLToPath } from 'node:url';
import { writeQuadrantIdx } from './util/synthetic.js';
import { resolveConfig, type PretrainConfig } from '../src/config.js';
import { pretrain } from '../src/method/trainer.js';
import { betaVicregAt } from '../src/method/schedulers.js';
import { lossFormula } from '../src/method/training_method.js';
import { loadTensors } from '../src/io/tensors.js';
import { resolveCheckpointDir } from '../src/method/checkpoint.js';
import { maxAbsDiff } from './util/pytorch.js';
import { CLI, writeTinyCliConfig, latestStep, waitUntil } from './util/runs.js';
import { setNumThreads, getNumThreads, liveTensors, gcReleasedTensors, noGrad, tidy } from '../src/tensor/index.js';
import { JepaMethod } from '../src/method/jepa_method.js';

const dir = mkdtempSync(join(tmpdir(), 'cjepa-trainer-'));
process.env['CJEPA_DATA'] ??= join(dir, 'cache'); // dataset caches (file lists) stay out of ~/.cache
const { data: DATA } = writeQuadrantIdx(dir, 96);

function tinyConfig(method: PretrainConfig['method'], out: string, extra: Record<string, unknown> = {}): PretrainConfig {
  return resolveConfig(undefined, {
    method, data: DATA, out: join(dir, out), workers: 0, threads: 1, seed: 3,
    model: { name: 'vit_tiny', patch: 4, imgSize: 16, depth: 1, embedDim: 32, numHeads: 2 },
    predictor: { embedDim: 16, depth: 1, numHeads: 2 },
    masks: { minKeep: 1, targetScale: [0.15, 0.25], contextScale: [0.85, 1.0] },
    cjepa: { betaVicreg: 0.1 },
    vicreg: { expander: [64, 64] },
    optim: { batch: 16, steps: 6, warmupEpochs: 0.2 },
    log: { every: 1, monitorEvery: 3, checkpointEvery: 3, monitorSamples: 32 },
    ...extra,
  });
}

const quiet = { onMessage: () => {} };

for (const method of ['ijepa', 'cjepa', 'vicreg'] as const) {
  test(`${method}: trains end to end, logs metrics, writes checkpoints with official names`, async () => {
    const cfg = tinyConfig(method, `run-${method}`);
    const r = await pretrain(cfg, quiet);
    assert.equal(r.steps, 6);
    assert.ok(Number.isFinite(r.finalLoss));
    const lines = readFileSync(join(cfg.out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const steps = lines.filter((l) => l.kind === 'step');
    const mons = lines.filter((l) => l.kind === 'monitor');
    assert.equal(steps.length, 6);
    assert.ok(mons.length >= 2, 'collapse monitors logged');
    for (const s of steps) {
      for (const k of ['step', 'epoch', 'loss', 'lr', 'wd', 'momentum', 'imgs_per_s', 'data_wait_ms']) assert.ok(k in s, `metrics line has ${k}`);
    }
    if (method === 'cjepa') for (const k of ['jepa', 'vicreg', 'inv', 'var', 'cov']) assert.ok(k in steps[0].terms, `C-JEPA logs ${k}`);
    if (method === 'vicreg') for (const k of ['inv', 'var', 'cov']) assert.ok(k in steps[0].terms, `VICReg logs ${k}`);
    for (const m of mons) assert.ok(m.rankme >= 1 && m.rankme <= 32 + 1e-6 && m.std >= 0);
    const ck = resolveCheckpointDir(cfg.out);
    const enc = loadTensors(join(ck, 'encoder.safetensors')).tensors;
    for (const k of ['patch_embed.proj.weight', 'pos_embed', 'blocks.0.attn.qkv.weight', 'blocks.0.mlp.fc1.weight', 'norm.weight']) assert.ok(k in enc, k);
    if (method !== 'vicreg') {
      const pred = loadTensors(join(ck, 'predictor.safetensors')).tensors;
      for (const k of ['predictor_embed.weight', 'mask_token', 'predictor_blocks.0.attn.qkv.weight', 'predictor_norm.weight', 'predictor_proj.weight']) assert.ok(k in pred, k);
      assert.ok(existsSync(join(ck, 'target_encoder.safetensors')));
    } else {
      assert.ok(existsSync(join(ck, 'expander.safetensors')));
    }
    assert.ok(existsSync(join(ck, 'optimizer.safetensors')) && existsSync(join(ck, 'state.json')));
    assert.ok(existsSync(join(cfg.out, 'loss.png')), 'loss plot written');
  });
}

test('a run killed after step 4 and resumed equals the uninterrupted run (single thread: identical)', async () => {
  const prev = getNumThreads();
  setNumThreads(1);
  try {
    const full = tinyConfig('cjepa', 'resume-full');
    await pretrain(full, quiet);
    const killed = tinyConfig('cjepa', 'resume-killed');
    const r1 = await pretrain(killed, { ...quiet, killAfterSteps: 4 });
    assert.equal(r1.steps, 4);
    // the last checkpoint is step 3: the kill lost step 4 only
    assert.equal(JSON.parse(readFileSync(join(killed.out, 'latest.json'), 'utf8')).step, 3);
    await assert.rejects(pretrain(killed, quiet), /already holds a run.*--resume/);
    const r2 = await pretrain(killed, { ...quiet, resume: true });
    assert.equal(r2.steps, 6);
    for (const stem of ['encoder', 'target_encoder', 'predictor', 'optimizer']) {
      const a = loadTensors(join(resolveCheckpointDir(full.out), `${stem}.safetensors`)).tensors;
      const b = loadTensors(join(resolveCheckpointDir(killed.out), `${stem}.safetensors`)).tensors;
      assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
      for (const k of Object.keys(a)) assert.equal(maxAbsDiff(a[k]!, b[k]!), 0, `${stem}.${k} differs after resume`);
    }
    const steps = readFileSync(join(killed.out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.kind === 'step');
    assert.deepEqual(steps.map((s) => s.step), [1, 2, 3, 4, 5, 6], 'metrics of the lost step were replaced, not duplicated');
  } finally {
    setNumThreads(prev);
  }
});

test('a run paused with stopAt and resumed equals the uninterrupted run: same schedules, same weights', async () => {
  const prev = getNumThreads();
  setNumThreads(1);
  try {
    const over = { cjepa: { betaVicreg: 0.1, betaDecayStart: 2, betaDecaySteps: 3 } }; // every schedule moves within the 6 steps
    const full = tinyConfig('cjepa', 'stop-full', over);
    const rf = await pretrain(full, quiet);
    assert.equal(rf.totalSteps, 6);
    const paused = tinyConfig('cjepa', 'stop-paused', over);
    const r1 = await pretrain(paused, { ...quiet, stopAt: 4 });
    assert.deepEqual([r1.steps, r1.totalSteps], [4, 6]);
    // step 4 is no multiple of checkpointEvery (3): the pause writes its own checkpoint, and the plots
    assert.equal(JSON.parse(readFileSync(join(paused.out, 'latest.json'), 'utf8')).step, 4);
    assert.ok(existsSync(join(paused.out, 'loss.png')));
    await assert.rejects(pretrain(paused, { ...quiet, resume: true, stopAt: 4 }), /stopAt 4: .*already at step 4 \(of 6\)/);
    await assert.rejects(pretrain(paused, { ...quiet, resume: true, stopAt: 0 }), /stopAt: expected a step number >= 1, got 0/);
    const r2 = await pretrain(paused, { ...quiet, resume: true });
    assert.deepEqual([r2.steps, r2.totalSteps], [6, 6]);
    const stepsOf = (out: string) => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.kind === 'step');
    const a = stepsOf(full.out), b = stepsOf(paused.out);
    assert.deepEqual(b.map((l) => l.step), [1, 2, 3, 4, 5, 6]);
    for (const k of ['lr', 'wd', 'momentum', 'loss'] as const) assert.deepEqual(b.map((l) => l[k]), a.map((l) => l[k]), `${k} per step`);
    for (const stem of ['encoder', 'target_encoder', 'predictor', 'optimizer']) {
      const x = loadTensors(join(resolveCheckpointDir(full.out), `${stem}.safetensors`)).tensors;
      const y = loadTensors(join(resolveCheckpointDir(paused.out), `${stem}.safetensors`)).tensors;
      for (const k of Object.keys(x)) assert.equal(maxAbsDiff(x[k]!, y[k]!), 0, `${stem}.${k} differs after the pause`);
    }
    // at or past the run's length it changes nothing
    const past = tinyConfig('cjepa', 'stop-past', over);
    assert.equal((await pretrain(past, { ...quiet, stopAt: 6 })).steps, 6);
  } finally {
    setNumThreads(prev);
  }
});

test('C-JEPA with two views: projector checkpointed, monitors of both encoders, kill + resume identical', async () => {
  const prev = getNumThreads();
  setNumThreads(1);
  try {
    const views = { cjepa: { betaVicreg: 0.1, placement: 'views', projector: [48, 48], viewAug: 'vicreg' } };
    const full = tinyConfig('cjepa', 'views-full', views);
    await pretrain(full, quiet);
    const ck = resolveCheckpointDir(full.out);
    const proj = loadTensors(join(ck, 'projector.safetensors')).tensors;
    assert.deepEqual(proj['0.weight']!.shape, [48, 32], 'projector: official expander names, encoder width in');
    const lines = readFileSync(join(full.out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const mon = lines.filter((l) => l.kind === 'monitor').at(-1);
    assert.ok(mon.rankme_centred >= 1 && mon.online.rankme_centred >= 1 && ['healthy', 'low-rank', 'collapsed'].includes(mon.verdict));
    // the patch tokens' centred RankMe, for both encoders: at least 1, at most the width
    for (const m of [mon, mon.online]) assert.ok(m.rankme_tokens >= 1 && m.rankme_tokens <= m.dim, `per-token RankMe ${m.rankme_tokens}`);
    // the online encoder trained for 6 steps; the EMA target (momentum 0.996) barely moved from the init
    assert.notEqual(mon.online.std, mon.std);
    const killed = tinyConfig('cjepa', 'views-killed', views);
    await pretrain(killed, { ...quiet, killAfterSteps: 4 });
    await pretrain(killed, { ...quiet, resume: true });
    for (const stem of ['encoder', 'target_encoder', 'predictor', 'projector', 'optimizer']) {
      const a = loadTensors(join(resolveCheckpointDir(full.out), `${stem}.safetensors`)).tensors;
      const b = loadTensors(join(resolveCheckpointDir(killed.out), `${stem}.safetensors`)).tensors;
      for (const k of Object.keys(a)) assert.equal(maxAbsDiff(a[k]!, b[k]!), 0, `${stem}.${k} differs after resume`);
    }
  } finally {
    setNumThreads(prev);
  }
});

test('C-JEPA with padded contexts (masks.contextFit pad) trains: finite losses, resumable', async () => {
  const prev = getNumThreads();
  setNumThreads(1);
  try {
    const over = { masks: { minKeep: 1, targetScale: [0.15, 0.25], contextScale: [0.85, 1.0], contextMode: 'complement', contextFit: 'pad' }, cjepa: { betaVicreg: 0.1, placement: 'views', projector: [48, 48] } };
    const cfg = tinyConfig('cjepa', 'pad', over);
    await pretrain(cfg, quiet);
    const steps = readFileSync(join(cfg.out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.kind === 'step');
    assert.ok(steps.length > 0 && steps.every((l) => Number.isFinite(l.loss) && Number.isFinite(l.terms.vicreg)), 'finite losses');
    const killed = tinyConfig('cjepa', 'pad-killed', over);
    await pretrain(killed, { ...quiet, killAfterSteps: 3 });
    await pretrain(killed, { ...quiet, resume: true });
    const a = loadTensors(join(resolveCheckpointDir(cfg.out), 'encoder.safetensors')).tensors;
    const b = loadTensors(join(resolveCheckpointDir(killed.out), 'encoder.safetensors')).tensors;
    for (const k of Object.keys(a)) assert.equal(maxAbsDiff(a[k]!, b[k]!), 0, `encoder.${k} differs after resume`);
  } finally {
    setNumThreads(prev);
  }
});

test('cjepa.projectorInitStd sets the std of the projector\'s Linear weights; the default stays 0.02', () => {
  const weightStd = (over: Record<string, unknown>) => {
    const m = new JepaMethod(tinyConfig('cjepa', 'pinit', { cjepa: { betaVicreg: 0.1, placement: 'views', projector: [2048], ...over } }), 3);
    const std = tidy(() => m.projector!.linears[0]!.weight.std().item());
    m.dispose();
    return std;
  };
  // 2048 x 32 draws of a trunc-normal at +-2 (absolute): the sample std is within 1 % of the asked std
  const def = weightStd({}), wide = weightStd({ projectorInitStd: 0.1 });
  assert.ok(Math.abs(def - 0.02) < 0.0002, `default ${def}`);
  assert.ok(Math.abs(wide - 0.1) < 0.001, `0.1 asked, ${wide} drawn`);
  assert.throws(() => tinyConfig('cjepa', 'bad', { cjepa: { projectorInitStd: 0 } }), /'cjepa\.projectorInitStd' must be > 0, got 0/);
});

test('cjepa.teacherView augmented: a second, colour-augmented view per image reaches the teacher only; training runs', async () => {
  const over = { cjepa: { betaVicreg: 0.1, placement: 'target', teacherView: 'augmented' } };
  const method = new JepaMethod(tinyConfig('cjepa', 'tv-unit', over), 3);
  const same = new JepaMethod(tinyConfig('cjepa', 'tv-same', { cjepa: { betaVicreg: 0.1, placement: 'target' } }), 3);
  assert.equal(method.views.length, 2);
  assert.ok(method.views[1]!.jitter && method.views[1]!.grayscaleP > 0, 'the teacher view is VICReg-augmented');
  assert.equal(same.views.length, 1);
  const n = 4 * 3 * 16 * 16, a = new Float32Array(n).map((_, i) => Math.sin(i)), b = new Float32Array(n).map((_, i) => Math.cos(i * 0.7));
  const batch = (views: Float32Array[]) => ({ views, shape: [4, 3, 16, 16] as [number, number, number, number], labels: new Int32Array(4), indices: new Int32Array(4), waitMs: 0, skipped: 0, bad: [] });
  const start = same.sampler.rng.state();
  const terms = (m: JepaMethod, views: Float32Array[]) => {
    m.sampler.rng.setState(start);  // the same masks on every call
    return noGrad(() => tidy(() => Object.fromEntries(Object.entries(m.forward(batch(views), 0, 6)).map(([k, t]) => [k, t.item()]))));
  };
  // the same image twice: exactly the same-view placement; another image for the teacher: only VICReg moves
  const twin = terms(method, [a, a]), ref = terms(same, [a]), other = terms(method, [a, b]);
  for (const k of ['loss', 'jepa', 'vicreg', 'inv']) assert.ok(Math.abs(twin[k]! - ref[k]!) <= 1e-6 * Math.abs(ref[k]!), `${k}: ${twin[k]} vs ${ref[k]}`);
  assert.equal(other['jepa'], ref['jepa'], 'the JEPA loss does not see the teacher view');
  assert.ok(Math.abs(other['inv']! - ref['inv']!) > 1e-4 * Math.abs(ref['inv']!), 'the invariance term reads the teacher view');
  method.dispose(); same.dispose();
  const cfg = tinyConfig('cjepa', 'tv-run', over);
  await pretrain(cfg, quiet);
  const steps = readFileSync(join(cfg.out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.kind === 'step');
  assert.ok(steps.length === 6 && steps.every((l) => Number.isFinite(l.loss) && l.terms.vicreg > 0), 'six finite steps with the regulariser on');
});

test('cjepa.betaDecayStart/Steps: each logged loss is jepa + beta_t * vicreg (beta, then the cosine), then jepa alone', async () => {
  const cfg = tinyConfig('cjepa', 'beta-decay', { cjepa: { betaVicreg: 0.1, betaDecayStart: 1, betaDecaySteps: 3 } });
  await pretrain(cfg, quiet);
  const steps = readFileSync(join(cfg.out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.kind === 'step');
  assert.equal(steps.length, 6);
  for (const s of steps) { // logged step s is 0-based iteration s - 1
    const beta = betaVicregAt(s.step - 1, 0.1, 3, 1);
    if (s.step === 1) assert.equal(beta, 0.1, 'before the decay starts: beta itself');
    const want = s.terms.jepa + beta * s.terms.vicreg;
    assert.ok(Math.abs(s.loss - want) <= 1e-5 * Math.max(1, Math.abs(want)), `step ${s.step}: loss ${s.loss} vs jepa + ${beta} vicreg = ${want}`);
    if (s.step > 4) assert.equal(s.terms.vicreg, 0, `step ${s.step}: the regulariser is off after the decay`);
    else assert.ok(s.terms.vicreg > 0, `step ${s.step}: the regulariser is on during the decay`);
  }
  assert.match(lossFormula(cfg), /0\.1→0 over steps 1-4·vicreg/);
  assert.match(lossFormula({ ...cfg, cjepa: { ...cfg.cjepa, betaDecayStart: 0 } }), /0\.1→0 over 3 steps·vicreg/);
});

test('cjepa.betaDecayStart/Steps as shares of the run: the same losses as the step counts they round to', async () => {
  // 6 steps: '20%' -> 1 (1.2), '50%' -> 3: the run above, so its logged losses must match step for step
  const steps = readFileSync(join(tinyConfig('cjepa', 'beta-decay').out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.kind === 'step');
  const cfg = tinyConfig('cjepa', 'beta-decay-share', { cjepa: { betaVicreg: 0.1, betaDecayStart: '20%', betaDecaySteps: '50%' } });
  await pretrain(cfg, quiet);
  const shares = readFileSync(join(cfg.out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.kind === 'step');
  assert.deepEqual(shares.map((s) => s.loss), steps.map((s) => s.loss));
  assert.match(lossFormula(cfg, 6), /0\.1→0 over steps 1-4 \(16\.7%-66\.7% of 6 steps\)·vicreg/);
  assert.match(lossFormula(cfg), /0\.1→0 over 50% of the run from 20%·vicreg/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { cjepa: { betaDecayStart: '120%' } }), /'cjepa\.betaDecayStart' must be a step count or a share of the run from 0% to 100%/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { cjepa: { betaDecaySteps: 'half' } }), /'cjepa\.betaDecaySteps'/);
});

test('a non-finite loss stops training naming the step and the term, keeping the last checkpoint', async () => {
  const cfg = tinyConfig('ijepa', 'nan', { optim: { batch: 16, steps: 6, lr: 1e30, startLr: 1e30, warmupEpochs: 0 } });
  await assert.rejects(pretrain(cfg, quiet), /non-finite loss at step \d+: term 'loss'/);
});

test('bad config values are refused before any work, naming the field', () => {
  assert.throws(() => tinyConfig('cjepa', 'bad', { optim: { batch: 1 } }), /'optim\.batch' must be >= 2/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { model: { imgSize: 18 } }), /'model\.imgSize'.*divisible/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { cjepa: { placement: 'nowhere' } }), /'cjepa\.placement'/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { cjepa: { viewInput: 'half' } }), /'cjepa\.viewInput' must be context or full/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { cjepa: { teacherView: 'other' } }), /'cjepa\.teacherView' must be same or augmented/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { cjepa: { decorrelate: 'whiten' } }), /'cjepa\.decorrelate' must be one of covariance, correlation, got 'whiten'/);
  assert.throws(() => tinyConfig('vicreg', 'bad', { vicreg: { decorrelate: 'cov' } }), /'vicreg\.decorrelate'/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { cjepa: { stdTarget: 0 } }), /'cjepa\.stdTarget' must be > 0, got 0/);
  assert.throws(() => tinyConfig('vicreg', 'bad', { vicreg: { stdTarget: 'one' } }), /'vicreg\.stdTarget' must be a number/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { cjepa: { betaDecaySteps: 2.5 } }), /'cjepa\.betaDecaySteps'/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { cjepa: { betaDecaySteps: -1 } }), /'cjepa\.betaDecaySteps'/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { cjepa: { betaDecayStart: -5 } }), /'cjepa\.betaDecayStart'/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { aug: { viewScale: [0.5, 2] } }), /'aug\.viewScale\[1\]'/);
  assert.throws(() => tinyConfig('cjepa', 'bad', { optim: { lrr: 1 } }), /unknown field 'optim\.lrr'/);
  assert.throws(() => resolveConfig(undefined, { method: 'simclr' }), /'method' must be cjepa, ijepa or vicreg/);
});

test('tensors do not leak across training runs', async () => {
  // collect earlier tests' unreferenced handles first, so the count is exact
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const settle = async () => { // napi finalizers run after the GC, on a later tick
    for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setImmediate(r)); }
  };
  await settle();
  const before = liveTensors(), gcBefore = gcReleasedTensors();
  await pretrain(tinyConfig('ijepa', 'leak'), quiet);
  await settle();
  assert.equal(liveTensors(), before, 'every tensor of the run is released');
  assert.equal(gcReleasedTensors(), gcBefore, 'and released deterministically (none left to the GC)');
});

test('cjepa pretrain CLI: flags override the config file; errors are clear', () => {
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const cfgPath = join(dir, 'cfg.yaml');
  writeFileSync(cfgPath, [
    'method: vicreg', `data: "${DATA}"`, 'workers: 0', 'threads: 1',
    'model: { name: vit_tiny, patch: 4, imgSize: 16, depth: 1, embedDim: 32, numHeads: 2 }',
    'vicreg: { expander: [32, 32] }', 'masks: { minKeep: 1 }', 'optim: { batch: 16, steps: 3 }', 'log: { every: 1, monitorEvery: 0, checkpointEvery: 10 }',
  ].join('\n'));
  const out = join(dir, 'cli-run');
  const r = spawnSync(process.execPath, [cli, 'pretrain', '--config', cfgPath, '--method', 'ijepa', '--steps', '2', '--out', out,
    '--set', 'optim.ema=[0.99, 1.0]', 'masks.contextScale=[1, 1]'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const state = JSON.parse(readFileSync(join(resolveCheckpointDir(out), 'state.json'), 'utf8'));
  assert.equal(state.method, 'ijepa');
  assert.equal(state.step, 2);
  assert.deepEqual(state.config.optim.ema, [0.99, 1.0], '--set reaches any field, values in YAML');
  assert.deepEqual(state.config.masks.contextScale, [1, 1]);
  const badSet = spawnSync(process.execPath, [cli, 'pretrain', '--config', cfgPath, '--out', join(dir, 'z'), '--set', 'optim.emma=[0.9, 1]'], { encoding: 'utf8' });
  assert.equal(badSet.status, 1);
  assert.match(badSet.stderr, /unknown field 'optim\.emma'/);
  const bad = spawnSync(process.execPath, [cli, 'pretrain', '--config', cfgPath, '--img-size', '18', '--out', join(dir, 'x')], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /model\.imgSize/);
  const missing = spawnSync(process.execPath, [cli, 'pretrain', '--config', cfgPath, '--data', 'folder:/nonexistent/dir', '--out', join(dir, 'y')], { encoding: 'utf8' });
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /nonexistent/);
  // --stop-at pauses with a checkpoint and says how to go on; --resume finishes the run
  const paused = join(dir, 'cli-paused');
  const p1 = spawnSync(process.execPath, [cli, 'pretrain', '--config', cfgPath, '--out', paused, '--stop-at', '2', '--no-final-eval'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(p1.status, 0, p1.stderr);
  assert.match(p1.stderr, /paused at step 2 of 3 .*\n.*continue with the same command and --resume/);
  assert.equal(JSON.parse(readFileSync(join(resolveCheckpointDir(paused), 'state.json'), 'utf8')).step, 2);
  const p2 = spawnSync(process.execPath, [cli, 'pretrain', '--config', cfgPath, '--out', paused, '--resume', '--no-final-eval'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(p2.status, 0, p2.stderr);
  assert.match(p2.stderr, /done: 3 steps/);
  const badStop = spawnSync(process.execPath, [cli, 'pretrain', '--config', cfgPath, '--out', join(dir, 'w'), '--stop-at', '0'], { encoding: 'utf8' });
  assert.equal(badStop.status, 1);
  assert.match(badStop.stderr, /--stop-at/);
});

test('cjepa pretrain CLI killed with SIGKILL mid-run resumes from an intact checkpoint', async () => {
  const cli = CLI;
  const cfgPath = writeTinyCliConfig(join(dir, 'kill.yaml'), DATA, ['optim: { batch: 16, steps: 150 }', 'log: { every: 1, monitorEvery: 0, checkpointEvery: 2 }']);
  const out = join(dir, 'sigkill');
  const child = spawn(process.execPath, [cli, 'pretrain', '--config', cfgPath, '--out', out], { stdio: 'ignore' });
  try {
    await waitUntil(() => latestStep(out) >= 6, 60_000, 'a checkpoint at step 6');
  } finally {
    child.kill('SIGKILL');
  }
  await new Promise((r) => child.on('exit', r));
  const killedAt = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')).step as number;
  assert.ok(killedAt < 150, 'killed before the end');
  // the checkpoint the pointer names is complete and loadable
  const ck = resolveCheckpointDir(out);
  for (const f of ['encoder', 'target_encoder', 'predictor', 'optimizer']) assert.ok(Object.keys(loadTensors(join(ck, `${f}.safetensors`)).tensors).length > 0);
  const r = spawnSync(process.execPath, [cli, 'pretrain', '--config', cfgPath, '--out', out, '--resume'], { encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /resumed from .* at step \d+/);
  assert.equal(JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')).step, 150);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
