// Benchmark: `embed` throughput of a randomly initialised ViT in fp32 vs bf16 autocast: the forward
// and mean pooling that embed runs per batch (poolFeatures, the code of extractFeatures), on random
// images already decoded (image decoding is excluded). Prints images/s per precision and the
// smallest cosine similarity between an image's bf16 and fp32 embeddings (raw and centred).
// Usage: node dist/bench/embed_precision.js [--model vit_huge] [--patch 14] [--img 224] [--images 4]
//        [--batch 4] [--threads N] [--pause-pids FILE]
// --pause-pids: SIGSTOP the processes listed in FILE for the timed part only (models are built and
// warmed up first), SIGCONT them after, also on errors and signals.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import * as T from '../src/tensor/index.js';
import { VisionTransformer, vitConfig } from '../src/nn/vit.js';
import { poolFeatures } from '../src/eval/features.js';

const { values: a } = parseArgs({ options: {
  model: { type: 'string', default: 'vit_huge' }, patch: { type: 'string', default: '14' }, img: { type: 'string', default: '224' },
  images: { type: 'string', default: '4' }, batch: { type: 'string', default: '4' }, threads: { type: 'string', default: String(availableParallelism()) },
  'pause-pids': { type: 'string' },
} });
const N = Number(a.images), B = Number(a.batch), S = Number(a.img);
T.setNumThreads(Number(a.threads));

const pids = a['pause-pids'] ? readFileSync(a['pause-pids'], 'utf8').split(/\s+/).filter(Boolean).map(Number) : [];
const signalAll = (sig: NodeJS.Signals) => { for (const p of pids) { try { process.kill(p, sig); } catch { /* gone */ } } };
process.on('exit', () => signalAll('SIGCONT')); // never leave them stopped
for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, () => process.exit(1));

const t0 = performance.now();
const enc = new VisionTransformer(vitConfig(a.model!, { imgSize: S, patchSize: Number(a.patch), inChans: 3, seed: 0 }));
const images = T.randn([N, 3, S, S], { generator: new T.Generator(1) });
const params = enc.numParameters();
console.error(`${a.model}/${a.patch} at ${S} px: ${(params / 1e6).toFixed(0)} M parameters, built in ${((performance.now() - t0) / 1000).toFixed(1)} s; ` +
  `${T.getNumThreads()} threads; bf16 hardware: ${T.cpuHasBf16()}`);

function embed(): { emb: T.Tensor; s: number } {
  const t = performance.now();
  const rows: T.Tensor[] = [];
  for (let i = 0; i < N; i += B) rows.push(T.noGrad(() => poolFeatures(enc, images.narrow(0, i, Math.min(B, N - i)))));
  const emb = T.cat(rows, 0);
  rows.forEach((r) => r.dispose());
  return { emb, s: (performance.now() - t) / 1000 };
}

// warm-up (not timed): one batch per precision
for (const p of ['fp32', 'bf16'] as const) {
  T.setPrecision(p);
  T.noGrad(() => poolFeatures(enc, images.narrow(0, 0, Math.min(B, N)))).dispose();
}
signalAll('SIGSTOP');
const res: Record<string, { emb: T.Tensor; s: number }> = {};
for (const p of ['fp32', 'bf16'] as const) {
  T.setPrecision(p);
  res[p] = embed();
}
signalAll('SIGCONT');
// per image; centred: minus the mean embedding of the images (a random network's embeddings share a
// large common part, which alone would make the raw cosine close to 1)
const minCos = (x: T.Tensor, y: T.Tensor) => T.tidy(() => T.F.normalize(x, 2, 1).mul(T.F.normalize(y, 2, 1)).sum(1).min().item());
const [e16, e32] = [res['bf16']!.emb, res['fp32']!.emb];
const cos = minCos(e16, e32);
const cosC = N > 1 ? T.tidy(() => minCos(e16.sub(e16.mean(0, true)), e32.sub(e32.mean(0, true)))) : NaN;
const out = Object.fromEntries(Object.entries(res).map(([p, r]) => [p, +(N / r.s).toFixed(3)]));
console.log(JSON.stringify({ model: `${a.model}/${a.patch}`, img: S, images: N, batch: B, threads: T.getNumThreads(), images_per_s: out,
  speedup: +(out['bf16']! / out['fp32']!).toFixed(2), min_cosine_bf16_fp32: +cos.toFixed(5), min_centred_cosine: +cosC.toFixed(5) }));
