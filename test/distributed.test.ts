// Data-parallel pretraining on c10d (Gloo, loopback): the binding's collectives on 2 processes, the
// equivalence of 2 ranks x batch B with 1 rank x batch 2B (loss curves and final weights, for I-JEPA,
// C-JEPA and VICReg), and faults: a killed or hung rank is named by the others within the timeout,
// the launcher stops the rest and exits non-zero, and --resume completes with the same or another
// number of ranks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { writeQuadrantIdx } from './util/synthetic.js';
import { CLI, latestStep, waitUntil } from './util/runs.js';
import { loadTensors } from '../src/io/tensors.js';
import { resolveCheckpointDir } from '../src/method/checkpoint.js';
import { c10dInfo, ProcessGroup } from '../src/distributed/process_group.js';
import { distEnvFrom, freePort } from '../src/distributed/launch.js';
import { maxAbsDiff } from './util/pytorch.js';

const dir = mkdtempSync(join(tmpdir(), 'cjepa-dist-'));
process.env['CJEPA_DATA'] ??= join(dir, 'cache');
const { data: DATA } = writeQuadrantIdx(dir, 96);
const BINDING_CHILD = fileURLToPath(new URL('./util/dist_binding_child.js', import.meta.url));

interface Done { code: number | null; signal: NodeJS.Signals | null; out: string; err: string; ms: number }

/** Starts a process; `done` resolves when it exits (killed after limitMs so a test never hangs). */
function start(args: string[], env: Record<string, string> = {}, limitMs = 90_000, detached = false): { child: ChildProcess; done: Promise<Done>; err: () => string } {
  const t0 = Date.now();
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached });
  let out = '', err = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { err += d; });
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  const done = new Promise<Done>((resolve) => child.on('exit', (code, signal) => {
    clearTimeout(timer);
    resolve({ code, signal, out, err, ms: Date.now() - t0 });
  }));
  return { child, done, err: () => err };
}

/** A tiny run's YAML config: `fields` (top-level YAML lines) replace the defaults of the same key. */
function tinyConfig(name: string, fields: string[]): string {
  const base: Record<string, string> = {
    // fp32: the equivalence below is stated at float32's noise floor (the default 'auto' is bf16 on AMX CPUs)
    method: 'cjepa', data: `"${DATA}"`, workers: '0', threads: '1', seed: '5', masks: '{ minKeep: 1 }', precision: 'fp32',
    model: '{ name: vit_tiny, patch: 4, imgSize: 16, depth: 1, embedDim: 32, numHeads: 2 }',
    predictor: '{ embedDim: 16, depth: 1, numHeads: 2 }',
  };
  for (const f of fields) { const i = f.indexOf(':'); base[f.slice(0, i).trim()] = f.slice(i + 1).trim(); }
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, Object.entries(base).map(([k, v]) => `${k}: ${v}`).join('\n'));
  return path;
}

test('this build has c10d with Gloo (libgloo-dev is in the dev setup)', () => {
  const info = c10dInfo();
  assert.equal(info.c10d, true, info.reason);
  assert.equal(info.gloo, true);
  const setup = readFileSync(fileURLToPath(new URL('../../scripts/setup-debian.sh', import.meta.url)), 'utf8');
  assert.match(setup, /DEV_PKGS="[^"]*libgloo-dev/);
});

test('bad distributed input is refused with a clear error', () => {
  assert.throws(() => ProcessGroup.init({ rank: 2, worldSize: 2, masterAddr: '127.0.0.1', masterPort: 29500 }), /rank must be an integer in \[0, 2\)/);
  assert.throws(() => ProcessGroup.init({ rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: 70000 }), /master port/);
  assert.throws(() => distEnvFrom({ RANK: '0' }), /RANK and WORLD_SIZE must be set together/);
  assert.throws(() => distEnvFrom({ RANK: '3', WORLD_SIZE: '2' }), /RANK=3 must be below WORLD_SIZE=2/);
  assert.equal(distEnvFrom({}), null);
  assert.deepEqual(distEnvFrom({ RANK: '1', WORLD_SIZE: '4', LOCAL_RANK: '1', MASTER_ADDR: 'node0', MASTER_PORT: '1234' }),
    { rank: 1, worldSize: 4, localRank: 1, masterAddr: 'node0', masterPort: 1234 });
});

