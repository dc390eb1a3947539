// Nothing lost, nothing crashes (issue 13): thousands of bad calls into the binding and the readers
// (in child processes: an abort is counted, and must not happen), two writers on one run directory,
// damaged checkpoints (bit flips, truncations, a lost file) falling back to the newest intact one,
// SIGKILL at random moments with a byte-identical resume, and a full disk during a checkpoint.
// Figures are printed as `# reliability: ...` lines; README "Reliability" quotes them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeQuadrantIdx } from './util/synthetic.js';
import { CLI, writeTinyCliConfig, latestStep, waitUntil } from './util/runs.js';
import { prng } from './util/fuzz_child.js';
import { resolveConfig, type PretrainConfig } from '../src/config.js';
import { pretrain, type PretrainOptions, type PretrainResult } from '../src/method/trainer.js';
import { acquireRunLock, LOCK_FILE } from '../src/method/run_lock.js';
import { resolveIntactCheckpoint, checkpointProblem, readCheckpointState } from '../src/method/checkpoint.js';
import { getNumThreads, setNumThreads, ones, zeros, F, type Tensor } from '../src/tensor/index.js';
import { saveTensors, loadTensors } from '../src/io/tensors.js';

const dir = mkdtempSync(join(tmpdir(), 'cjepa-reliability-'));
const { data: DATA } = writeQuadrantIdx(dir, 96);
const CHILD = fileURLToPath(new URL('./util/fuzz_child.js', import.meta.url));
const quiet = { onMessage: () => {} };

/** pretrain in this process (the run's `threads: 1` is undone afterwards). */
async function pretrainHere(cfg: PretrainConfig, o: PretrainOptions = quiet): Promise<PretrainResult> {
  const prev = getNumThreads();
  try {
    return await pretrain(cfg, o);
  } finally {
    setNumThreads(prev);
  }
}
test.after(() => rmSync(dir, { recursive: true, force: true }));

// ------------------------------------------------------------------ fuzz: bad calls, counted aborts

interface Batch { calls: number; threw: number; returned: number; bad: string[]; aborts: string[] }

/** Runs one batch in child processes; after an abort the next child resumes at the following case. */
function runBatch(mode: string, seed: number, count: number): Batch {
  const agg: Batch = { calls: 0, threw: 0, returned: 0, bad: [], aborts: [] };
  for (let first = 0, children = 0; children < 50; children++) {
    const r = spawnSync(process.execPath, [CHILD, mode, String(seed), String(first), String(count), join(dir, `fuzz-${mode}-${seed}`)],
      { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 });
    if (r.status === 0) {
      const s = JSON.parse(r.stdout.trim().split('\n').pop()!) as Batch;
      agg.calls += s.calls; agg.threw += s.threw; agg.returned += s.returned; agg.bad.push(...s.bad);
      return agg;
    }
    const last = Number(r.stderr.trim().split('\n').filter((l) => /^\d+$/.test(l)).pop() ?? first);
    agg.calls += last - first + 1; // the cases before it ran too (their outcomes died with the child)
    agg.aborts.push(`${mode} case ${last}: ${r.signal ?? `exit ${r.status}`} ${r.stderr.slice(-300)}`);
    first = last + 1;
  }
  throw new Error(`${mode}: too many aborts (${agg.aborts.length})`);
}

test('the fuzz harness counts an abort (SIGFPE) and carries on after it', () => {
  const b = runBatch('selftest', 0, 5);
  assert.equal(b.calls, 5);
  assert.equal(b.aborts.length, 1);
  assert.match(b.aborts[0]!, /case 2: SIGFPE/);
});

