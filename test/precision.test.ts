// Mixed precision: autocast regions (src/tensor/runtime.ts) and how the config and CLI choose them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randn, Generator, F, noGrad, autocast, setPrecision, runtime, cpuHasBf16, autoPrecision, tidy } from '../src/tensor/index.js';
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