test('launcher flags: several nodes need --master-addr, the node rank must fit', async () => {
  const cfg = tinyConfig('flags', []);
  const base = [CLI, 'pretrain', '--config', cfg, '--out', join(dir, 'flags'), '--nproc', '2'];
  const a = await start([...base, '--nnodes', '2', '--node-rank', '1']).done;
  assert.equal(a.code, 1);
  assert.match(a.err, /--nnodes > 1 needs --master-addr/);
  const b = await start([...base, '--nnodes', '2', '--node-rank', '2', '--master-addr', '127.0.0.1']).done;
  assert.equal(b.code, 1);
  assert.match(b.err, /--node-rank must be in \[0, 2\), got 2/);
  assert.ok(!existsSync(join(dir, 'flags')), 'nothing was started');
});

test('a rank whose peers never come fails the rendezvous within the timeout, naming the address', async () => {
  const port = await freePort();
  const t0 = Date.now();
  assert.throws(() => ProcessGroup.init({ rank: 1, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 1500 }),
    new RegExp(`rank 1/2: rendezvous at 127.0.0.1:${port} failed within 1.5 s`));
  assert.ok(Date.now() - t0 < 15_000, `took ${Date.now() - t0} ms`);
});

test('binding on 2 processes: all-reduce, bucketed mean, broadcast, all-gather with gradient, barrier; VICReg + SyncBatchNorm gradients', async () => {
  const port = await freePort();
  const runs = [0, 1].map((r) => start([BINDING_CHILD, String(r), '2', String(port)]));
  const res = await Promise.all(runs.map((r) => r.done));
  for (const r of res) assert.equal(r.code, 0, r.err);
  const outs = res.map((r) => JSON.parse(r.out.trim().split('\n').pop()!) as Record<string, unknown>).sort((a, b) => (a.rank as number) - (b.rank as number));
  for (const o of outs) {
    assert.deepEqual(o.allReduce, [3, 30]); // (1 + 2), 10 (1 + 2)
    assert.equal(o.allReduceMax, 1);
    assert.equal(o.buckets, 2); // an 8-byte cap: one bucket per tensor
    assert.deepEqual(o.mean, [[0.5, 1, 3], [2, 1, 1, 0.5]]);
    assert.deepEqual(o.broadcast, [8, -1]); // rank 1's values
    assert.deepEqual(o.gatheredShape, [4, 3]);
    const expected = [0, 1].flatMap((r) => [0, 1].flatMap((row) => [0, 1, 2].map((c) => r + row / 10 + c / 100)));
    (o.gathered as number[]).forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) < 1e-6, `gathered[${i}] = ${v}`));
    // analytic: d/dx_r sum_ranks sum(w_q * gathered) = sum_q w_q[rows of r], w_q[i] = (i + 1)(q + 1)
    const r = o.rank as number;
    const analytic = Array.from({ length: 6 }, (_, k) => (r * 6 + k + 1) * (1 + 2));
    assert.deepEqual(o.grad, analytic);
    // data-parallel gradient = one process's gradient on the global batch (float32 round-off)
    assert.ok((o.vicregGradRelErr as number) < 1e-5, `VICReg+SyncBN gradient rel. error ${o.vicregGradRelErr as number}`);
    assert.ok((o.localStatsRelErr as number) > 1e-2, `per-rank statistics should differ (${o.localStatsRelErr as number})`);
    assert.ok((o.runningMeanErr as number) < 1e-6);
    assert.equal(o.barrier, true);
  }
});

// ------------------------------------------------------------------ equivalence

interface StepLine { kind: string; step: number; loss: number; terms: Record<string, number> }
const steps = (out: string) => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StepLine).filter((l) => l.kind === 'step');