test('>= 1,000 bad calls into the binding and >= 500 into the safetensors and checkpoint readers: no abort, every error clear', () => {
  const t0 = Date.now();
  const binding = runBatch('binding', 1, 2600);
  const readers = runBatch('readers', 1, 700);
  console.log(`# reliability: fuzz ${binding.calls} binding calls (${binding.threw} threw, ${binding.returned} returned) + ` +
    `${readers.calls} reader calls (${readers.threw} threw), aborts ${binding.aborts.length + readers.aborts.length}, ${Date.now() - t0} ms`);
  assert.deepEqual([...binding.aborts, ...readers.aborts], []);
  assert.deepEqual([...binding.bad, ...readers.bad], []);
  assert.ok(binding.calls >= 1000 && readers.calls >= 500);
});

test('issue 13 regressions: exact integer remainder by -1, clear errors for devices, null operands, prototype keys', () => {
  // in a child: before the fix these calls killed the process with SIGFPE
  const engine = new URL('../src/tensor/index.js', import.meta.url).href;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `
    import * as T from '${engine}';
    const out = [T.tensor(new Int32Array([-(2 ** 31), 7])).remainder(-1).toArray(),
      T.tensor(new BigInt64Array([-(2n ** 63n), 5n])).remainder(T.tensor(new BigInt64Array([-1n, -1n]))).toArray(),
      T.tensor(new Int32Array([-7, 7])).remainder(-3).toArray()];
    let zero = ''; try { T.tensor(new Int32Array([1])).remainder(0); } catch (e) { zero = e.message; }
    console.log(JSON.stringify({ out, zero }));`], { encoding: 'utf8' });
  assert.equal(r.signal, null, r.stderr);
  const { out, zero } = JSON.parse(r.stdout) as { out: number[][]; zero: string };
  assert.deepEqual(out, [[0, 0], [0, 0], [-1, -2]]); // Python's sign convention: the divisor's sign
  assert.match(zero, /remainder.*integer remainder by zero/);
  assert.throws(() => ones([2]).to(null, 'cpu:1'), /no such device 'cpu:1'/);
  assert.throws(() => ones([2]).mul(null as never), /mul: argument 'other' must be a Tensor or a number, got null/);
  assert.throws(() => ones([2, 2]).matmul(undefined as never), /matmul: argument 'other' must be a Tensor, got undefined/);
  assert.throws(() => F.linear(ones([2, 2]), null as never), /F\.linear: argument 'weight' must be a Tensor, got null/);
  for (const key of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
    assert.throws(() => resolveConfig(undefined, JSON.parse(`{"${key}": 1}`)), new RegExp(`unknown field '${key}'`));
  }
  const file = join(dir, 'proto.safetensors');
  saveTensors(file, Object.defineProperty({ a: ones([1]) }, '__proto__', { value: zeros([2]), enumerable: true }) as Record<string, Tensor>);
  const { tensors } = loadTensors(file);
  assert.deepEqual(Object.keys(tensors).sort(), ['__proto__', 'a']);
  assert.deepEqual(tensors['__proto__']!.shape, [2]);
  assert.equal(Object.getPrototypeOf(tensors), null);
});

// ------------------------------------------------------------------ two writers

test('run lock: a second writer is refused naming the holder; a stale lock (dead PID) does not block', async () => {
  const out = join(dir, 'lock-unit');
  mkdirSync(out);
  const a = acquireRunLock(out);
  assert.throws(() => acquireRunLock(out), new RegExp(`in use by another run: PID ${process.pid} `));
  a.release();
  a.release(); // idempotent
  assert.ok(!existsSync(join(out, LOCK_FILE)));
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!; // a PID that has exited
  writeFileSync(join(out, LOCK_FILE), JSON.stringify({ pid: dead, host: (await import('node:os')).hostname(), started: new Date().toISOString() }));
  const b = acquireRunLock(out);
  assert.equal(JSON.parse(readFileSync(join(out, LOCK_FILE), 'utf8')).pid, process.pid);
  b.release();
  writeFileSync(join(out, LOCK_FILE), JSON.stringify({ pid: 1, host: 'elsewhere', started: '2020-01-01T00:00:00Z' }));
  assert.throws(() => acquireRunLock(out), /PID 1 on elsewhere .*another machine/);
});

