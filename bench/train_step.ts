// Benchmark: one full C-JEPA / I-JEPA training step (forward, backward, AdamW, EMA) of the CIFAR-10
// CPU preset, ours vs PyTorch (the official model structure, test/py/ref_jepa.py), same images, masks,
// threads and thread-pool environment, in the same run. Prints medians and the ratio.
// Usage: node dist/bench/train_step.js [--method cjepa|ijepa] [--batch 128] [--steps 8] [--threads N]
// BENCH_BF16=1 runs both sides under bf16 autocast (ours: setPrecision; PyTorch: torch.autocast). `cjepa bench` supersedes this.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as T from '../src/tensor/index.js';
import { resolveConfig } from '../src/config.js';
import { buildNetworks } from '../src/method/trainer.js';
import { MultiBlockMaskSampler } from '../src/method/masks.js';
import { jepaForward, maskTensors } from '../src/method/step.js';
import { AdamW, ijepaParamGroups } from '../src/method/optim.js';
import { emaUpdate } from '../src/method/ema.js';
import { saveTensors } from '../src/io/tensors.js';

const { values: a } = parseArgs({ options: {
  method: { type: 'string', default: 'cjepa' }, batch: { type: 'string', default: '128' },
  steps: { type: 'string', default: '8' }, warmup: { type: 'string', default: '2' }, threads: { type: 'string', default: String(availableParallelism()) },
} });
const B = Number(a.batch), steps = Number(a.steps), warmup = Number(a.warmup), threads = Number(a.threads);
T.setNumThreads(threads);
if (process.env.BENCH_BF16 === '1') T.setPrecision('bf16');
const cfg = resolveConfig(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'configs', 'cifar10-cpu.yaml'), { method: a.method, optim: { batch: B } });
const nets = buildNetworks(cfg, 3);
const opt = new AdamW(ijepaParamGroups([...nets.encoder.namedParameters('encoder.'), ...nets.predictor!.namedParameters('predictor.')]));
const masks = new MultiBlockMaskSampler({ gridSize: [8, 8], allowOverlap: false, ...cfg.masks }, 0).sample(B);
const mk = maskTensors(masks);
const images = T.randn([B, 3, 32, 32], { generator: new T.Generator(0) });
const betaVicreg = a.method === 'ijepa' ? 0 : cfg.cjepa.betaVicreg;
const o = { betaVicreg, weights: { inv: 25, var: 25, cov: 1 }, placement: 'block-pair' as const, distance: 'smooth_l1' as const };

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
function ours(): number[] {
  const times: number[] = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    T.tidy(() => jepaForward({ encoder: nets.encoder, targetEncoder: nets.targetEncoder!, predictor: nets.predictor! }, images, mk.ctx, mk.tgt, o).loss.backward());
    opt.update(1e-4, 0.04);
    nets.encoder.zeroGrad(); nets.predictor!.zeroGrad();
    emaUpdate(nets.targetEncoder!.parameters(), nets.encoder.parameters(), 0.996);
    if (i >= warmup) times.push((performance.now() - t0) / 1000);
  }
  return times;
}
function pytorch(): number[] {
  const dir = mkdtempSync(join(tmpdir(), 'cjepa-bench-'));
  try {
    const inp: Record<string, T.Tensor> = { images, 'masks_enc.0': mk.ctx[0]! };
    mk.tgt.forEach((t, i) => { inp[`masks_pred.${i}`] = t; });
    saveTensors(join(dir, 'in.safetensors'), inp);
    const m = cfg.model;
    const pcfg = {
      threads, warmup, steps, bf16: process.env.BENCH_BF16 === '1', beta_vicreg: betaVicreg, n_targets: mk.tgt.length,
      encoder: { img_size: m.imgSize, patch_size: m.patch, in_chans: 3, embed_dim: 192, depth: m.depth, num_heads: 3 },
      predictor: { num_patches: 64, embed_dim: 192, predictor_embed_dim: cfg.predictor.embedDim, depth: cfg.predictor.depth, num_heads: cfg.predictor.numHeads },
    };
    const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'train_step_torch.py');
    const r = spawnSync('/usr/bin/python3', [script, join(dir, 'in.safetensors'), JSON.stringify(pcfg)], { encoding: 'utf8', env: process.env });
    if (r.status !== 0) throw new Error(`PyTorch side failed: ${r.stderr}`);
    return (JSON.parse(r.stdout.trim().split('\n').pop()!) as { times: number[] }).times;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// alternate the two sides so machine noise hits both alike
const oursT: number[] = [], torchT: number[] = [];
for (let round = 0; round < 2; round++) { oursT.push(...ours()); torchT.push(...pytorch()); }
const mo = median(oursT), mt = median(torchT);
console.log(`train step, ${a.method}, CIFAR-10 CPU preset (ViT 192/${cfg.model.depth}/3, patch 4, 32 px, predictor ${cfg.predictor.embedDim}/${cfg.predictor.depth}), batch ${B}`);
console.log(`threads ${threads} both sides; env GOMP_SPINCOUNT=${process.env.GOMP_SPINCOUNT} OPENBLAS_THREAD_TIMEOUT=${process.env.OPENBLAS_THREAD_TIMEOUT} both sides`);
console.log(`cjepa (TS + libtorch): median ${(mo * 1000).toFixed(0)} ms/step  (${(B / mo).toFixed(0)} img/s)`);
console.log(`PyTorch 1.13 (Python): median ${(mt * 1000).toFixed(0)} ms/step  (${(B / mt).toFixed(0)} img/s)`);
console.log(`ratio ours/PyTorch: ${(mo / mt).toFixed(2)}  (< 1 means faster than PyTorch)`);
