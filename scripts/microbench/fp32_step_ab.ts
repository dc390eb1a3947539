// The preset's fp32 training step (batch 128, as `cjepa bench` times it) with one switch flipped, alternated step
// by step in one process so that a shared machine's slow spells hit both sides; prints the medians and the median
// of the paired ratios (B / A). Switches:
//   gemm       the split fp32 Linear's blocks on OpenBLAS (A) or oneDNN (B) (native/fused.cc Gemm32). Session 21
//              (Intel Emerald Rapids VM, 2 vCPU): paired ratio 0.93, 0.89, 0.90 over three runs of 20 pairs.
//   attention  attention's composed ops (A) or the fused core (B) (F.attention, native/fused.cc FusedAttention32).
//   gelu       libtorch's fp32 GELU (A) or cjepa's kernel (B) (F.gelu, native/fused.cc GeluFwdF32 / GeluBwdF32).
//   layernorm  at::layer_norm (A) or cjepa's fp32 forward kernel (B) for the blocks' norms (F.layerNormToLinear,
//              native/fused.cc LayerNormRowsFn).
//
//   npx tsc -p . && node dist/scripts/microbench/fp32_step_ab.js gemm|attention|gelu|layernorm [pairs=20]
import * as T from '../../src/tensor/index.js';
import { native } from '../../src/tensor/native.js';
import { F } from '../../src/tensor/index.js';
import { buildNetworks } from '../../src/method/trainer.js';
import { jepaForward, maskTensors } from '../../src/method/step.js';
import { AdamW, ijepaParamGroups } from '../../src/method/optim.js';
import { emaUpdate } from '../../src/method/ema.js';
import { MultiBlockMaskSampler } from '../../src/method/masks.js';
import { BENCH_ROWS, rowConfig, stepLossOptions } from '../../src/bench/rows.js';

const row = BENCH_ROWS['preset']!;
const cfg = rowConfig(row);
T.setPrecision('fp32');
if (!native.linearSplit) throw new Error('this build has no split fp32 Linear (libtorch not on the system OpenBLAS): nothing to compare');
const nets = buildNetworks(cfg, 3);
const g = row.imgSize / row.patch;
const mk = maskTensors(new MultiBlockMaskSampler({ gridSize: [g, g], allowOverlap: false, ...cfg.masks }, 0).sample(row.batch));
const images = T.randn([row.batch, 3, row.imgSize, row.imgSize], { generator: new T.Generator(0) });
const enc = nets.encoder, tgt = nets.targetEncoder!, pred = nets.predictor!;
tgt.loadStateDict(enc.stateDict());
const opt = new AdamW(ijepaParamGroups([...enc.namedParameters('encoder.'), ...pred.namedParameters('predictor.')]));
const o = stepLossOptions(cfg);
const step = () => {
  T.tidy(() => jepaForward({ encoder: enc, targetEncoder: tgt, predictor: pred }, images, mk.ctx, mk.tgt, o).loss.backward());
  opt.update(1e-4, 0.04);
  enc.zeroGrad(); pred.zeroGrad();
  emaUpdate(tgt.parameters(), enc.parameters(), 0.996);
};
const switches: Record<string, { a: string; b: string; set: (b: boolean) => void }> = {
  gemm: { a: 'OpenBLAS', b: 'oneDNN', set: (b) => native.setFp32Gemm(b ? 'dnnl' : 'openblas') },
  attention: { a: 'composed', b: 'fused', set: (b) => F.setFusedAttention(b) },
  gelu: { a: 'stock', b: 'fused', set: (b) => F.setFusedGeluFp32(b) },
  layernorm: { a: 'stock', b: 'fused', set: (b) => native.setFusedLayerNormF32(b) },
};
const which = process.argv[2] ?? '';
const sw = switches[which];
if (!sw) throw new Error(`fp32_step_ab: expected a switch (${Object.keys(switches).join(' | ')}), got '${which}'`);
const times: Record<string, number[]> = { [sw.a]: [], [sw.b]: [] };
const pairs = Number(process.argv[3] ?? 20);
for (let i = 0; i < 4; i++) { sw.set(i % 2 === 1); step(); }  // warm-up: allocator cache, oneDNN's JIT kernels, both sides
for (let i = 0; i < pairs; i++) {
  for (const b of i % 2 ? [true, false] : [false, true]) {
    sw.set(b);
    const t0 = performance.now();
    step();
    times[b ? sw.b : sw.a]!.push(performance.now() - t0);
  }
}
sw.set(true);
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
const ratios = times[sw.b]!.map((v, i) => v / times[sw.a]![i]!);
console.log(`threads ${T.getNumThreads()}, OpenBLAS ${native.blasCore}, Linear ${native.linearGemm}; ${sw.a} median ${median(times[sw.a]!).toFixed(0)} ms, ` +
  `${sw.b} median ${median(times[sw.b]!).toFixed(0)} ms per step; ${sw.b} / ${sw.a} paired ratio median ${median(ratios).toFixed(3)} ` +
  `(min ${Math.min(...ratios).toFixed(3)}, max ${Math.max(...ratios).toFixed(3)}) over ${pairs} pairs`);