/** Per tensor: max |a - b| / max(max |b|, 0.02) (0.02, the init std: a floor for tensors near 0), over two final checkpoints. */
function checkpointDiffs(a: string, b: string): Map<string, number> {
  const da = resolveCheckpointDir(a), db = resolveCheckpointDir(b);
  const out = new Map<string, number>();
  for (const f of ['encoder', 'target_encoder', 'predictor', 'projector', 'expander', 'optimizer']) {
    if (!existsSync(join(db, `${f}.safetensors`))) continue;
    const ta = loadTensors(join(da, `${f}.safetensors`)).tensors, tb = loadTensors(join(db, `${f}.safetensors`)).tensors;
    assert.deepEqual(Object.keys(ta).sort(), Object.keys(tb).sort());
    for (const k of Object.keys(tb)) {
      if (tb[k]!.dtype !== 'float32') continue;
      const scale = Math.max(...tb[k]!.abs().toArray().map(Number), 0.02);
      out.set(`${f}.${k}`, maxAbsDiff(ta[k]!, tb[k]!) / scale);
    }
  }
  return out;
}

/*
 * Tolerance. Loss curves: 1e-5 relative at every step. Final weights and optimiser moments: per tensor,
 * 1e-5 relative, or 10x the float32 noise floor of that tensor when larger (both doubled for AdamW's exp_avg_sq,
 * a sum of squared gradients). The floor is measured: the
 * same 1-rank run with 2 threads instead of 1, which only sums in another order, as the 2-rank run
 * does (gradient all-reduce, matmuls over half the rows). The floor matters for parameters whose true
 * gradient is ~0 (a Linear bias before a BatchNorm, the attention key bias, the encoder's last
 * LayerNorm bias under VICReg): AdamW divides their float32-noise gradients by sqrt(v) and takes
 * lr-sized steps either way. AdamW's eps is 1e-3 in these runs to keep such noise steps small.
 */
const TOL = 1e-5;

const CASES: [string, string[]][] = [
  ['ijepa', ['method: ijepa']],
  ['cjepa (context placement)', ['cjepa: { betaVicreg: 0.1 }']],
  ['cjepa (views placement, BatchNorm projector)', ['cjepa: { betaVicreg: 0.1, placement: views, projector: [48, 24] }']],
  ['cjepa (block-pair placement)', ['cjepa: { betaVicreg: 0.1, placement: block-pair }']],
  ['cjepa (patch placement)', ['cjepa: { betaVicreg: 0.1, placement: patch }', 'masks: { minKeep: 1, nTargets: 2 }']],
  ['vicreg (BatchNorm expander)', ['method: vicreg', 'vicreg: { expander: [48, 24] }']],
];

for (const [name, extra] of CASES) {
  test(`equivalence, ${name}: 2 ranks x batch 8 = 1 rank x batch 16 (curves ${TOL} relative; weights ${TOL} or 10x the float32 floor)`, async () => {
    const slug = name.replace(/\W+/g, '-');
    const cfg = tinyConfig(slug, [...extra, 'optim: { steps: 8, warmupEpochs: 0.3, eps: 1.0e-3 }', 'log: { every: 1, monitorEvery: 0, checkpointEvery: 4 }']);
    const one = join(dir, `${slug}-1`), two = join(dir, `${slug}-2`), floorRun = join(dir, `${slug}-threads`);
    const common = ['pretrain', '--config', cfg, '--no-final-eval'];
    const r1 = await start([CLI, ...common, '--batch', '16', '--out', one]).done;
    assert.equal(r1.code, 0, r1.err);
    const rt = await start([CLI, ...common, '--batch', '16', '--threads', '2', '--out', floorRun]).done;
    assert.equal(rt.code, 0, rt.err);
    const r2 = await start([CLI, ...common, '--batch', '8', '--nproc', '2', '--out', two]).done;
    assert.equal(r2.code, 0, r2.err);
    assert.match(r2.err, /2 ranks \(global batch 16\)/);
    const a = steps(one), b = steps(two);
    assert.equal(b.length, 8); // 96 images / 16 per global batch = 6 steps per epoch: the run crosses an epoch
    for (let i = 0; i < a.length; i++) {
      for (const k of ['loss', ...Object.keys(a[i]!.terms)]) {
        const x = k === 'loss' ? a[i]!.loss : a[i]!.terms[k]!, y = k === 'loss' ? b[i]!.loss : b[i]!.terms[k]!;
        assert.ok(Math.abs(x - y) <= TOL * Math.max(Math.abs(x), 1e-3), `step ${i + 1} ${k}: 1 rank ${x} vs 2 ranks ${y}`);
      }
    }
    const dist = checkpointDiffs(two, one), floor = checkpointDiffs(floorRun, one);
    assert.ok(dist.size > 10);
    // exp_avg_sq sums squared gradients: twice their relative error, so twice both bounds
    const bound = (k: string) => (k.includes('exp_avg_sq.') ? 2 : 1) * Math.max(TOL, 10 * floor.get(k)!);
    const bad = [...dist].filter(([k, d]) => d > bound(k)).map(([k, d]) => `${k}: ${d.toExponential(2)} (floor ${floor.get(k)!.toExponential(2)})`);
    assert.deepEqual(bad, [], `final weights of 2 ranks vs 1 rank beyond the tolerance`);
  });
}

