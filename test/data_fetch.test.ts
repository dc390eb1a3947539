// Datasets by name: the downloader (resume, checksum, restarts) against a loopback HTTP server serving
// tiny archives in the official layouts, the tar reader, the STL-10 reader, specs and `cjepa data`.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { dataCacheDir } from '../src/data/cache_dir.js';
import { type FetchOptions, type FetchProgress, cachedDatasetDir, fetchDataset, listCache } from '../src/data/fetch.js';
import { openDataset, parseDataSpec } from '../src/data/specs.js';
import { extractTar } from '../src/data/tar.js';
import { archiveServer, cifar100Archive, cifar10Archive, makeTar, md5, paxPath, stl10Archive } from './fixtures/archive_fixture.js';

const tmp = mkdtempSync(join(tmpdir(), 'cjepa-fetch-'));
const C10 = cifar10Archive(20);
const C100 = cifar100Archive(6);
const STL = stl10Archive({ train: 3, test: 2, unlabeled: 4 });
const FILES = { 'cifar-10-binary.tar.gz': C10.gz, 'cifar-100-binary.tar.gz': C100.gz, 'stl10_binary.tar.gz': STL.gz };
let srv: Awaited<ReturnType<typeof archiveServer>>;
let deadUrl = '';
before(async () => {
  srv = await archiveServer(FILES);
  const s = http.createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  deadUrl = `http://127.0.0.1:${(s.address() as AddressInfo).port}/gone`;
  await new Promise<void>((ok) => s.close(() => ok())); // nothing listens there any more
});
after(async () => {
  await srv.close();
  rmSync(tmp, { recursive: true, force: true });
});

let nCache = 0;
function freshCache(): string {
  const d = join(tmp, `cache${nCache++}`);
  mkdirSync(d);
  return d;
}
const quiet = (cacheDir: string, mode: string, extra: FetchOptions = {}): FetchOptions => ({
  cacheDir, mirror: `${srv.base}/${mode}`, md5: md5(C10.gz), progress: false, log: () => {}, retryDelayMs: 5, ...extra,
});
const requestsFor = (mode: string) => srv.requests.filter((r) => r.mode === mode && r.file === 'cifar-10-binary.tar.gz');
/** Everything in the cache except the lock folder. */
const contents = (d: string) => readdirSync(d).filter((e) => e !== '.locks').sort();

function hwcOf(planar: Uint8Array): number[] {
  const out: number[] = [];
  for (let p = 0; p < 1024; p++) out.push(planar[p]!, planar[1024 + p]!, planar[2048 + p]!);
  return out;
}

test('tar reader: ustar/GNU/pax names, directories, links skipped, unsafe paths and truncation refused', async () => {
  const long = `deep/${'d'.repeat(120)}/file.bin`;
  const tar = makeTar([
    { name: 'top/', type: '5' },
    { name: 'top/a.txt', data: 'hello' },
    { name: long, data: Buffer.alloc(1300, 7) },
    paxPath('pax/named/very-long-' + 'p'.repeat(150) + '.txt'),
    { name: 'ignored-short-name', data: 'pax' },
    { name: 'top/link', type: '2', linkname: '/etc/passwd' },
    { name: 'top/empty', data: '' },
  ]);
  const archive = join(tmp, 't.tar.gz');
  writeFileSync(archive, gzipSync(tar));
  const dest = join(tmp, 'untar');
  const files = await extractTar(archive, dest);
  assert.deepEqual(files, ['top/a.txt', long, `pax/named/very-long-${'p'.repeat(150)}.txt`, 'top/empty']);
  assert.equal(readFileSync(join(dest, 'top/a.txt'), 'utf8'), 'hello');
  assert.deepEqual(readFileSync(join(dest, long)), Buffer.alloc(1300, 7));
  assert.equal(readFileSync(join(dest, files[2]!), 'utf8'), 'pax');
  assert.ok(!existsSync(join(dest, 'top/link')), 'links are not created');
  assert.equal(statSync(join(dest, 'top/empty')).size, 0);
  // plain (not gzipped) tar too
  writeFileSync(join(tmp, 't.tar'), tar);
  assert.equal((await extractTar(join(tmp, 't.tar'), join(tmp, 'untar2'))).length, 4);

  writeFileSync(join(tmp, 'evil.tar.gz'), gzipSync(makeTar([{ name: '../evil.txt', data: 'x' }])));
  await assert.rejects(extractTar(join(tmp, 'evil.tar.gz'), join(tmp, 'untar3')), /unsafe path in archive: '\.\.\/evil\.txt'/);
  assert.ok(!existsSync(join(tmp, 'evil.txt')));
  writeFileSync(join(tmp, 'cut.tar.gz'), gzipSync(tar.subarray(0, 2048)));
  await assert.rejects(extractTar(join(tmp, 'cut.tar.gz'), join(tmp, 'untar4')), /truncated/);
  writeFileSync(join(tmp, 'cutgz.tar.gz'), gzipSync(tar).subarray(0, 200));
  await assert.rejects(extractTar(join(tmp, 'cutgz.tar.gz'), join(tmp, 'untar5')), /cannot read the archive|truncated/);
  writeFileSync(join(tmp, 'junk.tar'), Buffer.alloc(1024, 65));
  await assert.rejects(extractTar(join(tmp, 'junk.tar'), join(tmp, 'untar6')), /checksum mismatch|bad .* field/);
  // A small plain tar can be read whole before the reader's loop starts: it must not be lost
  // (an early 'data' listener once dropped it ~1 time in 100, reading 'no entries').
  for (let i = 0; i < 300; i++) {
    assert.equal((await extractTar(join(tmp, 't.tar'), join(tmp, 'untar2'))).length, 4, `plain tar, try ${i}`);
  }
});

