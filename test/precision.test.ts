// Mixed precision: autocast regions (src/tensor/runtime.ts) and how the config and CLI choose them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor, randn, Generator, F, noGrad, autocast, setPrecision, runtime, cpuHasBf16, autoPrecision, tidy } from '../src/tensor/index.js';
import { VisionTransformer } from '../src/nn/vit.js';
import { extractFeatures } from '../src/eval/features.js';
import { openDataset } from '../src/data/index.js';
import { writeQuadrantIdx } from './util/synthetic.js';
import { resolveConfig, validateConfig, DEFAULT_CONFIG } from '../src/config.js';

test('autocast: bf16 matmuls under bf16, fp32 weights and gradients, nothing changes under fp32', () => {
  const g = new Generator(0);
  const x = randn([8, 16], { generator: g }), w = randn([4, 16], { generator: g }).requiresGrad_(true);
  setPrecision('fp32');
  assert.equal(autocast(() => F.linear(x, w)).dtype, 'float32');
  setPrecision('bf16');
  try {
    const y = autocast(() => F.linear(x, w));
    assert.equal(y.dtype, 'bfloat16');
    const exact = noGrad(() => F.linear(x, w));
    const err = y.float().sub(exact).abs().max().item() / exact.abs().max().item();
    assert.ok(err > 1e-5 && err < 2e-2, `bf16 rounding: relative error ${err}`);
    y.float().sum().backward();
    assert.equal(w.grad!.dtype, 'float32');
    assert.equal(w.dtype, 'float32');
    // outside the region ops run in fp32 again
    assert.equal(F.linear(x, w).dtype, 'float32');
  } finally {
    setPrecision('fp32');
  }
});

test('autocast: nested regions restore the outer state, and the cast-weight cache is dropped at the end', () => {
  const g = new Generator(1);
  const x = randn([2, 8], { generator: g }), w = randn([3, 8], { generator: g }).requiresGrad_(true);
  setPrecision('bf16');
  try {
    autocast(() => {
      autocast(() => F.linear(x, w));
      assert.equal(F.linear(x, w).dtype, 'bfloat16', 'still on after an inner region ends');
    });
    assert.equal(F.linear(x, w).dtype, 'float32', 'off after the outer region');
    // an in-place weight update between regions is seen by the next region (the bf16 copy is not stale)
    const before = tidy(() => autocast(() => F.linear(x, w)).float());
    noGrad(() => w.mul_(2));
    const after = tidy(() => autocast(() => F.linear(x, w)).float());
    const ratio = after.div(before.add(1e-12)).mean().item();
    assert.ok(Math.abs(ratio - 2) < 1e-2, `output doubled with the weights: ratio ${ratio}`);
    // an exception inside a region still closes it
    assert.throws(() => autocast(() => { throw new Error('boom'); }), /boom/);
    assert.equal(F.linear(x, w).dtype, 'float32');
  } finally {
    setPrecision('fp32');
  }
});

test('precision: auto follows the hardware; bad values are refused naming the field', () => {
  assert.equal(autoPrecision(), cpuHasBf16() ? 'bf16' : 'fp32');
  assert.equal(setPrecision('auto'), autoPrecision());
  setPrecision('fp32');
  assert.throws(() => setPrecision('fp16' as never), /unknown precision 'fp16'/);
  assert.equal(runtime.precision, 'fp32');
  assert.throws(() => validateConfig({ ...structuredClone(DEFAULT_CONFIG), precision: 'half' as never }), /precision.*fp32, bf16 or auto/);
  assert.equal(resolveConfig(undefined, { precision: 'bf16' }).precision, 'bf16');
});

test('embeddings under bf16 autocast match fp32: per-image cosine > 0.99, raw and centred (mean and last4 pooling, the embed path)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cjepa-precision-'));
  const enc = new VisionTransformer({ imgSize: 16, patchSize: 4, inChans: 1, embedDim: 48, depth: 3, numHeads: 3, seed: 3 });
  try {
    // larger weights than the init so the blocks, where bf16 rounds, shape the embeddings
    noGrad(() => { for (const [, p] of enc.namedParameters()) if (p.ndim >= 2 && p.requiresGrad) p.mul_(4); });
    const ds = await openDataset(writeQuadrantIdx(dir, 24, 7).unlabelled);
    for (const pooling of ['mean', 'last4'] as const) {
      const feats: Record<string, Tensor> = {};
      for (const p of ['fp32', 'bf16'] as const) {
        setPrecision(p);
        const f = await extractFeatures(enc, ds, { pooling, batchSize: 8 });
        feats[p] = f.features;
      }
      setPrecision('fp32');
      const [a, b] = [feats['bf16']!, feats['fp32']!];
      assert.equal(a.dtype, 'float32');
      const diff = tidy(() => a.sub(b).abs().max().item());
      assert.ok(diff > 0, `${pooling}: bf16 gave fp32's embeddings exactly; autocast did not run`);
      const minCos = (x: Tensor, y: Tensor) => tidy(() => F.normalize(x, 2, 1).mul(F.normalize(y, 2, 1)).sum(1).min().item());
      const raw = minCos(a, b);
      const centred = tidy(() => minCos(a.sub(a.mean(0, true)), b.sub(b.mean(0, true))));
      assert.ok(raw > 0.99 && centred > 0.99, `${pooling}: min cosine ${raw}, centred ${centred}`);
      a.dispose();
      b.dispose();
    }
  } finally {
    setPrecision('fp32');
    enc.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});
