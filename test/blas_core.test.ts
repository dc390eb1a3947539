// OpenBLAS's kernel family (src/tensor/native.ts): chosen from the CPU's flags before libtorch loads, so a
// CPU newer than Debian's OpenBLAS knows does not get its generic SSE3 kernels; a user's own
// OPENBLAS_CORETYPE wins; and what OpenBLAS reports running is what was chosen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { openblasCoreFor, cpuFlags } from '../src/tensor/native.js';

const NATIVE = new URL('../src/tensor/native.js', import.meta.url).href;

/** What a fresh process with this OPENBLAS_CORETYPE (undefined: unset) reports: the family OpenBLAS runs, and who chose it. */
function fresh(coretype: string | undefined): { core: string | null; by: string } {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  if (coretype !== undefined) env.OPENBLAS_CORETYPE = coretype;
  const code = `const m = await import(${JSON.stringify(NATIVE)}); console.log(JSON.stringify({ core: m.native.blasCore ?? null, by: m.blasCoreChosenBy }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', env });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

test('the kernel family is the best one the CPU flags allow', () => {
  const avx512 = ['sse3', 'avx', 'avx2', 'fma', 'avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512cd'];
  assert.equal(openblasCoreFor(new Set(avx512)), 'SkylakeX');  // Emerald Rapids as this VM shows it (no AMX, no bf16)
  assert.equal(openblasCoreFor(new Set([...avx512, 'avx512_bf16'])), 'Cooperlake');  // Zen 4/5, Cooper Lake, Sapphire Rapids
  assert.equal(openblasCoreFor(new Set(['sse3', 'avx', 'avx2', 'fma'])), 'Haswell');  // Zen 3, Haswell..Comet Lake
  assert.equal(openblasCoreFor(new Set(['sse3', 'avx', 'avx2', 'fma', 'avx512f'])), 'Haswell', 'AVX-512F alone (Knights Landing) is not SkylakeX');
  assert.equal(openblasCoreFor(new Set(['sse3', 'avx'])), undefined, 'older CPUs are left to OpenBLAS');
  assert.equal(openblasCoreFor(new Set()), undefined);
});

test('a fresh process runs the chosen family; a user OPENBLAS_CORETYPE wins', () => {
  const chosen = openblasCoreFor(cpuFlags());
  const auto = fresh(undefined);
  if (auto.core === null) assert.fail('libtorch is not linked against OpenBLAS here: nothing to check the choice against');
  if (chosen === undefined || process.arch !== 'x64') {
    assert.equal(auto.by, 'openblas');
  } else {
    assert.equal(auto.by, 'cjepa');
    assert.equal(auto.core, chosen, `OpenBLAS runs ${auto.core}, cjepa chose ${chosen}`);
  }
  const user = fresh('Prescott');
  assert.deepEqual(user, { core: 'Prescott', by: 'user' });
});