test('bf16 autocast with 2 ranks: BatchNorm statistics and VICReg rows gathered over Gloo (which has no bf16) as float32; the curve follows 1 rank within bf16 rounding', async () => {
  for (const [slug, extra] of [['bf16-vicreg', ['method: vicreg', 'vicreg: { expander: [48, 24] }']], ['bf16-views', ['cjepa: { betaVicreg: 0.1, placement: views, projector: [48, 24] }']]] as const) {
    const cfg = tinyConfig(slug, [...extra, 'precision: bf16', 'optim: { steps: 4, warmupEpochs: 0.3, eps: 1.0e-3 }', 'log: { every: 1, monitorEvery: 0, checkpointEvery: 4 }']);
    const common = ['pretrain', '--config', cfg, '--no-final-eval'];
    const one = join(dir, `${slug}-1`), two = join(dir, `${slug}-2`);
    const r1 = await start([CLI, ...common, '--batch', '16', '--out', one]).done;
    assert.equal(r1.code, 0, r1.err);
    const r2 = await start([CLI, ...common, '--batch', '8', '--nproc', '2', '--out', two]).done;
    assert.equal(r2.code, 0, r2.err);
    assert.match(r2.err, /bf16 autocast/);
    const a = steps(one), b = steps(two);
    assert.equal(b.length, 4);
    a.forEach((s, i) => assert.ok(Math.abs(s.loss - b[i]!.loss) <= 2e-3 * Math.abs(s.loss), `${slug} step ${i + 1}: 1 rank ${s.loss} vs 2 ranks ${b[i]!.loss}`));
  }
});

test('the equivalence check can fail: 2 ranks x batch 8 with another seed differ from 1 rank x batch 16', async () => {
  const cfg = tinyConfig('control', ['method: vicreg', 'vicreg: { expander: [48, 24] }',
    'optim: { steps: 2, warmupEpochs: 0.3 }', 'log: { every: 1, monitorEvery: 0, checkpointEvery: 4 }']);
  const common = ['pretrain', '--config', cfg, '--no-final-eval'];
  const one = join(dir, 'control-1'), two = join(dir, 'control-2');
  assert.equal((await start([CLI, ...common, '--batch', '16', '--out', one]).done).code, 0);
  assert.equal((await start([CLI, ...common, '--batch', '8', '--nproc', '2', '--seed', '6', '--out', two]).done).code, 0);
  assert.ok(Math.max(...checkpointDiffs(two, one).values()) > 1e-3);
});

// ------------------------------------------------------------------ faults

function faultConfig(name: string): string {
  return tinyConfig(name, ['optim: { steps: 400, warmupEpochs: 0.3 }', 'log: { every: 10, monitorEvery: 0, checkpointEvery: 3 }']);
}

test('a killed rank: the other names it and exits non-zero within the timeout; --resume with 1 rank completes', async () => {
  const cfg = faultConfig('kill');
  const out = join(dir, 'kill');
  const port = String(await freePort());
  const args = [CLI, 'pretrain', '--config', cfg, '--batch', '8', '--out', out, '--no-final-eval', '--dist-timeout', '20'];
  const ranks = [0, 1].map((r) => start(args, { RANK: String(r), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port }));
  await waitUntil(() => latestStep(out) >= 3, 60_000, 'a first checkpoint');
  const killedAt = Date.now();
  ranks[1]!.child.kill('SIGKILL');
  const r0 = await ranks[0]!.done;
  assert.notEqual(r0.code, 0);
  assert.ok(Date.now() - killedAt < 20_000, `rank 0 took ${Date.now() - killedAt} ms to stop`);
  assert.match(r0.err, /rank 0: .* failed \(timeout 20 s\): rank 1 died or hangs/);
  assert.ok(latestStep(out) < 400);
  // resume with another number of ranks: 1 process, global batch 8 instead of 16
  const r = await start([CLI, 'pretrain', '--config', cfg, '--batch', '8', '--out', out, '--no-final-eval', '--resume', '--steps', '40']).done;
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /resuming a run trained on 2 rank\(s\) with 1/);
  assert.equal(latestStep(out), 40);
});

