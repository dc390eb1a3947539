// Per-op call overhead of the binding versus PyTorch's own (Python) per-op overhead, in one run.
// Tiny tensors (default 16 float32 elements) so the kernel is negligible and the time is the
// call path: argument decoding, dispatch, result handle creation, ownership tracking, disposal.
//
//   node dist/bench/op_overhead.js [--n 100000] [--numel 16] [--threads <ours>] [--no-torch]
//
// Both sides run with the same intra-op thread count and the same GOMP_SPINCOUNT /
// OPENBLAS_THREAD_TIMEOUT (src/tensor/native.ts sets them for us; we pass ours to python).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '../src/tensor/index.js';
import { native } from '../src/tensor/native.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const N = arg('n', 100_000);
const NUMEL = arg('numel', 16);
if (process.argv.includes('--threads')) T.setNumThreads(arg('threads', T.getNumThreads()));
const THREADS = T.getNumThreads();
const PYTHON = process.env.CJEPA_TEST_PYTHON ?? '/usr/bin/python3';
const PY_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'op_overhead_torch.py');

// Between timed runs the event loop gets a turn, as it does between training steps: Node-API runs
// the GC finalizers of dead handles from an immediate, so a run never pays for the previous one.
const tick = () => new Promise<void>((r) => setImmediate(r));

/** Best of 3 timed runs of `n` iterations (after a warm-up), in ns per iteration. */
async function timeIt(n: number, body: (n: number) => void): Promise<number> {
  body(Math.max(1, n / 10));
  body(Math.max(1, n / 10));
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    await tick();
    const t0 = process.hrtime.bigint();
    body(n);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / n);
  }
  return best;
}

const a0 = T.zeros([NUMEL]);
const b = T.full([NUMEL], 1e-7);
const flat = T.zeros([NUMEL]);
const shape2 = [4, NUMEL / 4];

type Op = (a: T.Tensor) => T.Tensor;
const OPS: Record<string, Op> = {
  add: (a) => a.add(b),
  mul: (a) => a.mul(b),
  relu: (a) => a.relu(),
  sum: () => flat.sum(),
  reshape: () => flat.reshape(shape2),
};
// The same ops on raw handles: no Tensor object, no scope tracking (the binding alone).
type RawOp = (a: unknown) => unknown;
const RAW: Record<string, RawOp> = {
  add: (a) => native.add(a, b.h),
  mul: (a) => native.mul(a, b.h),
  relu: (a) => native.relu(a),
  sum: () => native.sum(flat.h, null, false),
  reshape: () => native.reshape(flat.h, shape2),
};

/** a = op(a), the previous a disposed at once. */
function explicitDispose(op: Op): Promise<number> {
  return timeIt(N, (n) => {
    let a = a0.clone();
    for (let i = 0; i < n; i++) { const r = op(a); a.dispose(); a = r; }
    a.dispose();
  });
}
/** a = op(a) inside tidy() batches of 1000 ops; the scope disposes the intermediates. */
function tidyBatches(op: Op): Promise<number> {
  return timeIt(N, (n) => {
    let a = a0.clone();
    for (let done = 0; done < n; done += 1000) {
      const prev = a;
      a = T.tidy(() => { let x = prev; for (let i = 0; i < 1000 && done + i < n; i++) x = op(x); return x; });
      prev.dispose();
    }
    a.dispose();
  });
}
function rawHandles(op: RawOp): Promise<number> {
  return timeIt(N, (n) => {
    let a: unknown = native.clone(a0.h);
    for (let i = 0; i < n; i++) { const r = op(a); native.dispose(a); a = r; }
    native.dispose(a);
  });
}

// a throw-away round first, so the first op measured does not pay for JIT and heap warm-up
for (const op of Object.values(OPS)) await explicitDispose(op);
const liveBefore = T.liveTensors();
const ours: Record<string, { dispose: number; tidy: number; raw: number }> = {};
for (const [name, op] of Object.entries(OPS)) {
  ours[name] = { dispose: await explicitDispose(op), tidy: await tidyBatches(op), raw: await rawHandles(RAW[name]!) };
}
const jsLoop = await timeIt(N, (n) => { let a: unknown = a0; for (let i = 0; i < n; i++) a = ((x: unknown) => x)(a); void a; });
if (T.liveTensors() !== liveBefore) throw new Error(`benchmark leaked ${T.liveTensors() - liveBefore} tensors`);

let torch: { ns: Record<string, number>; info: Record<string, unknown> } | undefined;
if (!process.argv.includes('--no-torch')) {
  const r = spawnSync(PYTHON, [PY_SCRIPT, String(N), String(THREADS), String(NUMEL)], {
    encoding: 'utf8',
    env: { ...process.env, GOMP_SPINCOUNT: process.env.GOMP_SPINCOUNT, OPENBLAS_THREAD_TIMEOUT: process.env.OPENBLAS_THREAD_TIMEOUT },
  });
  if (r.status !== 0) throw new Error(`PyTorch side failed: ${r.stderr || String(r.error)}`);
  torch = JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const par = T.parallelInfo().split('\n').filter((l) => /get_num_threads|interop/.test(l)).map((l) => l.trim()).join(', ');
console.log(`op overhead: ${N} ops per measurement, ${NUMEL}-element float32 tensors, best of 3`);
console.log(`ours : libtorch via N-API, Node ${process.version}, threads=${THREADS} (${par}), ` +
  `GOMP_SPINCOUNT=${process.env.GOMP_SPINCOUNT} OPENBLAS_THREAD_TIMEOUT=${process.env.OPENBLAS_THREAD_TIMEOUT}`);
if (torch) {
  const i = torch.info;
  console.log(`torch: ${PYTHON} torch ${String(i.torch)}, threads=${String(i.threads)} interop=${String(i.interop_threads)}, ` +
    `GOMP_SPINCOUNT=${String(i.GOMP_SPINCOUNT)} OPENBLAS_THREAD_TIMEOUT=${String(i.OPENBLAS_THREAD_TIMEOUT)}`);
}
const pad = (s: string, w: number) => s.padStart(w);
console.log(['op', 'ours dispose', 'ours tidy', 'raw handles', 'torch', 'ratio(dispose)', 'ratio(tidy)'].map((s, k) => pad(s, k ? 16 : 8)).join(''));
for (const [name, o] of Object.entries(ours)) {
  const t = torch?.ns[name];
  const f = (x: number) => `${x.toFixed(0)} ns`;
  console.log([name, f(o.dispose), f(o.tidy), f(o.raw), t === undefined ? '-' : f(t),
    t === undefined ? '-' : (o.dispose / t).toFixed(2), t === undefined ? '-' : (o.tidy / t).toFixed(2)].map((s, k) => pad(s, k ? 16 : 8)).join(''));
}
console.log(`loop overhead alone: JS ${jsLoop.toFixed(1)} ns/iter` + (torch ? `, Python ${torch.ns.noop!.toFixed(1)} ns/iter` : ''));
a0.dispose(); b.dispose(); flat.dispose();