test('two pretrain processes on one --out: the second (fresh or --resume) is refused naming the PID; after a kill -9 a resume proceeds', async () => {
  const cfg = writeTinyCliConfig(join(dir, 'writers.yaml'), DATA, ['optim: { batch: 16, steps: 100000 }', 'log: { every: 1, monitorEvery: 0, checkpointEvery: 100000 }']);
  const out = join(dir, 'writers');
  const a = spawn(process.execPath, [CLI, 'pretrain', '--config', cfg, '--out', out], { stdio: 'ignore' });
  try {
    await waitUntil(() => existsSync(join(out, LOCK_FILE)), 60_000, 'the first run to take the lock');
    const second = (extra: string[]) => new Promise<{ status: number | null; stderr: string }>((res) => {
      const c = spawn(process.execPath, [CLI, 'pretrain', '--config', cfg, '--out', out, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      c.stderr!.on('data', (d) => { stderr += d; });
      c.on('exit', (status) => res({ status, stderr }));
    });
    const [fresh, resume] = await Promise.all([second([]), second(['--resume'])]);
    for (const r of [fresh, resume]) {
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`in use by another run: PID ${a.pid} `));
      assert.equal(r.stderr.trim().split('\n').filter((l) => l.startsWith('cjepa:')).length, 1, r.stderr);
    }
  } finally {
    a.kill('SIGKILL');
    await new Promise((r) => a.on('exit', r));
  }
  assert.ok(existsSync(join(out, LOCK_FILE)), 'a killed run leaves its lock behind');
  const steps = existsSync(join(out, 'metrics.jsonl')) ? readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l).step as number) : [];
  assert.deepEqual(steps, steps.map((_, i) => i + 1), 'metrics.jsonl holds one run only');
  assert.equal((await pretrainHere(resolveConfig(cfg, { out, optim: { steps: 2 } }), { ...quiet, resume: true })).steps, 2);
  assert.ok(!existsSync(join(out, LOCK_FILE)), 'released on return');
});

// ------------------------------------------------------------------ damaged checkpoints

function tinyRun(out: string, extra: Record<string, unknown> = {}) {
  return resolveConfig(undefined, {
    method: 'cjepa', data: DATA, out, workers: 0, threads: 1, seed: 3,
    model: { name: 'vit_tiny', patch: 4, imgSize: 16, depth: 1, embedDim: 32, numHeads: 2 },
    predictor: { embedDim: 16, depth: 1, numHeads: 2 }, masks: { minKeep: 1 },
    optim: { batch: 16, steps: 6 }, log: { every: 1, monitorEvery: 0, checkpointEvery: 2, keepCheckpoints: 3 }, ...extra,
  });
}

const filesOf = (ck: string) => readdirSync(ck).filter((f) => f.endsWith('.safetensors')).sort();
const sameBytes = (a: string, b: string) => Buffer.compare(readFileSync(a), readFileSync(b)) === 0;

