// `cjepa pretrain` as a user meets it: --version, one-line usage errors with a hint, --steps 0 and
// --device refused in one line, --resume that reads the run's config.json (architecture conflicts
// refused naming the field, empty or missing directories refused), warmup scaled to short runs, Ctrl-C
// (checkpoint, exit 130), and the progress line (rounded numbers, terminal width, ETA after a resume).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { writeQuadrantIdx } from './util/synthetic.js';
import { CLI, writeTinyCliConfig, latestStep, waitUntil } from './util/runs.js';
import { resolveConfig, resumeConfig, architectureConflict, configDiff, ARCHITECTURE_FIELDS, type PretrainConfig } from '../src/config.js';
import { pretrain, type StepLog, type RunStart } from '../src/method/trainer.js';
import { lossFormula } from '../src/method/training_method.js';
import { scaledWarmup } from '../src/method/schedulers.js';
import { fmtNum, etaSeconds, fitLine, stepLine, PretrainProgress } from '../src/cli/progress.js';
import { cudaAvailable, cpuHasBf16, runtime } from '../src/tensor/index.js';

const dir = mkdtempSync(join(tmpdir(), 'cjepa-pretrain-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const { data: DATA } = writeQuadrantIdx(dir, 64);
const PKG = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, CJEPA_THREADS: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
/** stderr's lines, without empty ones. */
const lines = (s: string) => s.split('\n').filter((l) => l.trim() !== '');

const TINY = writeTinyCliConfig(join(dir, 'tiny.yaml'), DATA, ['optim: { batch: 16, steps: 2 }', 'log: { every: 1, monitorEvery: 0, checkpointEvery: 1 }']);

// ------------------------------------------------------------------ version, usage errors

test('cjepa --version prints the package version', () => {
  for (const flag of ['--version', '-V']) {
    const r = cli(flag);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), PKG.version);
  }
});

test('usage errors print one line and a hint naming the command, not the whole help', () => {
  const cases: [string[], RegExp, string][] = [
    [['pretrain', '--stepz', '3'], /unknown option '--stepz'/, 'see cjepa pretrain --help'],
    [['pretrain', '--steps', '0'], /--steps must be an integer >= 1, got '0'/, 'see cjepa pretrain --help'],
    [['pretrain', '--epochs', '0'], /--epochs must be > 0, got '0'/, 'see cjepa pretrain --help'],
    [['eval', '--checkpoint', 'x'], /required option '--data <spec>' not specified/, 'see cjepa eval --help'],
    [['pretrian'], /unknown command 'pretrian'/, 'see cjepa --help'],
  ];
  for (const [args, error, hint] of cases) {
    const r = cli(...args);
    assert.equal(r.status, 1, args.join(' '));
    const ls = lines(r.stderr).filter((l) => !l.startsWith('(Did you mean')); // commander's suggestion, when it has one
    assert.equal(ls.length, 2, `${args.join(' ')}:\n${r.stderr}`);
    assert.match(ls[0]!, error);
    assert.equal(ls[1], hint);
    assert.doesNotMatch(r.stderr, /Usage:|Options:/);
  }
});

test('pretrain --device: an unknown name and a CUDA device this libtorch lacks are refused in one line', () => {
  const bad = cli('pretrain', '--config', TINY, '--out', join(dir, 'dev-bad'), '--device', 'gpu');
  assert.equal(bad.status, 1);
  assert.deepEqual(lines(bad.stderr), ["cjepa: unknown device 'gpu' (expected cpu, cuda or cuda:N)"]);
  const cuda = cli('pretrain', '--config', TINY, '--out', join(dir, 'dev-cuda'), '--device', 'cuda:0', '--steps', '1');
  if (cudaAvailable()) {
    assert.equal(cuda.status, 0, cuda.stderr);
    assert.match(cuda.stderr, /device cuda:0/);
  } else {
    assert.equal(cuda.status, 1);
    assert.equal(lines(cuda.stderr).length, 1, cuda.stderr);
    assert.match(cuda.stderr, /^cjepa: device 'cuda:0' requested but this libtorch has no CUDA/);
  }
  assert.ok(!existsSync(join(dir, 'dev-bad')), 'nothing written');
  const cpu = cli('pretrain', '--config', TINY, '--out', join(dir, 'dev-cpu'), '--device', 'cpu', '--steps', '1');
  assert.equal(cpu.status, 0, cpu.stderr);
});