test('tar reader agrees with the system tar (long names, nested folders)', { skip: spawnSync('tar', ['--version']).status !== 0 && 'no tar' }, async () => {
  const src = join(tmp, 'sys-src');
  const rel = `a/${'b'.repeat(110)}/c`;
  mkdirSync(join(src, rel), { recursive: true });
  writeFileSync(join(src, rel, 'x.bin'), Buffer.alloc(70_000, 3));
  writeFileSync(join(src, 'a', 'y.txt'), 'y');
  for (const fmt of ['gnu', 'pax', 'ustar']) {
    const archive = join(tmp, `sys-${fmt}.tar.gz`);
    const r = spawnSync('tar', [`--format=${fmt}`, '-czf', archive, '-C', src, 'a'], { encoding: 'utf8' });
    if (fmt === 'ustar' && r.status !== 0) continue; // a 110-byte component does not fit ustar
    assert.equal(r.status, 0, r.stderr);
    const dest = join(tmp, `sys-out-${fmt}`);
    const files = await extractTar(archive, dest);
    assert.deepEqual(files.sort(), [`${rel}/x.bin`, 'a/y.txt'].sort(), fmt);
    assert.deepEqual(readFileSync(join(dest, rel, 'x.bin')), Buffer.alloc(70_000, 3));
  }
});

test('fetch cifar10 from a loopback server: verified, unpacked atomically, readable as cifar10[:train|test]; cached after', async () => {
  const cache = freshCache();
  const seen: FetchProgress[] = [];
  const before = requestsFor('good').length;
  const dir = await fetchDataset('cifar10', quiet(cache, 'good', { progress: (p) => seen.push(p) }));
  assert.equal(dir, join(cache, 'cifar10'));
  assert.deepEqual(contents(cache), ['cifar10'], 'archive, .part and temporary folder are gone');
  assert.ok(existsSync(join(dir, 'cifar-10-batches-bin', 'data_batch_5.bin')));
  assert.equal(JSON.parse(readFileSync(join(dir, 'source.json'), 'utf8')).md5, md5(C10.gz));
  const dl = seen.filter((p) => p.stage === 'download');
  assert.equal(dl.at(-1)!.done, C10.gz.length);
  assert.equal(dl.at(-1)!.total, C10.gz.length);
  assert.ok(seen.some((p) => p.stage === 'extract'));
  assert.equal(requestsFor('good').length - before, 1);
  assert.equal(requestsFor('good').at(-1)!.range, undefined);

  // cached: no request
  await fetchDataset('cifar10', quiet(cache, 'good'));
  assert.equal(requestsFor('good').length - before, 1);
  assert.deepEqual(listCache(cache).map((e) => [e.name, e.state]), [['cifar10', 'ready'], ['cifar100', 'absent'], ['stl10', 'absent']]);

  // the spec resolves to the cache
  const opts = { fetch: quiet(cache, 'good') };
  const train = await openDataset('cifar10', opts);
  const testDs = await openDataset('cifar10:test', opts);
  assert.equal(train.length, 100);
  assert.equal(testDs.length, 20);
  assert.equal(train.numClasses, 10);
  assert.equal(train.classNames?.[9], 'truck');
  for (const [ds, recs] of [[train, C10.train], [testDs, C10.test]] as const) {
    for (const i of [0, 7, recs.length - 1]) {
      const s = await ds.get(i);
      assert.equal(s.label, recs[i]!.label);
      assert.deepEqual(Array.from(s.pixels), hwcOf(recs[i]!.planar));
    }
  }
  assert.deepEqual(train.normStats?.mean, [0.4914, 0.4822, 0.4465]);
});

