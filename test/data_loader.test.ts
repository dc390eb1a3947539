import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { splitDataset } from '../src/data/dataset.js';
import type { Dataset } from '../src/data/dataset.js';
import { encodeIdx } from '../src/data/idx.js';
import { type Batch, DataLoader } from '../src/data/loader.js';
import { openDataset } from '../src/data/specs.js';
import { evalTransform, ijepaTransform, vicregViews } from '../src/data/transforms.js';
import { makeFolder } from './fixtures/data_fixture.js';

const tmp = mkdtempSync(join(tmpdir(), 'cjepa-loader-'));
process.env['CJEPA_DATA'] = join(tmp, 'data-cache'); // folder file lists: not into ~/.cache
const folder = join(tmp, 'imgs');
const corruptFolder = join(tmp, 'with-corrupt');
const N = 24;
after(() => rmSync(tmp, { recursive: true, force: true }));

before(async () => {
  await makeFolder(folder, N, 16, 3);
  // JPEGs, so batches go through the joined decode; the truncated one breaks its group.
  await makeFolder(corruptFolder, N, 16, 2, ['class0/zz-bad.png', 'class1/aa-bad.jpg', 'class1/img0005-trunc.jpg'], 'jpg');
});

async function collect(loader: DataLoader, epoch: number): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of loader.epoch(epoch)) out.push(b);
  return out;
}

function sameBatches(a: Batch[], b: Batch[]): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.deepEqual(a[i]!.shape, b[i]!.shape);
    assert.deepEqual(a[i]!.indices, b[i]!.indices);
    assert.deepEqual(a[i]!.labels, b[i]!.labels);
    assert.equal(a[i]!.skipped, b[i]!.skipped);
    assert.equal(a[i]!.views.length, b[i]!.views.length);
    for (let v = 0; v < a[i]!.views.length; v++) assert.deepEqual(a[i]!.views[v], b[i]!.views[v], `batch ${i} view ${v}`);
  }
}

test('same seed gives the same batches with 0 and 2 workers (folder and in-memory datasets)', async () => {
  const ds = await openDataset(`folder:${folder}`, { cache: 'none' });
  const opts = { batchSize: 5, views: vicregViews({ size: 16 }), seed: 7, norm: 'cifar10' as const };
  const l0 = new DataLoader(ds, { ...opts, workers: 0 });
  const l2 = new DataLoader(ds, { ...opts, workers: 2 });
  try {
    for (const e of [0, 1]) {
      const a = await collect(l0, e);
      const b = await collect(l2, e);
      sameBatches(a, b);
      assert.equal(a.length, 4);
      for (const batch of a) {
        assert.deepEqual(batch.shape, [5, 3, 16, 16]);
        assert.equal(batch.views.length, 2);
        assert.equal(batch.views[0]!.length, 5 * 3 * 16 * 16);
        assert.notDeepEqual(batch.views[0], batch.views[1]);
        assert.deepEqual(Array.from(batch.labels), Array.from(batch.indices, (i) => ds.labelOf(i)));
        assert.ok(batch.waitMs >= 0);
      }
    }
    const other = new DataLoader(ds, { ...opts, seed: 8, workers: 0 });
    assert.notDeepEqual((await collect(other, 0))[0]!.views[0], (await collect(l0, 0))[0]!.views[0]);
  } finally {
    await l0.close();
    await l2.close();
  }
  // In-memory data (shared with workers) and the decode-once cache give the same numbers too.
  const idx = join(tmp, 'm.idx');
  writeFileSync(idx, encodeIdx([30, 12, 12], Uint8Array.from({ length: 30 * 144 }, (_, i) => (i * 13) & 255)));
  const mem = await openDataset(`idx:${idx}`);
  const m0 = new DataLoader(mem, { batchSize: 8, views: ijepaTransform({ size: 12, flip: true }), workers: 0, seed: 1, channels: 3 });
  const m2 = new DataLoader(mem, { batchSize: 8, views: ijepaTransform({ size: 12, flip: true }), workers: 2, seed: 1, channels: 3 });
  sameBatches(await collect(m0, 3), await collect(m2, 3));
  await m2.close();
  const cached = await openDataset(`folder:${folder}`, { cache: 'memory' });
  const c2 = new DataLoader(cached, { ...opts, workers: 2 });
  const first = await collect(c2, 0);
  const again = await collect(c2, 0); // now served from the shared decoded cache
  await c2.close();
  sameBatches(first, again);
  const fresh = new DataLoader(ds, { ...opts, workers: 0 });
  sameBatches(first, await collect(fresh, 0));
});