// ------------------------------------------------------------------ resume

test('--resume on a missing or empty directory is refused in one line suggesting to drop --resume', () => {
  const missing = cli('pretrain', '--config', TINY, '--out', join(dir, 'nothing-here'), '--resume');
  assert.equal(missing.status, 1);
  assert.deepEqual(lines(missing.stderr), [`cjepa: --resume: '${join(dir, 'nothing-here')}' does not exist, so there is no run to continue; drop --resume to start a new run`]);
  assert.ok(!existsSync(join(dir, 'nothing-here')));
  mkdirSync(join(dir, 'empty'));
  const empty = cli('pretrain', '--config', TINY, '--out', join(dir, 'empty'), '--resume');
  assert.equal(empty.status, 1);
  assert.deepEqual(lines(empty.stderr), [`cjepa: --resume: '${join(dir, 'empty')}' is empty; drop --resume to start a new run there`]);
  writeFileSync(join(dir, 'empty', 'notes.txt'), 'x');
  assert.match(cli('pretrain', '--config', TINY, '--out', join(dir, 'empty'), '--resume').stderr, /holds no run \(no config\.json, no checkpoint\); drop --resume/);
});

test('--resume reads the run\'s config.json: flags override, an architecture change is refused naming the field', () => {
  const out = join(dir, 'resume');
  const first = cli('pretrain', '--config', TINY, '--out', out, '--steps', '2');
  assert.equal(first.status, 0, first.stderr);
  // no --config: the run's own config (default architecture would not fit its tensors); --steps overrides
  const more = cli('pretrain', '--out', out, '--resume', '--steps', '3');
  assert.equal(more.status, 0, more.stderr);
  assert.match(more.stderr, /resumed from .*step-0000002 at step 2/);
  assert.equal(latestStep(out), 3);
  const saved = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as PretrainConfig;
  assert.equal(saved.model.embedDim, 32, 'the run kept its architecture');
  assert.equal(saved.optim.steps, 3);
  // a flag that changes the architecture
  const deeper = cli('pretrain', '--out', out, '--resume', '--depth', '3', '--steps', '4');
  assert.equal(deeper.status, 1);
  assert.deepEqual(lines(deeper.stderr), [`cjepa: --resume: 'model.depth' is 1 in the run in '${out}' but 3 was asked for; ` +
    'a resumed run keeps its architecture (drop the flag, or start a new run with another --out)']);
  const method = cli('pretrain', '--out', out, '--resume', '--method', 'vicreg');
  assert.match(method.stderr, /^cjepa: --resume: 'method' is "cjepa" in the run .* but "vicreg" was asked for/m);
  // a --config file of another architecture
  const other = join(dir, 'other.yaml');
  writeFileSync(other, readFileSync(TINY, 'utf8').replace('predictor: { embedDim: 16, depth: 1', 'predictor: { embedDim: 16, depth: 2'));
  const file = cli('pretrain', '--config', other, '--out', out, '--resume');
  assert.equal(file.status, 1);
  assert.match(file.stderr, new RegExp(`^cjepa: --resume: 'predictor.depth' is 1 in the run in '${out}' but 2 is in ${other}`, 'm'));
  // the same --config file with other training fields: the run's config.json wins, and says so
  const longer = writeTinyCliConfig(join(dir, 'longer.yaml'), DATA, ['optim: { batch: 16, steps: 50, lr: 0.01 }', 'log: { every: 1, monitorEvery: 0, checkpointEvery: 1 }']);
  const same = cli('pretrain', '--config', longer, '--out', out, '--resume', '--steps', '4');
  assert.equal(same.status, 0, same.stderr);
  assert.match(same.stderr, /--resume: the run's config\.json wins over .*longer\.yaml for optim\.lr \(flags or --set change them\)/);
  assert.equal(latestStep(out), 4);
});

test('resumeConfig / architectureConflict: the saved config is the base, each architecture field is checked', () => {
  const saved = resolveConfig(undefined, { model: { name: 'vit_tiny', depth: 2, embedDim: 64, numHeads: 2 }, optim: { steps: 10 } });
  const r = resumeConfig(JSON.parse(JSON.stringify(saved)), [{ optim: { steps: 20 } }], 'runs/x');
  assert.equal(r.optim.steps, 20);
  assert.equal(r.model.embedDim, 64);
  assert.deepEqual(configDiff(saved, r), ['optim.steps']);
  const change: Record<string, unknown> = {
    method: 'ijepa', 'model.name': 'vit_small', 'model.patch': 8, 'model.imgSize': 64, 'model.depth': 3, 'model.embedDim': 32,
    'model.numHeads': 4, 'predictor.embedDim': 48, 'predictor.depth': 3, 'predictor.numHeads': 4, 'cjepa.placement': 'views',
    'cjepa.projector': [16], 'vicreg.expander': [32],
  };
  assert.deepEqual(Object.keys(change).sort(), [...ARCHITECTURE_FIELDS].sort(), 'every architecture field is exercised');
  for (const [field, v] of Object.entries(change)) {
    const asked = structuredClone(saved) as unknown as Record<string, Record<string, unknown>>;
    const [a, b] = field.split('.');
    if (b) asked[a!]![b] = v; else (asked as Record<string, unknown>)[a!] = v;
    const msg = architectureConflict(saved, asked as unknown as PretrainConfig, 'runs/x');
    assert.ok(msg?.startsWith(`--resume: '${field}' is `), `${field}: ${msg}`);
    assert.equal(msg!.split('\n').length, 1);
  }
  assert.equal(architectureConflict(saved, r, 'runs/x'), null);
});

// ------------------------------------------------------------------ warmup, loss formula

test('warmup is scaled to the run: over 25 % of it, cut to 10 %', () => {
  assert.deepEqual(scaledWarmup(1, 100, 1000), { steps: 100, configured: 100, capped: false });
  assert.deepEqual(scaledWarmup(1, 250, 1000), { steps: 250, configured: 250, capped: false }, '25 % exactly is kept');
  assert.deepEqual(scaledWarmup(1, 703, 1000), { steps: 100, configured: 703, capped: true });
  assert.deepEqual(scaledWarmup(1, 468, 468), { steps: 47, configured: 468, capped: true }, '--epochs 1 with one warmup epoch');
  assert.deepEqual(scaledWarmup(1, 6, 3), { steps: 1, configured: 6, capped: true }, 'at least one step');
  assert.deepEqual(scaledWarmup(0, 100, 10), { steps: 0, configured: 0, capped: false });
});

test('a short run is not all warmup: the trainer caps it, says so, and the lr decays', async () => {
  const base = {
    method: 'ijepa', data: DATA, workers: 0, threads: 1, seed: 1,
    model: { name: 'vit_tiny', patch: 4, imgSize: 16, depth: 1, embedDim: 32, numHeads: 2 }, predictor: { embedDim: 16, depth: 1, numHeads: 2 },
    masks: { minKeep: 1 }, optim: { batch: 16, epochs: 2, warmupEpochs: 1 }, log: { every: 1, monitorEvery: 0, checkpointEvery: 100 },
  };
  const msgs: string[] = [];
  let start: RunStart | undefined;
  const out = join(dir, 'warmup');
  await pretrain(resolveConfig(undefined, { ...base, out }), { onMessage: (m) => msgs.push(m), onStart: (s) => { start = s; } });
  // 64 images / batch 16 = 4 steps per epoch, 8 steps; the configured warmup of 4 is half the run
  assert.deepEqual({ ...start, loss: undefined }, { startStep: 0, totalSteps: 8, stepsPerEpoch: 4, warmupSteps: 1, warmupCapped: true, loss: undefined });
  assert.ok(msgs.some((m) => /^warmup: 1 steps \(the configured 4 = 1 epoch\(s\) would be over 25 % of this 8-step run; --set optim\.scaleWarmup=false keeps it\)$/.test(m)), msgs.join('\n'));
  const lrs = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as StepLog).lr);
  assert.equal(Math.max(...lrs), lrs[0], 'the peak after the one warmup step');
  assert.ok(lrs[7]! < lrs[0]! / 2, `the lr decays: ${lrs.join(', ')}`);
  // optim.scaleWarmup: false keeps the configured warmup
  let kept: RunStart | undefined;
  await pretrain(resolveConfig(undefined, { ...base, out: join(dir, 'warmup-kept'), optim: { ...base.optim, scaleWarmup: false } }), { onMessage: () => {}, onStart: (s) => { kept = s; } });
  assert.equal(kept!.warmupSteps, 4);
  assert.equal(kept!.warmupCapped, false);
});

