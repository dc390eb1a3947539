// The fp32 GEMM libraries (src/tensor/native.ts). OpenBLAS's kernel family is chosen from the CPU's flags
// before libtorch loads, so a CPU newer than Debian's OpenBLAS knows does not get its generic SSE3 kernels; a
// user's own OPENBLAS_CORETYPE wins; what OpenBLAS reports running is what was chosen. The fp32 Linear's
// blocks run on oneDNN's sgemm on Intel AVX-512 CPUs and AMD Zen 4, with the same forward values and gradients within
// rounding of OpenBLAS's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { openblasCoreFor, cpuFlags, cpuInfo, fp32GemmFor } from '../src/tensor/native.js';

const NATIVE = new URL('../src/tensor/native.js', import.meta.url).href;

/** Runs `body` (ES module code with `m` = native.js) in a fresh process with these variables (undefined: unset). */
function inChild(vars: Record<string, string | undefined>, body: string) {
  const env = { ...process.env };
  for (const [k, v] of Object.entries(vars)) if (v === undefined) delete env[k]; else env[k] = v;
  const code = `const m = await import(${JSON.stringify(NATIVE)});\n${body}`;
  return spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', env, maxBuffer: 256 * 2 ** 20 });
}
/** The JSON a child prints last. */
function childJson(vars: Record<string, string | undefined>, body: string) {
  const r = inChild(vars, body);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** What a fresh process with this OPENBLAS_CORETYPE (undefined: unset) reports: the family OpenBLAS runs, and who chose it. */
function fresh(coretype: string | undefined): { core: string | null; by: string } {
  return childJson({ OPENBLAS_CORETYPE: coretype }, 'console.log(JSON.stringify({ core: m.native.blasCore ?? null, by: m.blasCoreChosenBy }));');
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

test('the fp32 Linear runs oneDNN on Intel AVX-512 CPUs and AMD Zen 4 only; an unknown CJEPA_FP32_GEMM is an Error', () => {
  const avx512 = new Set(['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512cd']);
  assert.equal(fp32GemmFor({ vendor: 'GenuineIntel', flags: avx512 }), 'dnnl');
  assert.equal(fp32GemmFor({ vendor: 'AuthenticAMD', family: 25, flags: avx512 }), 'dnnl', 'Zen 4: measured faster (session 26)');
  assert.equal(fp32GemmFor({ vendor: 'AuthenticAMD', family: 26, flags: avx512 }), 'openblas', 'Zen 5: not measured faster');
  assert.equal(fp32GemmFor({ vendor: 'AuthenticAMD', flags: avx512 }), 'openblas', 'no family read: not a CPU we measured');
  assert.equal(fp32GemmFor({ vendor: 'AuthenticAMD', family: 25, flags: new Set(['avx2', 'fma']) }), 'openblas', 'Zen 3: no AVX-512');
  assert.equal(fp32GemmFor({ vendor: 'GenuineIntel', flags: new Set(['avx2', 'fma']) }), 'openblas');
  assert.equal(fp32GemmFor({ vendor: '', flags: new Set() }), 'openblas');
  const auto = childJson({ CJEPA_FP32_GEMM: undefined }, 'console.log(JSON.stringify({ env: process.env.CJEPA_FP32_GEMM, gemm: m.native.linearGemm }));');
  const want = process.arch === 'x64' ? fp32GemmFor(cpuInfo()) : undefined;
  assert.equal(auto.env, want);
  if (auto.gemm !== null) assert.equal(auto.gemm, want === 'dnnl' ? 'oneDNN' : 'OpenBLAS');
  // switched in a running process (scripts/microbench/fp32_step_ab.ts alternates the two step by step)
  const sw = childJson({}, "console.log(JSON.stringify([m.native.setFp32Gemm('openblas'), m.native.setFp32Gemm('dnnl'), m.native.linearGemm]));");
  assert.deepEqual(sw, ['OpenBLAS', 'oneDNN', auto.gemm], 'linearGemm reports the library chosen at load');
  const badSwitch = childJson({}, "let msg = ''; try { m.native.setFp32Gemm('mkl'); } catch (e) { msg = e.message; } console.log(JSON.stringify(msg));");
  assert.match(badSwitch, /expected 'dnnl' or 'openblas', got 'mkl'/);
  const bad = inChild({ CJEPA_FP32_GEMM: 'mkl' }, '');
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /CJEPA_FP32_GEMM must be one of dnnl, openblas, got 'mkl'/);
});

test('oneDNN and OpenBLAS blocks give the same Linear forward, and gradients within rounding', () => {
  // a preset-shaped Linear (1,024 rows: two blocks, K = 192 -> 576, and 576 -> 192 for dx's K): forward, dx, dW, db
  const body = `
    const T = await import(${JSON.stringify(new URL('../src/tensor/index.js', import.meta.url).href)});
    const F = await import(${JSON.stringify(new URL('../src/tensor/functional.js', import.meta.url).href)});
    T.manualSeed(7);
    const x = T.randn([1024, 192]).requiresGrad_(), w = T.randn([576, 192]).mul(0.05).requiresGrad_(), b = T.randn([576]).requiresGrad_();
    const g = T.randn([1024, 576]);
    const y = F.linear(x, w, b);
    y.mul(g).sum().backward();
    const arr = (t) => Buffer.from(t.data().buffer).toString('base64');
    console.log(JSON.stringify({ gemm: m.native.linearGemm, y: arr(y), dx: arr(x.grad), dw: arr(w.grad), db: arr(b.grad) }));`;
  const floats = (b64: string) => Array.from(new Float32Array(new Uint8Array(Buffer.from(b64, 'base64')).buffer));
  const run = (gemm: string) => {
    const r = childJson({ CJEPA_FP32_GEMM: gemm, CJEPA_THREADS: '2' }, body);
    return { gemm: r.gemm, y: floats(r.y), dx: floats(r.dx), dw: floats(r.dw), db: floats(r.db) };
  };
  const o = run('openblas');
  const d = run('dnnl');
  if (o.gemm === null) assert.fail('no split fp32 Linear in this build: nothing to compare');
  assert.equal(o.gemm, 'OpenBLAS');
  assert.equal(d.gemm, 'oneDNN');
  assert.deepEqual(d.y, o.y, 'forward: the same sums (K = 192), bit for bit');
  assert.deepEqual(d.dx, o.dx, 'dx: the same sums (K = 576), bit for bit');
  const close = (a: number[], e: number[], what: string) => {
    const scale = Math.max(...e.map(Math.abs));
    const worst = Math.max(...a.map((v, i) => Math.abs(v - e[i]!)));
    assert.ok(worst <= 1e-5 * scale, `${what}: max |diff| ${worst} against max |value| ${scale}`);
  };
  close(d.dw, o.dw, 'dW (sums over 1,024 rows)');
  close(d.db, o.db, 'db');
});