test('a hung rank: the other fails after the timeout naming it', async () => {
  const cfg = faultConfig('hang');
  const out = join(dir, 'hang');
  const port = String(await freePort());
  const args = [CLI, 'pretrain', '--config', cfg, '--batch', '8', '--out', out, '--no-final-eval', '--dist-timeout', '3'];
  const ranks = [0, 1].map((r) => start(args, { RANK: String(r), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port }));
  try {
    await waitUntil(() => latestStep(out) >= 3, 60_000, 'a first checkpoint');
    const stoppedAt = Date.now();
    ranks[1]!.child.kill('SIGSTOP');
    const r0 = await ranks[0]!.done;
    const ms = Date.now() - stoppedAt;
    assert.notEqual(r0.code, 0);
    assert.ok(ms >= 2500 && ms < 15_000, `rank 0 stopped ${ms} ms after the hang (timeout 3 s)`);
    assert.match(r0.err, /failed \(timeout 3 s\): rank 1 died or hangs/);
  } finally {
    ranks[1]!.child.kill('SIGKILL');
    await ranks[1]!.done;
  }
});

test('--nproc: a rank that dies makes the launcher stop the others and exit non-zero; --resume --nproc 2 completes', async () => {
  const cfg = faultConfig('launch');
  const out = join(dir, 'launch');
  const run = start([CLI, 'pretrain', '--config', cfg, '--batch', '8', '--nproc', '2', '--out', out, '--no-final-eval', '--dist-timeout', '20']);
  await waitUntil(() => latestStep(out) >= 3, 60_000, 'a first checkpoint');
  const pid = /rank 1: pid (\d+)/.exec(run.err()); // the launcher names each rank's pid at start
  assert.ok(pid, run.err());
  process.kill(Number(pid[1]), 'SIGKILL');
  const r = await run.done;
  assert.notEqual(r.code, 0);
  assert.match(r.err, /rank 1 was killed by SIGKILL; stopping the other rank\(s\)/);
  const resumed = await start([CLI, 'pretrain', '--config', cfg, '--batch', '8', '--nproc', '2', '--out', out, '--no-final-eval', '--resume', '--steps', '30']).done;
  assert.equal(resumed.code, 0, resumed.err);
  assert.match(resumed.err, /resumed from .* at step \d+/);
  assert.equal(latestStep(out), 30);
});

test('Ctrl-C under --nproc: every rank stops at the same step, rank 0 checkpoints it, exit 130; --resume completes', async () => {
  const cfg = faultConfig('sigint');
  const out = join(dir, 'sigint');
  // its own process group, as a terminal's foreground job: the SIGINT reaches the launcher and every rank
  const run = start([CLI, 'pretrain', '--config', cfg, '--batch', '8', '--nproc', '2', '--out', out, '--no-final-eval', '--dist-timeout', '20'], {}, 90_000, true);
  await waitUntil(() => latestStep(out) >= 3, 60_000, 'a first checkpoint');
  process.kill(-run.child.pid!, 'SIGINT');
  const r = await run.done;
  assert.equal(r.code, 130, r.err);
  const m = /stopped at step (\d+); checkpoint/.exec(r.err);
  assert.ok(m, r.err);
  assert.equal(latestStep(out), Number(m[1]));
  assert.doesNotMatch(r.err, /failed|stopping the other/);
  const resumed = await start([CLI, 'pretrain', '--config', cfg, '--batch', '8', '--nproc', '2', '--out', out, '--no-final-eval', '--resume', '--steps', String(Number(m[1]) + 6)]).done;
  assert.equal(resumed.code, 0, resumed.err);
  assert.equal(latestStep(out), Number(m[1]) + 6);
});
