// The library as a user imports it from the package root: embedImages (a folder or a list of files),
// the evaluation transform with its normalisation, one vocabulary for the encoders (target / online),
// and class names + normalisation in embed / eval outputs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as cjepa from '../src/index.js';
import { embedImages, evalPreprocessing, evalTransform, NORM_STATS, encoderChoice, loadEncoderFromCheckpoint, embedDataset, evaluateCheckpoint, resolveConfig, pretrain, loadTensors } from '../src/index.js';
import { makeFolder } from './fixtures/data_fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'cjepa-library-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const IMAGES = join(dir, 'images');
const RUN = join(dir, 'run');

before(async () => {
  await makeFolder(IMAGES, 12, 16, 3); // class0..class2, 4 PNGs each
  await pretrain(resolveConfig(undefined, {
    method: 'cjepa', data: `folder:${IMAGES}`, out: RUN, workers: 0, threads: 1, seed: 1,
    model: { name: 'vit_tiny', patch: 4, imgSize: 16, depth: 1, embedDim: 32, numHeads: 2 }, predictor: { embedDim: 16, depth: 1, numHeads: 2 },
    masks: { minKeep: 1 }, optim: { batch: 4, steps: 2 }, log: { every: 10, monitorEvery: 0, checkpointEvery: 100, monitorSamples: 16 },
  }), { onMessage: () => {} });
});

test('the package root exports embedImages and the evaluation transform with its normalisation', () => {
  for (const k of ['embedImages', 'evalTransform', 'evalPreprocessing', 'NORM_STATS', 'encoderChoice', 'embedDataset', 'evaluateCheckpoint']) {
    assert.equal(typeof (cjepa as Record<string, unknown>)[k] === 'function' || typeof (cjepa as Record<string, unknown>)[k] === 'object', true, k);
  }
  const p = evalPreprocessing(224);
  assert.deepEqual(p.view, evalTransform({ size: 224 }));
  assert.deepEqual(p.view.crop, { kind: 'center', resize: 256 });
  assert.deepEqual({ mean: p.mean, std: p.std }, NORM_STATS.imagenet);
  assert.deepEqual(evalPreprocessing(32, 'cifar10').mean, NORM_STATS.cifar10.mean);
  assert.deepEqual(evalPreprocessing(28, 'fashion-mnist', 1), { view: evalTransform({ size: 28 }), mean: [0.286], std: [0.353] });
});

test('encoders are target / online / auto; the file stems are aliases', () => {
  assert.equal(encoderChoice(undefined), 'auto');
  assert.equal(encoderChoice('target'), 'target');
  assert.equal(encoderChoice('target_encoder'), 'target');
  assert.equal(encoderChoice('online'), 'online');
  assert.equal(encoderChoice('encoder'), 'online');
  assert.throws(() => encoderChoice('context'), /unknown encoder 'context' \(expected target, online or auto\)/);
  for (const [which, network] of [['target', 'target_encoder'], ['target_encoder', 'target_encoder'], ['online', 'encoder'], ['encoder', 'encoder'], ['auto', 'target_encoder']] as const) {
    const l = loadEncoderFromCheckpoint(RUN, { which });
    try { assert.equal(l.network, network, which); } finally { l.encoder.dispose(); }
  }
});

test('embedImages: a folder (with its class names) or a list of files, rows in path order, with the normalisation', async () => {
  const all = await embedImages(IMAGES, RUN);
  try {
    assert.deepEqual(all.embeddings.shape, [12, 32]);
    assert.equal(all.paths.length, 12);
    assert.ok(all.paths.every((p) => p.startsWith(IMAGES) && p.endsWith('.png')));
    assert.deepEqual(all.classNames, ['class0', 'class1', 'class2']);
    assert.deepEqual([...all.labels].slice(0, 4), [0, 0, 0, 0]);
    assert.deepEqual(all.normalisation, NORM_STATS.imagenet, 'a folder has no statistics of its own: ImageNet\'s');
    assert.equal(all.network, 'target_encoder');
    // two files from different class folders, in the order given: the same rows as in the folder's embedding
    const pick = [all.paths[9]!, all.paths[2]!];
    const two = await embedImages(pick, RUN, { which: 'target' });
    try {
      assert.deepEqual(two.paths, pick);
      assert.deepEqual([...two.labels], [-1, -1]);
      const a = two.embeddings.toArray(), b = [...all.embeddings.select(0, 9).toArray(), ...all.embeddings.select(0, 2).toArray()];
      assert.ok(a.every((x, i) => Math.abs(x - b[i]!) < 1e-5), 'same embedding whichever way an image comes in');
    } finally {
      two.embeddings.dispose();
    }
    const online = await embedImages(all.paths[0]!, RUN, { which: 'online' });
    try { assert.equal(online.network, 'encoder'); assert.deepEqual(online.embeddings.shape, [1, 32]); } finally { online.embeddings.dispose(); }
  } finally {
    all.embeddings.dispose();
  }
  await assert.rejects(embedImages([join(IMAGES, 'nope.png')], RUN), /embedImages: no such image file: .*nope\.png/);
  await assert.rejects(embedImages([], RUN), /the list of image paths is empty/);
});

test('embed output metadata and the eval report carry the class names and the normalisation', async () => {
  const out = join(dir, 'emb.safetensors');
  const r = await embedDataset({ checkpoint: RUN, data: `folder:${IMAGES}`, out });
  assert.deepEqual(r.classNames, ['class0', 'class1', 'class2']);
  const { metadata, tensors } = loadTensors(out);
  for (const t of Object.values(tensors)) t.dispose();
  assert.deepEqual(JSON.parse(metadata.class_names!), ['class0', 'class1', 'class2']);
  assert.deepEqual(JSON.parse(metadata.normalisation!), r.normalisation);
  assert.deepEqual(r.normalisation, NORM_STATS.imagenet);
  const rep = await evaluateCheckpoint({ checkpoint: RUN, data: `folder:${IMAGES}`, valData: `folder:${IMAGES}`, protocols: ['knn'], knn: { ks: [1] } });
  assert.deepEqual(rep.class_names, ['class0', 'class1', 'class2']);
  assert.deepEqual(rep.normalisation, r.normalisation);
});