test('two fetches of one dataset at once: one downloads, the other waits for it', async () => {
  const cache = freshCache();
  const n0 = requestsFor('good').length;
  const notes: string[] = [];
  const [a, b] = await Promise.all([fetchDataset('cifar10', quiet(cache, 'good')), fetchDataset('cifar10', quiet(cache, 'good', { log: (l) => notes.push(l) }))]);
  assert.equal(a, b);
  assert.equal(requestsFor('good').length - n0, 1);
  assert.ok(notes.some((l) => /another process is fetching it/.test(l)), notes.join('\n'));
});

test('checksum mismatch: a clear error and nothing left in the cache', async () => {
  const cache = freshCache();
  await assert.rejects(fetchDataset('cifar10', quiet(cache, 'corrupt')), (e: Error) => {
    assert.match(e.message, new RegExp(`checksum mismatch for ${srv.base}/corrupt/cifar-10-binary\\.tar\\.gz: md5 [0-9a-f]{32}, expected ${md5(C10.gz)}\\. The download was deleted`));
    return true;
  });
  assert.deepEqual(contents(cache), []);
  assert.equal(cachedDatasetDir('cifar10', cache), null);
  // the official checksum is the default: the tiny archive is refused without the override
  await assert.rejects(fetchDataset('cifar10', { ...quiet(cache, 'good'), md5: undefined }), /expected c32a1d4ab5d03f1284b67883e8d87530/);
  assert.deepEqual(contents(cache), []);
});

test('a transfer cut off mid-way resumes with a Range request and completes', async () => {
  const cache = freshCache();
  const notes: string[] = [];
  const n0 = requestsFor('cut').length;
  await fetchDataset('cifar10', quiet(cache, 'cut', { log: (l) => notes.push(l) }));
  const reqs = requestsFor('cut').slice(n0);
  assert.equal(reqs.length, 2, JSON.stringify(reqs));
  assert.equal(reqs[0]!.range, undefined);
  const start = Number(/^bytes=(\d+)-$/.exec(reqs[1]!.range ?? '')?.[1]);
  assert.ok(start > 0 && start <= C10.gz.length >> 1, `resumed at ${reqs[1]!.range}`);
  assert.ok(notes.some((l) => /connection (lost|closed) after .*resuming/.test(l)), notes.join('\n'));
  assert.ok(cachedDatasetDir('cifar10', cache));
  assert.equal((await openDataset('cifar10:test', { fetch: quiet(cache, 'cut') })).length, 20);
});

test('a .part left by an earlier process is resumed; a server that ignores Range restarts from zero', async () => {
  const cache = freshCache();
  const part = join(cache, 'cifar-10-binary.tar.gz.part');
  writeFileSync(part, C10.gz.subarray(0, 5000));
  const n0 = requestsFor('good').length;
  await fetchDataset('cifar10', quiet(cache, 'good'));
  assert.deepEqual(requestsFor('good').slice(n0).map((r) => r.range), ['bytes=5000-']);
  assert.deepEqual(contents(cache), ['cifar10']);

  const cache2 = freshCache();
  const part2 = join(cache2, 'cifar-10-binary.tar.gz.part');
  writeFileSync(part2, Buffer.alloc(C10.gz.length + 777, 9)); // wrong bytes, and longer than the file
  const n1 = requestsFor('norange').length;
  await fetchDataset('cifar10', quiet(cache2, 'norange'));
  assert.deepEqual(requestsFor('norange').slice(n1).map((r) => r.range), [`bytes=${C10.gz.length + 777}-`]);
  assert.ok(cachedDatasetDir('cifar10', cache2), 'the 200 reply replaced the part from byte 0');

  // a complete .part (a kill between download and check): 416 from the server, then verified
  const cache3 = freshCache();
  writeFileSync(join(cache3, 'cifar-10-binary.tar.gz.part'), C10.gz);
  mkdirSync(join(cache3, '.tmp-cifar10-999999-abcd', 'cifar-10-batches-bin'), { recursive: true }); // a killed unpacking
  await fetchDataset('cifar10', quiet(cache3, 'good'));
  assert.ok(cachedDatasetDir('cifar10', cache3));
  assert.deepEqual(contents(cache3), ['cifar10'], 'the killed unpacking folder is removed');
});