test('checkpoint bit flips, truncations and a lost file are detected; resume falls back to the newest intact checkpoint', async () => {
  const ref = join(dir, 'damage-ref');
  await pretrainHere(tinyRun(ref)); // checkpoints at steps 2, 4, 6
  const ck = (out: string, step: number) => join(out, 'checkpoints', `step-000000${step}`);
  assert.equal(checkpointProblem(ck(ref, 6)), undefined);
  const rand = prng(13);
  const damages: Array<[string, (c: string) => void, RegExp]> = [];
  for (const f of filesOf(ck(ref, 6))) {
    damages.push([`bit flip in ${f}`, (c) => {
      const b = readFileSync(join(c, f));
      b[Math.floor(rand() * b.length)] ^= 1 << Math.floor(rand() * 8);
      writeFileSync(join(c, f), b);
    }, new RegExp(`${f} fails its sha256 check`)]);
    damages.push([`truncated ${f}`, (c) => truncateSync(join(c, f), Math.floor(rand() * 1000)), new RegExp(`${f} has \\d+ bytes`)]);
  }
  damages.push(['lost predictor.safetensors', (c) => unlinkSync(join(c, 'predictor.safetensors')), /predictor\.safetensors is missing/]);
  damages.push(['truncated state.json', (c) => truncateSync(join(c, 'state.json'), 40), /state\.json' is unreadable/]);
  damages.push(['state.json step "abc"', (c) => {
    const st = JSON.parse(readFileSync(join(c, 'state.json'), 'utf8'));
    writeFileSync(join(c, 'state.json'), JSON.stringify({ ...st, step: 'abc' }));
  }, /'step' must be a non-negative integer, got "abc"/]);
  damages.push(['state.json step 1e18', (c) => {
    const st = JSON.parse(readFileSync(join(c, 'state.json'), 'utf8'));
    writeFileSync(join(c, 'state.json'), JSON.stringify({ ...st, step: 1e18 }));
  }, /'step' must be a non-negative integer/]);
  for (const [i, [what, damage, problem]] of damages.entries()) {
    const run = join(dir, `damaged-${i}`);
    cpSync(ref, run, { recursive: true });
    damage(ck(run, 6));
    assert.match(checkpointProblem(ck(run, 6)) ?? 'intact', problem, what);
    const warnings: string[] = [];
    assert.equal(resolveIntactCheckpoint(run, (m) => warnings.push(m)), ck(run, 4), what);
    assert.match(warnings.join('\n'), /skipped damaged checkpoint.*step-0000006.*Resuming from step-0000004/, what);
  }
  assert.throws(() => readCheckpointState(join(dir, 'damaged-0', 'nowhere')), /has no state\.json/);
  // a resume over a flipped newest checkpoint ends byte-identical to the undamaged run
  const run = join(dir, 'damaged-0');
  const messages: string[] = [];
  await pretrainHere(tinyRun(run), { resume: true, onMessage: (m) => messages.push(m) });
  assert.match(messages.join('\n'), /skipped damaged checkpoint/);
  assert.equal(checkpointProblem(ck(run, 6)), undefined, 'the damaged checkpoint was rewritten');
  for (const f of filesOf(ck(ref, 6))) assert.ok(sameBytes(join(ck(ref, 6), f), join(ck(run, 6), f)), `${f} differs from the undamaged run`);
  console.log(`# reliability: ${damages.length} damaged checkpoints (bit flips, truncations, lost file, bad state.json): all detected, all fell back to the previous one`);
});

// ------------------------------------------------------------------ kill -9 at random moments

/** The step of the last line of metrics.jsonl (-1 if none). */
function lastLoggedStep(out: string): number {
  try {
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
    return (JSON.parse(lines[lines.length - 1]!) as { step: number }).step;
  } catch {
    return -1;
  }
}

const KILLS = 5; // each kill costs a CLI start (~2 s on the 2-core CI machine); 20 would add ~40 s

test(`SIGKILL at ${KILLS} random moments, resumed each time: the final checkpoint is byte-identical to an uninterrupted run`, async () => {
  const steps = 32; // each kill cycle advances at most 2 + 3 + 1 steps
  const cfgPath = writeTinyCliConfig(join(dir, 'kill9.yaml'), DATA, [`optim: { batch: 16, steps: ${steps} }`, 'log: { every: 1, monitorEvery: 0, checkpointEvery: 2 }']);
  const ref = join(dir, 'kill9-ref'), out = join(dir, 'kill9');
  await pretrainHere(resolveConfig(cfgPath, { out: ref }));
  const rand = prng(2024);
  const delays: string[] = [];
  let kills = 0;
  for (let k = 0; k < KILLS + 10 && kills < KILLS; k++) {
    const before = latestStep(out);
    const child: ChildProcess = spawn(process.execPath, [CLI, 'pretrain', '--config', cfgPath, '--out', out, ...(before >= 0 ? ['--resume'] : [])], { stdio: 'ignore' });
    const exited = new Promise((r) => child.on('exit', r));
    let done = false;
    void exited.then(() => { done = true; });
    // the moment: a random number of steps (0-3) after this child's first checkpoint, plus 0-40 ms
    await waitUntil(() => done || latestStep(out) > before, 60_000, 'a new checkpoint');
    const ck = latestStep(out), after = Math.floor(rand() * 4), delay = Math.floor(rand() * 40);
    await waitUntil(() => done || lastLoggedStep(out) >= ck + after, 60_000, `step ${ck + after}`);
    await new Promise((r) => setTimeout(r, delay));
    if (!done) { child.kill('SIGKILL'); kills++; delays.push(`step ${ck + after} + ${delay} ms`); }
    await exited;
    if (latestStep(out) >= steps) break;
  }
  assert.equal(kills, KILLS, 'every kill landed before the end of the run');
  const fin = spawnSync(process.execPath, [CLI, 'pretrain', '--config', cfgPath, '--out', out, '--resume'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(fin.status, 0, fin.stderr);
  const last = join('checkpoints', `step-${String(steps).padStart(7, '0')}`);
  for (const f of filesOf(join(ref, last))) assert.ok(sameBytes(join(ref, last, f), join(out, last, f)), `${f} differs after ${kills} kills`);
  const state = (o: string) => { const s = readCheckpointState(join(o, last)); delete (s.config as { out?: string }).out; return s; };
  assert.deepEqual(state(out), state(ref));
  const losses = (o: string) => readFileSync(join(o, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).map((l) => [l.step, l.loss]);
  assert.deepEqual(losses(out), losses(ref), 'metrics: every step once, same losses');
  const leftovers = readdirSync(join(out, 'checkpoints')).filter((d) => d.includes('.tmp-'));
  assert.deepEqual(leftovers, []);
  console.log(`# reliability: ${kills} SIGKILLs (at ${delays.join(', ')}), ${kills} resumes, final checkpoint byte-identical: yes`);
});

// ------------------------------------------------------------------ disk full

test('disk full during a checkpoint: one clear error, previous checkpoint intact, no temp files; resume after freeing space', async (t) => {
  const mnt = join(dir, 'small-disk');
  mkdirSync(mnt);
  // a checkpoint of the tiny model is ~330 KB: room for two, the third fills the disk
  const mounted = process.getuid?.() === 0 && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=900k', 'tmpfs', mnt]).status === 0;
  if (!mounted) { t.skip('needs root to mount a small tmpfs'); return; }
  try {
    const cfgPath = writeTinyCliConfig(join(dir, 'full.yaml'), DATA, ['optim: { batch: 16, steps: 5 }', 'log: { every: 1, monitorEvery: 0, checkpointEvery: 1 }']);
    const out = join(mnt, 'run');
    const r = spawnSync(process.execPath, [CLI, 'pretrain', '--config', cfgPath, '--out', out], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /ENOSPC/);
    const errorLines = r.stderr.split('\n').filter((l) => l.startsWith('cjepa:'));
    assert.equal(errorLines.length, 1, r.stderr);
    const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? [e.name, ...walk(join(d, e.name))] : [e.name]));
    assert.deepEqual(walk(out).filter((f) => /\.tmp-|\.stale-|run\.lock/.test(f)), [], 'no temp files or lock left');
    const step = latestStep(out);
    assert.ok(step >= 1, 'a checkpoint was written before the disk filled');
    assert.equal(resolveIntactCheckpoint(out, (m) => assert.fail(m)), join(out, 'checkpoints', `step-${String(step).padStart(7, '0')}`));
    assert.equal(spawnSync('mount', ['-o', 'remount,size=4m', mnt]).status, 0);
    await pretrainHere(resolveConfig(cfgPath, { out }), { ...quiet, resume: true });
    assert.equal(latestStep(out), 5);
    console.log(`# reliability: disk full at step ${step + 1}: "${errorLines[0]!.slice(0, 160)}"; resumed to the end after remounting bigger`);
  } finally {
    spawnSync('umount', [mnt]);
  }
});
