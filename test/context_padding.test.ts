// Variable-length contexts (masks.contextFit 'pad'): every image keeps its whole context, rows are padded
// to the batch's longest and attention masks the padding. Checked by exact invariances rather than a
// reference: a padded batch must give every image what that image alone, unpadded, gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Generator, randn, tensor, noGrad, tidy, cat } from '../src/tensor/index.js';
import { VisionTransformer, type ViTConfig } from '../src/nn/vit.js';
import { Predictor, type PredictorConfig } from '../src/nn/predictor.js';
import { Expander } from '../src/nn/expander.js';
import { MultiBlockMaskSampler, padMask, selectMasks, type MultiBlockMaskConfig } from '../src/method/masks.js';
import { jepaForward, maskTensors } from '../src/method/step.js';
import { poolTokens, VICREG_WEIGHTS } from '../src/method/losses.js';
import { resolveConfig } from '../src/config.js';
import { JepaMethod } from '../src/method/jepa_method.js';
import { maxAbsDiff } from './util/pytorch.js';

const GRID: [number, number] = [8, 8];
const MASKS: MultiBlockMaskConfig = {
  gridSize: GRID, nTargets: 4, targetScale: [0.15, 0.2], targetAspect: [0.75, 1.5], contextScale: [0.85, 1.0],
  contextAspect: [1, 1], minKeep: 4, allowOverlap: false, mode: 'unbiased', contextMode: 'complement', contextFit: 'pad',
};
const ENC: ViTConfig = { imgSize: 32, patchSize: 4, inChans: 3, embedDim: 32, depth: 2, numHeads: 2, seed: 3 };
const PRED: PredictorConfig = { grid: GRID, embedDim: 32, predictorEmbedDim: 16, depth: 2, numHeads: 2, seed: 3 };

const idx = (row: Int32Array, n = row.length) => tensor(BigInt64Array.from(row.subarray(0, n), (v) => BigInt(v)), [1, n]);

test('contextFit pad: each image keeps its whole complement context, padded by repeating its last index', () => {
  const m = new MultiBlockMaskSampler(MASKS, 5).sample(16);
  const lens = m.contextLengths!;
  assert.ok(lens, 'lengths are reported');
  assert.equal(m.contextLength, Math.max(...lens));
  assert.ok(Math.min(...lens) < m.contextLength, 'the batch has contexts of different lengths (else the test proves nothing)');
  for (let i = 0; i < 16; i++) {
    const row = m.context[i]!, n = lens[i]!;
    assert.equal(row.length, m.contextLength);
    const real = new Set(row.subarray(0, n));
    assert.equal(real.size, n, 'real indices are distinct');
    for (let k = n; k < row.length; k++) assert.equal(row[k], row[n - 1], 'padding repeats the last real index');
    // complement: context = every patch outside the targets, nothing truncated
    const inTarget = new Set(m.targets.flatMap((t) => [...t[i]!]));
    for (let p = 0; p < 64; p++) assert.equal(real.has(p), !inTarget.has(p), `image ${i}, patch ${p}`);
  }
  // the official truncation keeps only the shortest
  const t = new MultiBlockMaskSampler({ ...MASKS, contextFit: 'truncate' }, 5).sample(16);
  assert.equal(t.contextLengths, undefined);
  assert.ok(t.context.every((r) => r.length === t.contextLength));
  // data parallelism: a rank's rows keep their lengths
  const sel = selectMasks(m, [3, 7]);
  assert.deepEqual([...sel.contextLengths!], [lens[3], lens[7]]);
  assert.throws(() => padMask(Int32Array.from([1, 2, 3]), 2), /cannot pad 3 indices to 2/);
});