test('drop_last, steps per epoch, per-epoch shuffling', async () => {
  const ds = await openDataset(`folder:${folder}`);
  const views = evalTransform({ size: 16 });
  const drop = new DataLoader(ds, { batchSize: 5, views, workers: 0, seed: 3 });
  const keep = new DataLoader(ds, { batchSize: 5, views, workers: 0, seed: 3, dropLast: false });
  assert.equal(drop.stepsPerEpoch, 4);
  assert.equal(keep.stepsPerEpoch, 5);
  const kb = await collect(keep, 0);
  assert.equal(kb.length, 5);
  assert.deepEqual(kb[4]!.shape, [4, 3, 16, 16]);
  const seen = kb.flatMap((b) => Array.from(b.indices)).sort((a, b) => a - b);
  assert.deepEqual(seen, Array.from({ length: N }, (_, i) => i), 'an epoch is a permutation');
  const e0 = (await collect(drop, 0)).flatMap((b) => Array.from(b.indices));
  const e1 = (await collect(drop, 1)).flatMap((b) => Array.from(b.indices));
  const e0again = (await collect(drop, 0)).flatMap((b) => Array.from(b.indices));
  assert.equal(e0.length, 20);
  assert.notDeepEqual(e0, e1, 'epochs are shuffled differently');
  assert.deepEqual(e0, e0again, 'an epoch is reproducible');
  const seq = new DataLoader(ds, { batchSize: 6, views, workers: 0, shuffle: false });
  assert.deepEqual((await collect(seq, 5)).flatMap((b) => Array.from(b.indices)), Array.from({ length: N }, (_, i) => i));
});

test('corrupt files are reported once, skipped, replaced deterministically and counted', async () => {
  const ds = await openDataset(`folder:${corruptFolder}`);
  assert.equal(ds.length, N + 3);
  const bad = new Set<number>();
  for (let i = 0; i < ds.length; i++) if (/bad|trunc/.test(ds.sourceOf(i))) bad.add(i);
  assert.equal(bad.size, 3);
  const reports: string[] = [];
  const opts = { batchSize: 4, views: vicregViews({ size: 16 }), seed: 5, dropLast: false };
  const l2 = new DataLoader(ds, { ...opts, workers: 2, onSkip: (src, reason) => reports.push(`${src}: ${reason}`) });
  const quiet = new DataLoader(ds, { ...opts, workers: 0, onSkip: () => undefined });
  try {
    for (const e of [0, 1, 2]) {
      const batches = await collect(l2, e);
      sameBatches(batches, await collect(quiet, e));
      for (const b of batches) for (const i of b.indices) assert.ok(!bad.has(i), 'a corrupt sample reached a batch');
      assert.equal(batches.reduce((a, b) => a + b.shape[0], 0), ds.length, 'replacements keep batches full');
      assert.equal(batches[batches.length - 1]!.skipped, 3);
      if (e === 0) {
        const counts = batches.map((b) => b.skipped);
        assert.deepEqual(counts, [...counts].sort((a, b) => a - b), 'skipped is cumulative');
      }
    }
  } finally {
    await l2.close();
  }
  assert.equal(reports.length, 3, reports.join('\n'));
  // libvips' wording for a truncated JPEG varies ('premature end of JPEG image', 'Warning treated as error ...').
  assert.ok(reports.some((r) => /img0005-trunc\.jpg: \S/.test(r)), reports.join('\n'));
  assert.ok(reports.some((r) => r.includes('zz-bad.png') && r.includes('unsupported image format')));
  assert.ok(reports.some((r) => r.includes('aa-bad.jpg')));
});

