// Attention's core alone (F.attention: softmax(scale q k^T) v from the qkv Linear's output) at the preset's target
// encoder shape (128 images x 64 tokens, 3 heads of 64), fused (native/fused.cc FusedAttention32) and composed
// (permute / contiguous copies, two batched matmuls, the fused softmax), no-grad forward (the EMA target) and
// forward + backward; medians of 20 after 3 warm-ups, GFLOP/s of the products (4 N^2 d per item forward, twice
// that backward). Session 22 (Intel Emerald Rapids VM, 2 threads): no-grad 2.95 vs 5.1 ms, forward + backward
// 8.3 vs 16.5 ms.
//
//   npx tsc -p . && node dist/scripts/microbench/attention_core.js
import * as T from '../../src/tensor/index.js';
import { F } from '../../src/tensor/index.js';

const [B, N, C, H] = [128, 64, 192, 3];
const qkv = T.randn([B, N, 3 * C], { generator: new T.Generator(0) });
const up = T.randn([B, N, C], { generator: new T.Generator(1) });
const median = (fn: () => void, reps = 20): number => {
  for (let i = 0; i < 3; i++) fn();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    t.push(performance.now() - t0);
  }
  return t.sort((a, b) => a - b)[reps >> 1]!;
};
const flops = B * H * 4 * N * N * (C / H);
for (const fused of [true, false]) {
  F.setFusedAttention(fused);
  const fwd = median(() => T.tidy(() => { T.noGrad(() => F.attention(qkv, H, 0.125)); }));
  const both = median(() => T.tidy(() => { F.attention(qkv.detach().requiresGrad_(true), H, 0.125).backward(up); }));
  console.log(`${fused ? 'fused   ' : 'composed'} no-grad forward ${fwd.toFixed(2)} ms (${(flops / fwd / 1e6).toFixed(0)} GFLOP/s), ` +
    `forward + backward ${both.toFixed(2)} ms (${((3 * flops) / both / 1e6).toFixed(0)} GFLOP/s)`);
}
F.setFusedAttention(true);
