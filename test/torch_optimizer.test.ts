// The AdamW state of official I-JEPA checkpoints: PyTorch (test/py/torch_ckpt.py) trains tiny official
// networks two steps with init_opt's param groups and saves them in the official layout; `cjepa convert`
// must put every moment on its parameter by name (checked against PyTorch's opt.state[p] by name),
// refuse other layouts (networks converted, optimiser skipped with a warning), and `pretrain --resume`
// must continue converted runs: from the converted moments, or with fresh ones and a warning.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Tensor, zeros } from '../src/tensor/index.js';
import { loadTensors } from '../src/io/tensors.js';
import { readTorchFile } from '../src/io/torch_load.js';
import { PyDict } from '../src/io/pickle.js';
import { FROZEN_PARAMS } from '../src/io/ijepa_optimizer.js';
import { VisionTransformer } from '../src/nn/vit.js';
import { Predictor } from '../src/nn/predictor.js';
import { AdamW, ijepaParamGroups } from '../src/method/optim.js';
import { createMethod } from '../src/method/training_method.js';
import { resolveConfig } from '../src/config.js';
import { runTorch, maxAbsDiff } from './util/pytorch.js';
import { writeQuadrantIdx } from './util/synthetic.js';

const dir = mkdtempSync(join(tmpdir(), 'cjepa-pth-opt-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const P = (f: string) => join(dir, f);
const PY_DIR = fileURLToPath(new URL('../../test/py', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const { unlabelled: DATA } = writeQuadrantIdx(dir, 32, 5);
const CKPT = (run: string, step = 0) => join(run, 'checkpoints', `step-${String(step).padStart(7, '0')}`);
let ref: Record<string, Tensor> = {};

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, CJEPA_THREADS: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const warnings = (s: string) => s.split('\n').filter((l) => l.startsWith('warning'));
/** Two steps of pretrain --resume on the tiny dataset (masks that fit a 4x4 grid, no monitor). */
const resume = (run: string, ...extra: string[]) => cli('pretrain', '--out', run, '--resume', '--steps', '2', '--batch', '4', '--workers', '0',
  '--monitor-every', '0', '--set', 'masks.minKeep=1', ...extra);

before(() => {
  ref = runTorch(`
import torch_ckpt
d = ${JSON.stringify(dir)}
sds, moments = torch_ckpt.official_trained(d + '/trained.pth.tar', steps=2)
torch_ckpt.official_trained(d + '/two_groups.pth.tar', steps=2, layout='two_groups')
torch_ckpt.official_trained(d + '/swapped.pth.tar', steps=2, layout='swapped')
torch_ckpt.plain(d + '/plain.pth', sds['target_encoder'])
torch_ckpt.evil_files(d, d)
out.update(moments)
`, {}, [PY_DIR]);
});

test('convert writes optimizer.safetensors: every AdamW moment equals PyTorch\'s for the parameter of that name; optimizerStep from the state', () => {
  const run = P('trained');
  const c = cli('convert', P('trained.pth.tar'), run, '--heads', '3', '--json');
  assert.equal(c.status, 0, c.stderr);
  const j = JSON.parse(c.stdout);
  assert.deepEqual(j.optimizer, { params: 47, step: 2 });
  assert.deepEqual(j.not_converted, ['scaler']);
  assert.match(c.stderr, /wrote optimizer\.safetensors \(AdamW moments of 47 parameters, step 2\)/);
  assert.deepEqual(warnings(c.stderr), []);
  const got = loadTensors(join(CKPT(run), 'optimizer.safetensors')).tensors;
  const want = Object.keys(ref).filter((k) => k !== 'step');
  assert.deepEqual(Object.keys(got).sort(), want.sort());
  for (const k of want) assert.equal(maxAbsDiff(got[k]!, ref[k]!), 0, k);
  assert.ok(want.some((k) => k === 'exp_avg.predictor.mask_token') && want.some((k) => k === 'exp_avg_sq.encoder.norm.bias'));
  const st = JSON.parse(readFileSync(join(CKPT(run), 'state.json'), 'utf8'));
  assert.equal(st.optimizerStep, ref['step']!.item());
  assert.equal(st.optimizerStep, 2);
  const cfg = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8'));
  assert.deepEqual([cfg.optim.betas, cfg.optim.eps], [[0.9, 0.999], 1e-8]);

  // the names are exactly those cjepa's AdamW saves and loads for this config's trainable networks
  const method = createMethod(resolveConfig(undefined, cfg), 1);
  try {
    const named = method.trainable.flatMap(([prefix, m]) => m.namedParameters(`${prefix}.`));
    const opt = new AdamW(ijepaParamGroups(named));
    assert.deepEqual(Object.keys(opt.stateTensors()).sort(), Object.keys(got).sort());
    opt.loadStateTensors(got, 2);
    assert.equal(maxAbsDiff(opt.stateTensors()['exp_avg.predictor.mask_token']!, ref['exp_avg.predictor.mask_token']!), 0);
    // a moment of another shape is refused, not broadcast by copy_
    assert.throws(() => opt.loadStateTensors({ ...got, 'exp_avg.encoder.norm.weight': zeros([1]) }, 2),
      /optimizer state 'exp_avg\.encoder\.norm\.weight' has shape \[1\], the parameter \[48\]/);
    opt.dispose();
  } finally {
    method.dispose();
  }
});

test('the frozen parameters the mapping expects without state are exactly the frozen ones of cjepa\'s networks', () => {
  const enc = new VisionTransformer({ imgSize: 16, patchSize: 4, inChans: 1, embedDim: 48, depth: 1, numHeads: 3 });
  const pred = new Predictor({ grid: [4, 4], embedDim: 48, predictorEmbedDim: 24, depth: 1, numHeads: 3 });
  const frozen = [...enc.namedParameters(), ...pred.namedParameters()].filter(([, p]) => !p.requiresGrad).map(([n]) => n);
  assert.deepEqual(frozen.sort(), [...FROZEN_PARAMS].sort());
  enc.dispose();
  pred.dispose();
});

test('the AdamW state dict needs no global beyond the allow-list (ints, floats, tuples, lists, dicts, tensors)', () => {
  const f = readTorchFile(P('trained.pth.tar'));
  try {
    assert.deepEqual(f.refused, []);
    const opt = (f.root as PyDict).get('opt') as PyDict;
    const g = (opt.get('param_groups') as PyDict[])[0]!;
    assert.deepEqual(g.get('betas'), [0.9, 0.999]); // a tuple
    assert.equal(g.get('foreach'), null);
  } finally {
    f.close();
  }
});

test('another param-group layout, or a refused global in opt: the networks are converted, the optimiser skipped with a warning naming the entry', () => {
  const two = cli('convert', P('two_groups.pth.tar'), P('two'), '--heads', '3', '--json');
  assert.equal(two.status, 0, two.stderr);
  assert.deepEqual(warnings(two.stderr), [
    `warning: optimiser state not converted (${P('two_groups.pth.tar')}: entry 'opt': has 2 param groups; the official init_opt layout is 4 groups: ` +
    'encoder weights, predictor weights, encoder biases/1-D, predictor biases/1-D); the networks are. A resume starts AdamW with fresh moments',
  ]);
  const j = JSON.parse(two.stdout);
  assert.equal(j.optimizer, null);
  assert.deepEqual(j.not_converted, ['opt', 'scaler']);
  assert.deepEqual(j.networks, ['encoder', 'target_encoder', 'predictor']);
  assert.ok(!existsSync(join(CKPT(P('two')), 'optimizer.safetensors')));
  assert.equal(JSON.parse(readFileSync(join(CKPT(P('two')), 'state.json'), 'utf8')).optimizerStep, 0);

  const swapped = cli('convert', P('swapped.pth.tar'), P('swapped'), '--heads', '3');
  assert.equal(swapped.status, 0, swapped.stderr);
  assert.match(warnings(swapped.stderr).join('\n'), /entry 'opt': param_groups\[0\] has 8 parameters, the checkpoint's encoder has 10 weights \(no bias, not 1-D\); the official init_opt layout/);
  assert.ok(!existsSync(join(CKPT(P('swapped')), 'optimizer.safetensors')));

  const evil = cli('convert', P('evil_in_opt.pth.tar'), P('evil'), '--heads', '3');
  assert.equal(evil.status, 0, evil.stderr);
  assert.match(warnings(evil.stderr).join('\n'), /^warning: optimiser state not converted \(\/\S+evil_in_opt\.pth\.tar: entry 'opt'\["param_groups"\]\[0\] is built by 'posix\.system', which is not on the allow-list.*nothing was run/);
  assert.ok(!existsSync(P('evil_in_opt.pth.tar.pwned')), 'the payload ran');
});

test('pretrain --resume of converted runs: from the converted moments; without them (other layout, plain state dict) fresh moments and one warning', () => {
  const withOpt = resume(P('trained'), '--data', DATA);
  assert.equal(withOpt.status, 0, withOpt.stderr);
  assert.match(withOpt.stderr, /resumed from .*step-0000000 at step 0/);
  assert.deepEqual(warnings(withOpt.stderr), []);
  // AdamW continued from PyTorch's step 2 (bias correction of steps 3 and 4)
  assert.equal(JSON.parse(readFileSync(join(CKPT(P('trained'), 2), 'state.json'), 'utf8')).optimizerStep, 4);

  const two = resume(P('two'), '--set', `data=${DATA}`); // the converted config's data (ImageNet) replaced
  assert.equal(two.status, 0, two.stderr);
  assert.deepEqual(warnings(two.stderr).map((l) => l.replace(/\(.*\)/, '(...)')), [`warning: ${CKPT(P('two'))} has no optimizer.safetensors (...): AdamW starts with fresh moments`]);
  assert.match(two.stderr, /converted without the optimiser state: .*has 2 param groups/);
  assert.equal(JSON.parse(readFileSync(join(CKPT(P('two'), 2), 'state.json'), 'utf8')).optimizerStep, 2);

  const pc = cli('convert', P('plain.pth'), P('plain'), '--heads', '3');
  assert.equal(pc.status, 0, pc.stderr);
  const plain = resume(P('plain'), '--data', DATA);
  assert.equal(plain.status, 0, plain.stderr);
  assert.deepEqual(warnings(plain.stderr).map((l) => l.replace(/\(.*\)/, '(...)')), [
    'warning: the converted checkpoint has no target_encoder: it starts as a copy of the encoder',
    'warning: the converted checkpoint has no predictor: it starts from its initialisation',
    `warning: ${CKPT(P('plain'))} has no optimizer.safetensors (...): AdamW starts with fresh moments`,
  ]);
  const enc = loadTensors(join(CKPT(P('plain'), 2), 'target_encoder.safetensors')).tensors;
  assert.ok(enc['pos_embed'] && existsSync(join(CKPT(P('plain'), 2), 'predictor.safetensors')));
});