test('offline: the error names the URL, the cache path and how to place the archive by hand; a placed archive is used', async () => {
  const cache = freshCache();
  const offline = { ...quiet(cache, 'good'), mirror: deadUrl };
  await assert.rejects(fetchDataset('cifar10', offline), (e: Error) => {
    assert.ok(e.message.includes(`cannot download ${deadUrl}/cifar-10-binary.tar.gz`), e.message);
    assert.ok(e.message.includes(`place it at ${join(cache, 'cifar-10-binary.tar.gz')}`), e.message);
    assert.match(e.message, /ECONNREFUSED/);
    assert.match(e.message, /CJEPA_DATA/);
    return true;
  });
  assert.deepEqual(contents(cache), []);
  await assert.rejects(fetchDataset('cifar10', quiet(cache, 'missing')), /HTTP 404/);

  // by hand: a wrong file is refused and left alone; the right one is verified and unpacked offline
  writeFileSync(join(cache, 'cifar-10-binary.tar.gz'), 'not it');
  await assert.rejects(fetchDataset('cifar10', offline), /cifar-10-binary\.tar\.gz has md5 [0-9a-f]{32}, expected .*Delete or replace it/);
  assert.ok(existsSync(join(cache, 'cifar-10-binary.tar.gz')));
  writeFileSync(join(cache, 'cifar-10-binary.tar.gz'), C10.gz);
  assert.equal((await openDataset('cifar10:test', { fetch: offline })).length, 20);
  assert.deepEqual(contents(cache), ['cifar10']);
});

test('cifar100 and stl10 by name; STL-10 column-major planes to HWC, labels 1..10 to 0..9, unlabeled split', async () => {
  const cache = freshCache();
  const opt = (file: keyof typeof FILES) => ({ fetch: { ...quiet(cache, 'good'), md5: md5(FILES[file]) } });
  const c100 = await openDataset('cifar100:test', opt('cifar-100-binary.tar.gz'));
  assert.equal(c100.length, 6);
  assert.equal(c100.numClasses, 100);
  assert.equal((await c100.get(3)).label, C100.test[3]!.fine);
  assert.equal(c100.classNames?.[5], 'fine5');

  const train = await openDataset('stl10:train', opt('stl10_binary.tar.gz'));
  assert.equal(train.length, 3);
  assert.deepEqual(train.imageSize, { width: 96, height: 96 });
  assert.equal(train.numClasses, 10);
  assert.equal(train.classNames?.[7], 'monkey');
  for (let i = 0; i < 3; i++) {
    const s = await train.get(i);
    assert.equal(s.label, STL.train[i]!.label);
    assert.ok(Buffer.from(s.pixels).equals(Buffer.from(STL.train[i]!.hwc)), `image ${i}`);
  }
  const unl = await openDataset('stl10:unlabeled', opt('stl10_binary.tar.gz'));
  assert.equal(unl.length, 4);
  assert.equal(unl.numClasses, 0);
  assert.equal((await unl.get(2)).label, -1);
  assert.ok(Buffer.from((await unl.get(3)).pixels).equals(Buffer.from(STL.unlabeled[3]!.hwc)));
  const both = await openDataset('stl10:train+unlabeled', opt('stl10_binary.tar.gz'));
  assert.equal(both.length, 7);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((i) => both.labelOf(i)), [...STL.train.map((t) => t.label), -1, -1, -1, -1]);
  assert.equal((await openDataset('stl10:test', opt('stl10_binary.tar.gz'))).length, 2);
  // stl10-bin:<dir> reads an unpacked release directly
  assert.equal((await openDataset(`stl10-bin:${join(cache, 'stl10')}:test`)).length, 2);
  assert.equal((await openDataset(`stl10-bin:${join(cache, 'stl10', 'stl10_binary')}`)).length, 3);
});

