// `cjepa bench` smoke test: the tiny row, one step, the --json line parsed and its fields present
// (no timing is asserted: the machine is shared).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

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