test('breaking out of an epoch terminates the workers; the process exits without close()', async () => {
  const ds = await openDataset(`folder:${folder}`);
  const l = new DataLoader(ds, { batchSize: 2, views: ijepaTransform({ size: 16 }), workers: 2 });
  for await (const b of l.epoch(0)) {
    assert.equal(l.liveWorkers, 2);
    assert.equal(b.shape[0], 2);
    break;
  }
  assert.equal(l.liveWorkers, 0);
  // A new epoch starts fresh workers; close() stops them.
  assert.equal((await collect(l, 1)).length, 12);
  assert.equal(l.liveWorkers, 2);
  await l.close();
  assert.equal(l.liveWorkers, 0);
  await assert.rejects(collect(l, 2), /closed/);

  const index = resolve(dirname(fileURLToPath(import.meta.url)), '../src/data/index.js');
  const script = join(tmp, 'child.mjs');
  writeFileSync(
    script,
    `import { openDataset, DataLoader, ijepaTransform } from ${JSON.stringify(index)};
     const ds = await openDataset(${JSON.stringify(`folder:${folder}`)});
     const a = new DataLoader(ds, { batchSize: 4, views: ijepaTransform({ size: 16 }), workers: 2 });
     for await (const b of a.epoch(0)) break;            // early break, no close()
     const b = new DataLoader(ds, { batchSize: 4, views: ijepaTransform({ size: 16 }), workers: 2 });
     let n = 0; for await (const x of b.epoch(0)) n++;    // complete epoch, no close()
     console.log('steps', n);`,
  );
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.signal, null, 'child process did not exit by itself');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /steps 6/);
});

test('clear errors before training: size that cannot fit, view/model mismatch, tiny datasets', async () => {
  const fm = await openDataset('fashion-mnist:test');
  assert.throws(
    () => new DataLoader(fm, { batchSize: 8, views: ijepaTransform({ size: 256 }), workers: 0 }),
    /fashion-mnist:test: images of 28x28 cannot fit a 256 px model/,
  );
  assert.throws(() => new DataLoader(fm, { batchSize: 8, views: ijepaTransform({ size: 32 }), imageSize: 64, workers: 0 }), /produce 32 px images but the model expects 64 px/);
  assert.throws(() => new DataLoader(fm, { batchSize: 8, views: ijepaTransform({ size: 30 }), patchSize: 4, workers: 0 }), /not a multiple of the patch size 4/);
  const { val } = splitDataset(fm, 0.001, 0);
  assert.throws(() => new DataLoader(val, { batchSize: 64, views: ijepaTransform({ size: 28 }), workers: 0 }), /10 samples, fewer than one batch of 64/);
  assert.throws(() => new DataLoader(fm, { batchSize: 0, views: ijepaTransform({ size: 28 }), workers: 0 }), /batchSize/);
  assert.throws(
    () => new DataLoader(fm, { batchSize: 4, views: [vicregViews({ size: 28 })[0], vicregViews({ size: 32 })[1]], workers: 0 }),
    /same size/,
  );
});

test('grayscale datasets feed 3-channel models; normalisation with dataset statistics', async () => {
  const fm: Dataset = (await openDataset('fashion-mnist:test')) as Dataset;
  const { val } = splitDataset(fm, 0.002, 1);
  const l = new DataLoader(val, { batchSize: 10, views: vicregViews({ size: 32 }), channels: 3, workers: 1 });
  const [b] = await collect(l, 0);
  await l.close();
  assert.deepEqual(b!.shape, [10, 3, 32, 32]);
  assert.deepEqual(l.mean, [0.286, 0.286, 0.286]);
  const plane = 32 * 32;
  const v = b!.views[1]!;
  for (let p = 0; p < plane; p++) assert.equal(v[p], v[plane + p]);
  // Eval view of a 28 px image at 28 px, normalised with Fashion-MNIST stats: exact pixels.
  const e = new DataLoader(val, { batchSize: 10, views: evalTransform({ size: 28 }), workers: 0, shuffle: false });
  const [eb] = await collect(e, 0);
  const s = await val.get(0);
  for (const p of [0, 100, 400, 783]) assert.ok(Math.abs(eb!.views[0]![p]! - (s.pixels[p]! / 255 - 0.286) / 0.353) < 1e-5);
});
