// `cjepa bench` smoke test: the tiny row, one step, the --json line parsed and its fields present
// (no timing is asserted: the machine is shared).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { opSelfTimes } from '../src/bench/profile.js';
import { parseGemmLog, type GemmShape } from '../src/bench/gemm_log.js';
import { BENCH_ROWS, rowFlops } from '../src/bench/rows.js';
import { resolveConfig } from '../src/config.js';
import { native } from '../src/tensor/native.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');

test('cjepa bench --rows tiny --steps 1 --json: the last stdout line is the report object', () => {
  const r = spawnSync(process.execPath, [MAIN, 'bench', '--rows', 'tiny', '--steps', '1', '--warmup', '0', '--rounds', '1', '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const j = JSON.parse(lines[lines.length - 1]!) as Record<string, unknown> & { rows: Record<string, unknown>[] };
  for (const k of ['ours_ms', 'pytorch_ms', 'ratio', 'peak_fraction', 'ours_bf16_ms', 'pytorch_bf16_ms', 'bf16_ratio', 'peak_gflops', 'rows']) assert.ok(k in j, k);
  assert.ok((j.ours_ms as number) > 0 && (j.peak_fraction as number) > 0 && (j.peak_gflops as number) > 0);
  assert.equal(j.rows.length, 1);
  assert.equal(j.rows[0]!.id, 'tiny');
  if (j.torch !== null) assert.ok((j.pytorch_ms as number) > 0 && (j.ratio as number) > 0);  // PyTorch installed: both sides ran
  assert.match(r.stdout, /ms\/step/);
});

test('cjepa bench refuses an unknown row, naming the known ones', () => {
  const r = spawnSync(process.execPath, [MAIN, 'bench', '--rows', 'nope', '--no-pytorch'], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /unknown bench row 'nope' \(known: preset/);
});

test('bench row preset32: the shipped preset at its own training batch; a quarter of the preset row\'s GEMM FLOPs', () => {
  const preset = BENCH_ROWS['preset']!, preset32 = BENCH_ROWS['preset32']!;
  // the shipped config's batch, read without the row's override: a change of the preset's batch fails here
  const shipped = resolveConfig(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'configs', 'cifar10-cpu.yaml'), {});
  assert.equal(preset32.batch, shipped.optim.batch);
  assert.deepEqual({ ...preset32, id: '', title: '', batch: 0 }, { ...preset, id: '', title: '', batch: 0 });
  const m = { contextLen: 24, targetLen: 10, nTargets: 4 };
  assert.equal(rowFlops(preset32, m) * 4, rowFlops(preset, m));
});

test('opSelfTimes: self time = duration minus nested ops on the same thread, per step, largest first', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cjepa-prof-'));
  const path = join(dir, 't.json');
  const X = (name: string, ts: number, dur: number, tid = 1) => ({ name, ph: 'X', ts, dur, tid, pid: 'CPU' });
  // thread 1: linear [0, 100) holds addmm [10, 70) which holds copy_ [20, 30); then copy_ [100, 140)
  // thread 2: mm [0, 50) overlapping thread 1 in time, not nested in it
  writeFileSync(path, JSON.stringify([X('aten::copy_', 20, 10), X('aten::linear', 0, 100), X('aten::addmm', 10, 60), X('aten::copy_', 100, 40), X('aten::mm', 0, 50, 2), { name: 'meta', ph: 'M' }]));
  const t = Object.fromEntries(opSelfTimes(path, 2).map((o) => [o.name, o]));
  assert.deepEqual(Object.keys(t).sort(), ['aten::addmm', 'aten::copy_', 'aten::linear', 'aten::mm']);
  assert.equal(t['aten::linear']!.selfMs, (100 - 60) / 1000 / 2);
  assert.equal(t['aten::addmm']!.selfMs, (60 - 10) / 1000 / 2);
  assert.equal(t['aten::copy_']!.selfMs, 50 / 1000 / 2);
  assert.equal(t['aten::copy_']!.calls, 1);
  assert.equal(t['aten::mm']!.selfMs, 50 / 1000 / 2);
  assert.equal(opSelfTimes(path, 1)[0]!.name, 'aten::copy_', 'largest first');
});

test('cjepa bench --profile: both sides write libtorch op traces and the report compares them per op', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cjepa-bench-prof-'));
  const r = spawnSync(process.execPath, [MAIN, 'bench', '--rows', 'tiny', '--steps', '1', '--warmup', '0', '--rounds', '1', '--precision', 'fp32', '--profile', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const ours = join(dir, 'tiny-fp32-cjepa.trace.json');
  assert.ok(existsSync(ours), ours);
  const names = new Set((JSON.parse(readFileSync(ours, 'utf8')) as { name: string }[]).map((e) => e.name));
  // fp32 Linear: libtorch's addmm / mm, or on a system OpenBLAS cjepa's row-split sgemm (recorded as cj::gemm32)
  for (const op of native.linearSplit ? ['cj::gemm32'] : ['aten::mm', 'aten::addmm']) assert.ok(names.has(op), `cjepa trace has ${op}`);
  assert.match(r.stdout, /tiny fp32: libtorch op profiler, self time per step/);
  const mm = r.stdout.split('\n').find((l) => l.startsWith('aten::mm '));
  assert.ok(mm, 'aten::mm row in the per-op table');
  if (existsSync(join(dir, 'tiny-fp32-pytorch.trace.json'))) assert.equal(mm!.trim().split(/\s+/).length, 5, `both sides in the row: ${mm}`);
});

test('parseGemmLog: calls and wall time per step by shape, GFLOP/s over the calls, other lines ignored', () => {
  const text = [
    'cj::gemm32 100 10 20 NT 1 50.0', 'cj::gemm32 100 10 20 NT 1 30.0',  // 2 calls of 2 * 100 * 10 * 20 = 40,000 FLOP in 80 us
    'cj::gemm32 20 100 10 TN 0 200.0',                                  // the grad W of that Linear: 1 call, 200 us
    'a warning from somewhere', 'cj::gemm32 1 2', '',
  ].join('\n');
  const log = parseGemmLog(text, 2);
  assert.equal(log.shapes.length, 2);
  const [gw, fw] = log.shapes;  // largest time first
  assert.deepEqual([gw!.R, gw!.K, gw!.C, gw!.layout, gw!.bias], [20, 100, 10, 'TN', false]);
  assert.deepEqual([fw!.R, fw!.K, fw!.C, fw!.layout, fw!.bias], [100, 10, 20, 'NT', true]);
  assert.equal(fw!.callsPerStep, 1);
  assert.equal(fw!.msPerStep, 0.04);
  assert.ok(Math.abs(fw!.gflops - 80_000 / 80e-6 / 1e9) < 1e-9);
  assert.ok(Math.abs(log.msPerStep - 0.14) < 1e-12);
  assert.ok(Math.abs(log.gflopPerStep - 120_000 / 2 / 1e9) < 1e-15);
  assert.throws(() => parseGemmLog(text, 0), /steps must be a positive integer, got 0/);
});

test('cjepa bench --gemm-log: the step\'s fp32 Linear GEMMs by shape; every grad W has its forward', () => {
  const r = spawnSync(process.execPath, [MAIN, 'bench', '--rows', 'tiny', '--steps', '2', '--warmup', '0', '--rounds', '1', '--precision', 'fp32', '--no-pytorch', '--gemm-log', '--json'],
    { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const row = (JSON.parse(lines[lines.length - 1]!) as { rows: { gemm_log?: { step_ms: number; gemm_ms: number; shapes: GemmShape[] } }[] }).rows[0]!;
  assert.ok(row.gemm_log, 'gemm_log in the JSON row');
  assert.match(r.stdout, /tiny fp32: cjepa's fp32 Linear GEMMs by shape/);
  if (!native.linearSplit) {  // libtorch's at::linear runs the Linears: nothing to log
    assert.equal(row.gemm_log.shapes.length, 0);
    return;
  }
  const g = row.gemm_log;
  assert.ok(g.shapes.length > 0 && g.gemm_ms > 0 && g.gemm_ms < g.step_ms, `GEMMs ${g.gemm_ms} ms of a ${g.step_ms} ms step`);
  for (const s of g.shapes) assert.ok(Number.isInteger(s.callsPerStep) && s.callsPerStep > 0 && s.gflops > 0, JSON.stringify(s));
  // x (R, K) @ W^T (K, C) + b forward; its grad W is g^T (C, R) @ x (R, K): logged as C x R x K, layout TN
  const gradW = g.shapes.filter((s) => s.layout === 'TN');
  assert.ok(gradW.length > 0, 'the trained nets\' weight gradients are logged');
  for (const w of gradW) {
    const fwd = g.shapes.find((s) => s.layout === 'NT' && s.R === w.K && s.K === w.C && s.C === w.R);
    assert.ok(fwd && fwd.callsPerStep >= w.callsPerStep, `forward of grad W ${w.R} x ${w.K} x ${w.C}`);
  }
});