test('bf16 forced on a CPU without AVX512-BF16 / AMX is warned about (libtorch emulates it there); not where the CPU has them', async () => {
  const msgs: string[] = [];
  const cfg = {
    method: 'ijepa', data: DATA, workers: 0, threads: 1, seed: 1, precision: 'bf16', out: join(dir, 'bf16-warn'),
    model: { name: 'vit_tiny', patch: 4, imgSize: 16, depth: 1, embedDim: 32, numHeads: 2 }, predictor: { embedDim: 16, depth: 1, numHeads: 2 },
    masks: { minKeep: 1 }, optim: { batch: 16, steps: 1 }, log: { every: 1, monitorEvery: 0, checkpointEvery: 100 },
  };
  await pretrain(resolveConfig(undefined, cfg), { onMessage: (m) => msgs.push(m) });  // restores the caller's precision
  assert.ok(msgs.includes('precision: bf16 autocast for the network forwards (weights, optimiser, losses fp32)'), msgs.join('\n'));
  const warned = msgs.some((m) => /^warning: this CPU has no AVX512-BF16 or AMX: libtorch emulates bf16 here/.test(m));
  assert.equal(warned, !cpuHasBf16(), `warned: ${warned}, CPU has bf16 units: ${cpuHasBf16()}`);
  assert.equal(runtime.precision, 'fp32', 'the run restored the precision it found');
});