test('specs by name parse; the cache directory comes from CJEPA_DATA, XDG_CACHE_HOME or ~/.cache', () => {
  assert.deepEqual(parseDataSpec('cifar10'), { kind: 'cifar10', split: 'train' });
  assert.deepEqual(parseDataSpec('cifar100:test'), { kind: 'cifar100', split: 'test' });
  assert.deepEqual(parseDataSpec('stl10:unlabeled'), { kind: 'stl10', split: 'unlabeled' });
  assert.deepEqual(parseDataSpec('stl10-bin:/d:train+unlabeled'), { kind: 'stl10-bin', dir: '/d', split: 'train+unlabeled' });
  assert.deepEqual(parseDataSpec('stl10-bin:/a:b'), { kind: 'stl10-bin', dir: '/a:b', split: 'train' });
  assert.throws(() => parseDataSpec('cifar10:val'), /split must be 'train' or 'test'/);
  assert.throws(() => parseDataSpec('stl10:val'), /'unlabeled'/);
  const saved = { d: process.env['CJEPA_DATA'], x: process.env['XDG_CACHE_HOME'], h: process.env['HOME'] };
  try {
    process.env['CJEPA_DATA'] = '/data/c';
    process.env['XDG_CACHE_HOME'] = '/xdg';
    assert.equal(dataCacheDir(), '/data/c');
    delete process.env['CJEPA_DATA'];
    assert.equal(dataCacheDir(), '/xdg/cjepa');
    delete process.env['XDG_CACHE_HOME'];
    process.env['HOME'] = '/home/someone';
    assert.equal(dataCacheDir(), '/home/someone/.cache/cjepa');
  } finally {
    for (const [k, v] of [['CJEPA_DATA', saved.d], ['XDG_CACHE_HOME', saved.x], ['HOME', saved.h]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test('cjepa data fetch / data list (env: CJEPA_DATA, CJEPA_DATA_MIRROR, CJEPA_DATA_MD5)', async () => {
  const cache = join(tmp, 'cli-cache');
  const env = { ...process.env, CJEPA_DATA: cache, CJEPA_DATA_MIRROR: `${srv.base}/good`, CJEPA_DATA_MD5: `cifar10=${md5(C10.gz)}` };
  // asynchronously: the server runs in this process
  const cli = (script: string, ...args: string[]) => new Promise<{ status: number | null; stdout: string; stderr: string }>((ok) => {
    execFile(process.execPath, [fileURLToPath(new URL(`../src/cli/${script}`, import.meta.url)), ...args], { encoding: 'utf8', env, timeout: 120_000 },
      (err, stdout, stderr) => ok({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }));
  });
  let r = await cli('data_commands.js', 'data', 'list', '--json');
  assert.equal(r.status, 0, r.stderr);
  const before = JSON.parse(r.stdout);
  assert.equal(before.cacheDir, cache);
  assert.equal(before.datasets[0].state, 'absent');
  assert.equal(before.datasets[0].url, `${srv.base}/good/cifar-10-binary.tar.gz`);

  r = await cli('data_commands.js', 'data', 'fetch', 'cifar10');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `cifar10\t${join(cache, 'cifar10')}\n`);
  assert.match(r.stderr, /cifar10: downloading .*cifar-10-binary\.tar\.gz/);
  assert.match(r.stderr, /cifar10: ready in/);

  r = await cli('data_commands.js', 'data', 'fetch', 'imagenet');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /unknown dataset 'imagenet' \(known: cifar10, cifar100, stl10/);

  // registered in the main CLI
  r = await cli('main.js', 'data', 'list');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^data cache: ${cache}\n`));
  assert.match(r.stdout, /cifar10 +ready, /);
  assert.match(r.stdout, /stl10 +not fetched \(about 2\.6 GB\) +http:\/\/127\.0\.0\.1:\d+\/good\/stl10_binary\.tar\.gz/);
});
