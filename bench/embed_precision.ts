// Benchmark: `embed` throughput of a randomly initialised ViT in fp32 vs bf16 autocast: the forward
// and mean pooling that embed runs per batch (poolFeatures, the code of extractFeatures), on random
// images already decoded (image decoding is excluded). Prints images/s per precision and the
// smallest cosine similarity between an image's bf16 and fp32 embeddings (raw and centred).
// Usage: node dist/bench/embed_precision.js [--models vit_huge/14:8,vit_base/16:32] [--img 224]
//        [--images 4] [--batch 4] [--threads N] [--pause-pids FILE]
// --pause-pids: SIGSTOP the processes listed in FILE for the timed part only (models are built and
// warmed up first), SIGCONT them after, also on errors and signals.
// --go-file: after the warm-up print 'ready' and wait until FILE exists before timing (a wrapper picks
// a quiet moment: see the README's interop section).
import { readFileSync, existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import * as T from '../src/tensor/index.js';
import { VisionTransformer, vitConfig } from '../src/nn/vit.js';
import { poolFeatures } from '../src/eval/features.js';

const { values: a } = parseArgs({ options: {
  models: { type: 'string', default: 'vit_huge/14' }, img: { type: 'string', default: '224' },
  images: { type: 'string', default: '4' }, batch: { type: 'string', default: '4' }, threads: { type: 'string', default: String(availableParallelism()) },
  'pause-pids': { type: 'string' }, 'go-file': { type: 'string' },
} });
const S = Number(a.img), B = Number(a.batch);
T.setNumThreads(Number(a.threads));

const pids = a['pause-pids'] ? readFileSync(a['pause-pids'], 'utf8').split(/\s+/).filter(Boolean).map(Number) : [];
const signalAll = (sig: NodeJS.Signals) => { for (const p of pids) { try { process.kill(p, sig); } catch { /* gone */ } } };
process.on('exit', () => signalAll('SIGCONT')); // never leave them stopped
for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, () => process.exit(1));

// one entry per model: name/patch[:images]
interface Case { name: string; patch: number; n: number; enc: VisionTransformer; images: T.Tensor }
const cases: Case[] = a.models!.split(',').map((spec) => {
  const [np, n] = spec.split(':');
  const [name, patch] = np!.split('/');
  const t0 = performance.now();
  const enc = new VisionTransformer(vitConfig(name!, { imgSize: S, patchSize: Number(patch), inChans: 3, seed: 0 }));
  const N = Number(n ?? a.images);
  console.error(`${name}/${patch} at ${S} px: ${(enc.numParameters() / 1e6).toFixed(0)} M parameters, built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { name: name!, patch: Number(patch), n: N, enc, images: T.randn([N, 3, S, S], { generator: new T.Generator(1) }) };
});
console.error(`${T.getNumThreads()} threads; bf16 hardware: ${T.cpuHasBf16()}`);

function embed(c: Case): { emb: T.Tensor; s: number } {
  const t = performance.now();
  const rows: T.Tensor[] = [];
  for (let i = 0; i < c.n; i += B) rows.push(T.noGrad(() => poolFeatures(c.enc, c.images.narrow(0, i, Math.min(B, c.n - i)))));
  const emb = T.cat(rows, 0);
  rows.forEach((r) => r.dispose());
  return { emb, s: (performance.now() - t) / 1000 };
}

// warm-up (not timed): one batch per model and precision
for (const c of cases) {
  for (const p of ['fp32', 'bf16'] as const) {
    T.setPrecision(p);
    T.noGrad(() => poolFeatures(c.enc, c.images.narrow(0, 0, Math.min(B, c.n)))).dispose();
  }
}
if (a['go-file']) {
  console.error('ready');
  const sleep = new Int32Array(new SharedArrayBuffer(4));
  while (!existsSync(a['go-file'])) Atomics.wait(sleep, 0, 0, 100);
}
signalAll('SIGSTOP');
const tw = performance.now();
const res = cases.map((c) => Object.fromEntries((['fp32', 'bf16'] as const).map((p) => { T.setPrecision(p); return [p, embed(c)]; })));
signalAll('SIGCONT');
console.error(`timed part${pids.length ? ' (other processes paused)' : ''}: ${((performance.now() - tw) / 1000).toFixed(1)} s`);

// per image; centred: minus the mean embedding of the images (a random network's embeddings share a
// large common part, which alone would make the raw cosine close to 1)
const minCos = (x: T.Tensor, y: T.Tensor) => T.tidy(() => T.F.normalize(x, 2, 1).mul(T.F.normalize(y, 2, 1)).sum(1).min().item());
cases.forEach((c, i) => {
  const r = res[i]!;
  const [e16, e32] = [r['bf16']!.emb, r['fp32']!.emb];
  const cosC = c.n > 1 ? T.tidy(() => minCos(e16.sub(e16.mean(0, true)), e32.sub(e32.mean(0, true)))) : NaN;
  const ips = { fp32: +(c.n / r['fp32']!.s).toFixed(3), bf16: +(c.n / r['bf16']!.s).toFixed(3) };
  console.log(JSON.stringify({ model: `${c.name}/${c.patch}`, img: S, images: c.n, batch: B, threads: T.getNumThreads(), images_per_s: ips,
    speedup: +(ips.bf16 / ips.fp32).toFixed(2), min_cosine_bf16_fp32: +minCos(e16, e32).toFixed(5), min_centred_cosine: +cosC.toFixed(5) }));
});