test('the loss formula names the weighted terms', () => {
  assert.equal(lossFormula(resolveConfig(undefined, { method: 'cjepa', cjepa: { betaVicreg: 0.1 } })),
    'loss = jepa + 0.1·vicreg (jepa: smooth L1; vicreg = 25·inv + 25·var + 1·cov, placement context)');
  assert.equal(lossFormula(resolveConfig(undefined, { method: 'ijepa' })), "loss = jepa (smooth L1 to the target encoder's blocks)");
  assert.equal(lossFormula(resolveConfig(undefined, { method: 'vicreg', vicreg: { inv: 25, var: 25, cov: 1 } })), 'loss = 25·inv + 25·var + 1·cov');
  assert.equal(lossFormula(resolveConfig(undefined, { method: 'vicreg', vicreg: { stdTarget: 0.5 } })), 'loss = 25·inv + 25·var(std ≥ 0.5) + 1·cov');
});

// ------------------------------------------------------------------ Ctrl-C

test('Ctrl-C (SIGINT): the step finishes, a checkpoint is written, exit status 130; the run resumes', async () => {
  const cfg = writeTinyCliConfig(join(dir, 'sigint.yaml'), DATA, ['optim: { batch: 16, steps: 100000 }', 'log: { every: 1, monitorEvery: 0, checkpointEvery: 100000 }']);
  const out = join(dir, 'sigint');
  const child = spawn(process.execPath, [CLI, 'pretrain', '--config', cfg, '--out', out], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CJEPA_THREADS: '1' } });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await waitUntil(() => /^step \d+\/100000/m.test(stderr), 60_000, 'the first step line');
  child.kill('SIGINT');
  const code = await exited;
  assert.equal(code, 130, stderr);
  const step = latestStep(out);
  assert.ok(step >= 1, 'a checkpoint was written on the way out');
  assert.match(stderr, /interrupt: finishing this step and writing a checkpoint \(press Ctrl-C again to quit now\)/);
  assert.match(stderr, new RegExp(`stopped at step ${step}; checkpoint `));
  assert.match(stderr, /continue with the same command and --resume/);
  const resumed = cli('pretrain', '--out', out, '--resume', '--steps', String(step + 1));
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.equal(latestStep(out), step + 1);
  assert.match(resumed.stderr, new RegExp(`continuing from step ${step}`));
});

// ------------------------------------------------------------------ the progress line

