// Every tensor of a training step on the default device. There is no GPU here, so the step runs on
// libtorch's 'meta' device (shapes and devices, no data): networks built, forward, backward, AdamW
// update (gradient clipping included) and EMA for C-JEPA (two views, projector), I-JEPA and VICReg. A creator that ignores the
// default device makes a CPU tensor; the op mixing it with meta tensors throws (as it would on CUDA),
// or the final check finds it. An explicit CPU generator filling a meta tensor throws as on CUDA too.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, tensor, zeros, empty, Generator, tidy, runtime } from '../src/tensor/index.js';
import { useMetaDevice } from '../src/tensor/testing.js';
import { resolveConfig, type PretrainConfig } from '../src/config.js';
import { createMethod, type TrainingMethod } from '../src/method/training_method.js';
import { AdamW, ijepaParamGroups, clipGradNorm_ } from '../src/method/optim.js';
import { truncNormal_ } from '../src/nn/init.js';
import type { Batch } from '../src/data/index.js';

afterEach(() => useMetaDevice(false));

const TINY = { model: { name: 'vit_tiny', patch: 4, imgSize: 16, depth: 1 }, predictor: { embedDim: 24, depth: 1, numHeads: 3 }, masks: { minKeep: 1 } };

/** A batch as the data loader gives it: host float32 views (never on the device). */
function hostBatch(views: number, B = 4, C = 3, S = 16): Batch {
  const n = B * C * S * S;
  return {
    views: Array.from({ length: views }, (_, v) => Float32Array.from({ length: n }, (_, i) => Math.sin(i + v))),
    shape: [B, C, S, S], labels: new Int32Array(B).fill(-1), indices: Int32Array.from({ length: B }, (_, i) => i), waitMs: 0, skipped: 0, bad: [],
  };
}

/** Names of tensors not on `device`. */
function offDevice(named: [string, Tensor | undefined][], device: string): string[] {
  return named.filter(([, t]) => t !== undefined && t.device !== device).map(([n, t]) => `${n} on ${t!.device}`);
}

/** One training step as trainer.ts runs it (gradient clipping on), minus item() on the loss terms (meta has no data). */
function stepOn(cfg: PretrainConfig): { method: TrainingMethod; opt: AdamW } {
  const method = createMethod(cfg, 3);
  const named = method.trainable.flatMap(([prefix, m]) => m.namedParameters(`${prefix}.`));
  const opt = new AdamW(ijepaParamGroups(named));
  tidy(() => {
    const terms = method.forward(hostBatch(method.views.length));
    assert.equal(terms['loss']!.device, runtime.defaultDevice);
    terms['loss']!.backward();
  });
  const norm = clipGradNorm_(opt.groups.flatMap((g) => g.params.map(([, p]) => p)), 1.0);
  assert.equal(norm.device, runtime.defaultDevice);
  norm.dispose();
  opt.update(1e-3, 0.04);
  method.afterUpdate(0, 10); // EMA of the target encoder (JEPA methods)
  return { method, opt };
}

const CASES: [string, object][] = [
  ['C-JEPA, two views with a projector', { method: 'cjepa', cjepa: { placement: 'views', projector: [32, 32], betaVicreg: 0.1 } }],
  ['C-JEPA, context placement', { method: 'cjepa', cjepa: { placement: 'context' } }],
  ['I-JEPA', { method: 'ijepa' }],
  ['I-JEPA, L2 distance', { method: 'ijepa', loss: { distance: 'l2' } }],
  ['VICReg', { method: 'vicreg', vicreg: { expander: [32, 32] } }],
];

for (const [name, over] of CASES) {
  test(`${name}: networks, forward, backward, AdamW and EMA keep every parameter, buffer, gradient and moment on the default device (meta)`, () => {
    const cfg = resolveConfig(undefined, TINY, over);
    useMetaDevice(true);
    const { method, opt } = stepOn(cfg);
    try {
      const all: [string, Tensor | undefined][] = [];
      for (const [stem, net] of Object.entries(method.networks)) {
        for (const [n, p] of net.namedParameters(`${stem}.`)) all.push([n, p], [`${n}.grad`, p.grad]);
        all.push(...net.namedBuffers(`${stem}.`));
      }
      all.push(...Object.entries(opt.stateTensors()));
      assert.deepEqual(offDevice(all, 'meta'), []);
      // the step reached the optimiser and the gradients (the check is not vacuous)
      const grads = all.filter(([n, t]) => n.endsWith('.grad') && t !== undefined);
      assert.ok(grads.length > 10, `${grads.length} gradients`);
      assert.ok(Object.keys(opt.stateTensors()).length === 2 * method.trainable.reduce((s, [, m]) => s + m.trainableParameters().length, 0));
    } finally {
      opt.dispose();
      method.dispose();
    }
  });
}

test('the meta device is a test hook: off it, meta is refused; on it, a CPU tensor mixed in and a CPU generator on a meta tensor throw', () => {
  assert.throws(() => zeros([2], { device: 'meta' }), /unsupported device 'meta'/);
  useMetaDevice(true);
  const m = zeros([2, 3]);
  assert.equal(m.device, 'meta');
  assert.throws(() => m.add(zeros([2, 3], { device: 'cpu' })), /expected all tensors on one device, found meta and cpu/);
  // ops whose meta kernels skip the device check are checked at the binding, as CUDA checks them
  assert.throws(() => m.gather(1, zeros([2, 1], { dtype: 'int64', device: 'cpu' })), /gather.*expected all tensors on one device, found meta and cpu/);
  assert.equal(m.add(tensor(2)).device, 'meta', 'a 0-dim CPU tensor is a scalar, as on CUDA');
  assert.throws(() => m.sum().item(), /meta/i);
  assert.throws(() => empty([2, 3]).uniform_(0, 1, new Generator(0)), /generator on 'cpu' cannot fill a tensor on 'meta'/);
  // the initialisers draw on the CPU from their generator and copy: same weights on every device
  assert.equal(truncNormal_(empty([4, 4]), 0.02, new Generator(1)).device, 'meta');
  m.dispose();
});
