// The preset's fp32 training step (batch 128, as `cjepa bench` times it) with the split fp32 Linear's blocks on
// OpenBLAS and on oneDNN (native/fused.cc Gemm32), alternated step by step in one process so that a shared
// machine's slow spells hit both; prints the medians and the median of the paired ratios. Session 21 (Intel
// Emerald Rapids VM, 2 vCPU): paired ratio oneDNN / OpenBLAS 0.93, 0.89, 0.90 over three runs of 20 pairs.
//
//   npx tsc -p . && node dist/scripts/microbench/fp32_gemm_step_ab.js [pairs=20]
import * as T from '../../src/tensor/index.js';
import { native } from '../../src/tensor/native.js';
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
const times: Record<string, number[]> = { OpenBLAS: [], oneDNN: [] };
const pairs = Number(process.argv[2] ?? 20);
for (let i = 0; i < 4; i++) step();  // warm-up: allocator cache, oneDNN's JIT kernels
for (let i = 0; i < pairs; i++) {
  for (const lib of i % 2 ? ['dnnl', 'openblas'] : ['openblas', 'dnnl']) {
    const name: string = native.setFp32Gemm(lib);
    const t0 = performance.now();
    step();
    times[name]!.push(performance.now() - t0);
  }
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
const ratios = times['oneDNN']!.map((v, i) => v / times['OpenBLAS']![i]!);
console.log(`threads ${T.getNumThreads()}; OpenBLAS (${native.blasCore}) median ${median(times['OpenBLAS']!).toFixed(0)} ms, oneDNN median ` +
  `${median(times['oneDNN']!).toFixed(0)} ms per step; oneDNN / OpenBLAS paired ratio median ${median(ratios).toFixed(3)} ` +
  `(min ${Math.min(...ratios).toFixed(3)}, max ${Math.max(...ratios).toFixed(3)}) over ${pairs} pairs`);