const log = (o: Partial<StepLog> = {}): StepLog => ({
  kind: 'step', step: 60, epoch: 1, loss: 0.41234567, terms: { jepa: 0.40111111, vicreg: 12.3456789, inv: 0.0123456, var: 0.5, cov: 0.00001234 },
  lr: 1e-3, wd: 0.04, momentum: 0.996, imgs_per_s: 512.345, data_wait_ms: 0.08681800000067597, step_ms: 100, skipped: 0, live_tensors: 0, time_s: 10, ...o,
});

test('numbers are rounded for people', () => {
  assert.equal(fmtNum(0.08681800000067597), '0.08682');
  assert.equal(fmtNum(12.3456789), '12.35');
  assert.equal(fmtNum(1234.5), '1235');
  assert.equal(fmtNum(0.00001234), '1.23e-5');
  assert.equal(fmtNum(3), '3');
  const line = stepLine(log(), 100, 40, 1000, false);
  assert.equal(line, 'step 60/100 | epoch 1 | loss 0.4123 | jepa 0.4011 | vicreg 12.35 | inv 0.01235 | var 0.5 | cov 1.23e-5 | 512 img/s | wait 0.08682 ms | ETA 0m40s');
});

test('the progress line fits the width: the wait goes first, then the terms (last first), the epoch, images/s', () => {
  for (const w of [200, 120, 80, 60, 40, 30, 20]) {
    const s = stepLine(log(), 100, 40, w, false);
    assert.ok(s.length <= w, `${w}: ${s}`);
    assert.match(s, /^step 60\/100/);
  }
  assert.equal(stepLine(log(), 100, 40, 100, false), 'step 60/100 | epoch 1 | loss 0.4123 | jepa 0.4011 | vicreg 12.35 | 512 img/s | ETA 0m40s');
  assert.equal(stepLine(log(), 100, 40, 60, false), 'step 60/100 | epoch 1 | loss 0.4123 | 512 img/s | ETA 0m40s');
  assert.equal(stepLine(log(), 100, 40, 40, false), 'step 60/100 | loss 0.4123 | ETA 0m40s');
  assert.equal(fitLine([{ text: 'a'.repeat(30), drop: 0 }], 10), `${'a'.repeat(9)}…`);
  const withBar = stepLine(log(), 100, 40, 120, true);
  assert.ok(withBar.length <= 120 && /^step 60\/100 █+░+ \| /.test(withBar), withBar);
});

test('ETA counts from the resumed step, not from 0', () => {
  // resumed at 50, 10 steps in 10 s, 40 to go
  assert.equal(etaSeconds(60, 50, 100, 10), 40);
  assert.equal(etaSeconds(60, 0, 100, 10), 40 * 10 / 60);
  assert.ok(Number.isNaN(etaSeconds(50, 50, 100, 1)));
});

/** A terminal-like stream that records what is written. */
function fakeTerminal(columns: number) {
  const chunks: string[] = [];
  const s = new Writable({ write(c, _e, cb) { chunks.push(String(c)); cb(); } }) as Writable & { isTTY: boolean; columns: number };
  s.isTTY = true;
  s.columns = columns;
  return { stream: s, text: () => chunks.join('') };
}

test('on a terminal: a bar within the width, ETA from the resumed step, messages stop the bar first', () => {
  const t = fakeTerminal(90);
  const p = new PretrainProgress({ stream: t.stream });
  p.start({ startStep: 50, totalSteps: 100, stepsPerEpoch: 10, warmupSteps: 10, warmupCapped: false, loss: 'loss = jepa + 0.1·vicreg' });
  p.onLog(log({ step: 60, time_s: 10 }), 100);
  p.message('interrupt: finishing this step');
  p.stop();
  const out = t.text();
  assert.match(out, /loss = jepa \+ 0\.1·vicreg; 100 steps \(10 per epoch\), warmup 10; continuing from step 50\n/);
  assert.match(out, /ETA 0m40s/);
  // eslint-disable-next-line no-control-regex
  const drawn = out.split(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]|\r|\n/).filter((l) => l.startsWith('step 60/100'));
  assert.ok(drawn.length > 0 && drawn.every((l) => l.length <= 89), drawn.join('\n'));
  const bar = out.lastIndexOf('step 60/100'), msg = out.indexOf('interrupt: finishing');
  assert.ok(bar < msg && /\n/.test(out.slice(bar, msg)), 'the bar line ended before the message');
  assert.ok(!out.slice(msg).includes('step 60/100'), 'no bar drawn over or after the message');
});