test('padded contexts: the encoder and predictor give each image exactly what it gets alone, unpadded', () => {
  const m = new MultiBlockMaskSampler(MASKS, 9).sample(6);
  const lens = m.contextLengths!;
  const enc = new VisionTransformer(ENC), pred = new Predictor(PRED);
  const images = randn([6, 3, 32, 32], { generator: new Generator(1) });
  noGrad(() => tidy(() => {
    const mt = maskTensors(m);
    assert.ok(mt.ctxPad, 'padding tensors are built');
    const zc = enc.forward(images, mt.ctx, mt.ctxPad!.keyBias);
    const z = pred.forward(zc, mt.ctx, mt.tgt, mt.ctxPad!.keyBias); // (M B, Lt, D), block-major
    for (let i = 0; i < 6; i++) {
      const img = images.narrow(0, i, 1);
      const ctx1 = [idx(m.context[i]!, lens[i])];
      const alone = enc.forward(img, ctx1);
      const mine = zc.narrow(0, i, 1).narrow(1, 0, lens[i]!);
      assert.ok(maxAbsDiff(mine, alone) < 1e-5, `encoder, image ${i}: ${maxAbsDiff(mine, alone)}`);
      const tgt1 = m.targets.map((t) => idx(t[i]!));
      const predAlone = pred.forward(alone, ctx1, tgt1);
      const predMine = cat(m.targets.map((_, b) => z.narrow(0, b * 6 + i, 1)), 0);
      assert.ok(maxAbsDiff(predMine, predAlone) < 1e-5, `predictor, image ${i}: ${maxAbsDiff(predMine, predAlone)}`);
    }
    // control: without the key bias the padding leaks into the real tokens
    const leaky = enc.forward(images, mt.ctx);
    const i = [...lens].findIndex((n) => n < m.contextLength);
    const alone = enc.forward(images.narrow(0, i, 1), [idx(m.context[i]!, lens[i])]);
    assert.ok(maxAbsDiff(leaky.narrow(0, i, 1).narrow(1, 0, lens[i]!), alone) > 1e-4, 'unmasked padding changes the result');
  }));
  enc.dispose(); pred.dispose(); images.dispose();
});

test('padded contexts: pooling averages the real tokens only, and the two-view C-JEPA loss ignores the padding', () => {
  noGrad(() => tidy(() => {
    const x = randn([2, 4, 3], { generator: new Generator(2) });
    const valid = tensor(Float32Array.from([1, 1, 0, 0, 1, 1, 1, 1]), [2, 4]);
    const p = poolTokens(x, valid);
    assert.ok(maxAbsDiff(p.narrow(0, 0, 1), x.narrow(0, 0, 1).narrow(1, 0, 2).mean(1)) < 1e-7);
    assert.ok(maxAbsDiff(p.narrow(0, 1, 1), x.narrow(0, 1, 1).mean(1)) < 1e-7);
  }));
  // the same batch and masks, padding made of other (real) patch indices: identical loss terms
  const m = new MultiBlockMaskSampler(MASKS, 11).sample(8);
  const lens = m.contextLengths!;
  const other = { ...m, context: m.context.map((r, i) => { const o = r.slice(); for (let k = lens[i]!; k < o.length; k++) o[k] = (k * 7) % 64; return o; }) };
  const nets = () => {
    const encoder = new VisionTransformer(ENC), targetEncoder = new VisionTransformer(ENC), predictor = new Predictor(PRED);
    targetEncoder.loadStateDict(encoder.stateDict());
    return { encoder, targetEncoder, predictor };
  };
  const images = randn([8, 3, 32, 32], { generator: new Generator(4) });
  const o = { betaVicreg: 0.1, weights: VICREG_WEIGHTS, placement: 'views' as const, distance: 'smooth_l1' as const };
  const run = (mb: typeof m) => {
    const n = nets(), proj = new Expander([32, 64, 64], 3);
    const out = noGrad(() => tidy(() => {
      const mt = maskTensors(mb);
      const t = jepaForward(n, images, mt.ctx, mt.tgt, o, undefined, (v) => proj.forward(v), { ctxPad: mt.ctxPad });
      return { loss: t.loss.item(), vicreg: t.vicreg.item(), jepa: t.jepa.item() };
    }));
    n.encoder.dispose(); n.targetEncoder.dispose(); n.predictor.dispose(); proj.dispose();
    return out;
  };
  const a = run(m), b = run(other);
  for (const k of ['loss', 'vicreg', 'jepa'] as const) assert.ok(Math.abs(a[k] - b[k]) <= 1e-6 * Math.abs(a[k]), `${k}: ${a[k]} vs ${b[k]}`);
  images.dispose();
});

test('masks.contextFit is validated and reaches the sampler', () => {
  assert.throws(() => resolveConfig(undefined, { masks: { contextFit: 'stretch' } }), /'masks\.contextFit' must be truncate or pad/);
  assert.equal(resolveConfig(undefined, {}).masks.contextFit, 'truncate');
  const method = new JepaMethod(resolveConfig(undefined, { masks: { contextMode: 'complement', contextFit: 'pad' } }), 3);
  assert.ok(method.sampler.sample(8).contextLengths, 'the trainer\'s sampler pads');
  method.dispose();
  const official = new JepaMethod(resolveConfig(undefined, {}), 3);
  assert.equal(official.sampler.sample(8).contextLengths, undefined);
  official.dispose();
});
