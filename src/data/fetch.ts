// Datasets by name: the official archives of CIFAR-10, CIFAR-100 and STL-10, fetched on first use into
// a cache directory ($CJEPA_DATA, else $XDG_CACHE_HOME/cjepa, else ~/.cache/cjepa), MD5-verified,
// resumable (HTTP Range on `<archive>.part`), unpacked into a temporary folder that is renamed into
// place, so `<cache>/<name>/` either holds a complete release or does not exist.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import cliProgress from 'cli-progress';
import { acquireRunLock } from '../method/run_lock.js';
import { dataCacheDir } from './cache_dir.js';
import { extractTar } from './tar.js';

export const REMOTE_DATASETS = {
  cifar10: {
    file: 'cifar-10-binary.tar.gz',
    url: 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz',
    md5: 'c32a1d4ab5d03f1284b67883e8d87530',
    approxMB: 163,
    root: 'cifar-10-batches-bin',
    files: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin', 'test_batch.bin'],
  },
  cifar100: {
    file: 'cifar-100-binary.tar.gz',
    url: 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz',
    md5: '03b5dce01913d631647c71ecec9e9cb8',
    approxMB: 161,
    root: 'cifar-100-binary',
    files: ['train.bin', 'test.bin'],
  },
  stl10: {
    file: 'stl10_binary.tar.gz',
    url: 'http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz',
    md5: '91f7769df0f17e558f3565bffb0c7dfb',
    approxMB: 2640,
    root: 'stl10_binary',
    files: ['train_X.bin', 'train_y.bin', 'test_X.bin', 'test_y.bin', 'unlabeled_X.bin'],
  },
} as const;

export type RemoteName = keyof typeof REMOTE_DATASETS;
export const REMOTE_NAMES = Object.keys(REMOTE_DATASETS) as RemoteName[];

export function isRemoteName(s: string): s is RemoteName {
  return Object.hasOwn(REMOTE_DATASETS, s);
}

export interface FetchProgress {
  file: string;
  /** Bytes of the archive on disk (including a resumed part). */
  done: number;
  /** Expected archive size, when the server says. */
  total?: number;
  stage: 'download' | 'verify' | 'extract';
}

export interface FetchOptions {
  /** Cache directory (default dataCacheDir()). */
  cacheDir?: string;
  /** Base URL holding the archives under their official file names (default $CJEPA_DATA_MIRROR, else the official URL). */
  mirror?: string;
  /** Expected MD5 of the archive (default $CJEPA_DATA_MD5 `name=md5,...`, else the official one). */
  md5?: string;
  /** Progress: a callback, false for none, or true/undefined for a bar on a terminal (lines otherwise) on stderr. */
  progress?: boolean | ((p: FetchProgress) => void);
  /** One-line notices (default: stderr). */
  log?: (line: string) => void;
  /** Retries after failures that received nothing (default 2); an attempt that made progress always retries (at most 50 in all). */
  retries?: number;
  retryDelayMs?: number;
  /** No data for this long fails the attempt (default 60 s). */
  timeoutMs?: number;
  /** Fetch again even when cached. */
  force?: boolean;
}

export class FetchError extends Error {}

function md5Overrides(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of (process.env['CJEPA_DATA_MD5'] ?? '').split(',')) {
    const eq = kv.indexOf('=');
    if (eq > 0) out[kv.slice(0, eq).trim()] = kv.slice(eq + 1).trim().toLowerCase();
  }
  return out;
}

/** Where an archive is fetched from: `<mirror>/<file>` or the official URL. */
export function datasetUrl(name: RemoteName, mirror = process.env['CJEPA_DATA_MIRROR']): string {
  const r = REMOTE_DATASETS[name];
  return mirror ? `${mirror.replace(/\/+$/, '')}/${r.file}` : r.url;
}

function expectedMd5(name: RemoteName, o: FetchOptions): string {
  const r = REMOTE_DATASETS[name];
  const env = md5Overrides();
  return (o.md5 ?? env[name] ?? env[r.file] ?? r.md5).toLowerCase();
}

/** The unpacked release of `name` in the cache, or null when it has not been fetched. */
export function cachedDatasetDir(name: RemoteName, cacheDir = dataCacheDir()): string | null {
  const r = REMOTE_DATASETS[name];
  const dir = join(cacheDir, name);
  return r.files.every((f) => existsSync(join(dir, r.root, f))) ? dir : null;
}

export async function md5File(path: string): Promise<string> {
  const h = createHash('md5');
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), h);
  return h.digest('hex');
}

const mb = (n: number) => (n / 1e6).toFixed(n < 1e7 ? 1 : 0);

/** The default progress: a cli-progress bar on a terminal, a line every 10 s (and at the end) otherwise. */
function defaultProgress(): { update: (p: FetchProgress) => void; stop: () => void } {
  const tty = process.stderr.isTTY === true;
  let bar: cliProgress.SingleBar | null = null;
  let stage = '';
  let last = 0;
  let t0 = Date.now();
  let start = 0;
  const stop = () => {
    bar?.stop();
    bar = null;
  };
  return {
    update(p) {
      if (p.stage !== stage) {
        stop();
        stage = p.stage;
        t0 = Date.now();
        start = p.done;
        last = 0;
      }
      const secs = (Date.now() - t0) / 1000;
      const rate = secs > 0.5 ? (p.done - start) / secs : 0;
      const payload = { file: p.file, stage: p.stage, mb: mb(p.done), totalMb: p.total ? mb(p.total) : '?', rate: rate ? `${mb(rate)} MB/s` : '' };
      if (tty && p.total) {
        if (!bar) {
          bar = new cliProgress.SingleBar(
            { format: '{stage} {file} |{bar}| {percentage}% {mb}/{totalMb} MB {rate} ETA {eta_formatted}', hideCursor: true, stream: process.stderr, etaBuffer: 100 },
            cliProgress.Presets.shades_classic,
          );
          bar.start(p.total, p.done, payload);
        }
        bar.update(p.done, payload);
        if (p.done >= p.total) stop();
      } else if (!tty && (Date.now() - last > 10_000 || (p.total !== undefined && p.done >= p.total))) {
        last = Date.now();
        process.stderr.write(`${p.stage} ${p.file}: ${payload.mb}/${payload.totalMb} MB${rate ? `, ${payload.rate}` : ''}\n`);
      }
    },
    stop,
  };
}

const RETRYABLE = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'ENETUNREACH', 'EHOSTUNREACH', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

class AttemptError extends Error {
  constructor(message: string, readonly progressed: boolean, readonly fatal: boolean) {
    super(message);
  }
}

/** One HTTP(S) GET of `url` into `part`, resuming from its current size; follows redirects. */
async function attempt(url: string, part: string, o: FetchOptions, onBytes: (done: number, total?: number) => void): Promise<void> {
  const have = existsSync(part) ? statSync(part).size : 0;
  let target = url;
  for (let hop = 0; hop < 6; hop++) {
    const u = new URL(target);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new AttemptError(`unsupported URL ${target}`, false, true);
    const get = u.protocol === 'https:' ? https.get : http.get;
    const headers: Record<string, string> = { 'user-agent': 'cjepa', 'accept-encoding': 'identity' };
    if (have > 0) headers['range'] = `bytes=${have}-`;
    const res = await new Promise<http.IncomingMessage>((ok, fail) => {
      const req = get(u, { headers }, ok);
      req.setTimeout(o.timeoutMs ?? 60_000, () => req.destroy(Object.assign(new Error(`no data for ${(o.timeoutMs ?? 60_000) / 1000} s`), { code: 'ETIMEDOUT' })));
      req.on('error', fail);
    }).catch((e: NodeJS.ErrnoException) => {
      throw new AttemptError(`${e.message}`, false, !RETRYABLE.has(e.code ?? ''));
    });
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      target = new URL(res.headers.location, target).toString();
      continue;
    }
    if (status === 416) {
      // Range not satisfiable: the part already holds the whole file (checked by MD5 next), or more.
      res.resume();
      const total = Number(/\/(\d+)$/.exec(res.headers['content-range'] ?? '')?.[1]);
      if (Number.isFinite(total) && total === have) return;
      rmSync(part, { force: true });
      throw new AttemptError(`the server refused to resume at byte ${have}; starting again`, true, false);
    }
    let start = 0;
    if (status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '');
      start = m ? Number(m[1]) : -1;
      if (start !== have) {
        res.resume();
        rmSync(part, { force: true });
        throw new AttemptError(`the server resumed at the wrong place (${res.headers['content-range']}); starting again`, true, false);
      }
    } else if (status !== 200) {
      res.resume();
      throw new AttemptError(`HTTP ${status} ${res.statusMessage ?? ''}`.trim(), false, status < 500 && status !== 408 && status !== 429);
    }
    // 200 (also when a Range was ignored): start from zero; 206: append.
    const length = res.headers['content-length'] !== undefined ? Number(res.headers['content-length']) : undefined;
    const total = length !== undefined ? start + length : undefined;
    let got = 0;
    onBytes(start, total);
    const count = async function* (src: AsyncIterable<Buffer>) {
      for await (const c of src) {
        got += c.length;
        onBytes(start + got, total);
        yield c;
      }
    };
    try {
      await pipeline(res, count, createWriteStream(part, start > 0 ? { flags: 'r+', start } : { flags: 'w' }));
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new AttemptError(`connection lost after ${mb(start + got)} MB (${err.message})`, got > 0, false);
    }
    if (length !== undefined && got < length) {
      throw new AttemptError(`connection closed after ${mb(start + got)} of ${mb(start + length)} MB`, got > 0, false);
    }
    return;
  }
  throw new AttemptError(`too many redirects from ${url}`, false, true);
}

/** Downloads `url` to `part` (resuming a partial one), retrying interrupted transfers. */
export async function downloadResumable(url: string, part: string, o: FetchOptions = {}, onBytes: (done: number, total?: number) => void = () => {}): Promise<void> {
  const retries = o.retries ?? 2;
  let idle = 0;
  for (let n = 0; ; n++) {
    try {
      await attempt(url, part, o, onBytes);
      return;
    } catch (e) {
      if (!(e instanceof AttemptError)) throw e;
      idle = e.progressed ? 0 : idle + 1;
      if (e.fatal || idle > retries || n >= 50) throw new FetchError(e.message);
      if (e.progressed) (o.log ?? ((l) => process.stderr.write(`${l}\n`)))(`${e.message}; resuming`);
      await new Promise((r) => setTimeout(r, (o.retryDelayMs ?? 1000) * Math.max(1, idle)));
    }
  }
}

function offlineHelp(name: RemoteName, url: string, cacheDir: string, md5: string): string {
  const r = REMOTE_DATASETS[name];
  return `To fetch it by hand (e.g. on an offline machine): download ${url} (about ${r.approxMB} MB, md5 ${md5}) elsewhere and ` +
    `place it at ${join(cacheDir, r.file)}; the next use (or \`cjepa data fetch ${name}\`) verifies and unpacks it. ` +
    `The cache is $CJEPA_DATA, else $XDG_CACHE_HOME/cjepa, else ~/.cache/cjepa; CJEPA_DATA_MIRROR=<base URL> fetches from a mirror. ` +
    `An unpacked release also works directly: ${name}-bin:<folder holding ${r.root}/>.`;
}

async function withFetchLock<T>(cacheDir: string, name: RemoteName, log: (l: string) => void, fn: () => Promise<T>): Promise<T> {
  const lockDir = join(cacheDir, '.locks', name);
  mkdirSync(lockDir, { recursive: true });
  let told = false;
  for (;;) {
    try {
      const lock = acquireRunLock(lockDir);
      try {
        return await fn();
      } finally {
        lock.release();
      }
    } catch (e) {
      if (!/is in use by another run/.test((e as Error).message)) throw e;
      if (!told) log(`${name}: another process is fetching it (${lockDir}); waiting`);
      told = true;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/**
 * Makes sure `<cache>/<name>/` holds the unpacked official release, fetching and unpacking it if
 * needed; returns that folder. An archive placed by hand at `<cache>/<archive name>` is used (after
 * the MD5 check) instead of downloading.
 */
export async function fetchDataset(name: RemoteName, o: FetchOptions = {}): Promise<string> {
  if (!isRemoteName(name)) throw new FetchError(`unknown dataset '${name}' (known: ${REMOTE_NAMES.join(', ')})`);
  const cacheDir = o.cacheDir ?? dataCacheDir();
  if (!o.force) {
    const hit = cachedDatasetDir(name, cacheDir);
    if (hit) return hit;
  }
  const r = REMOTE_DATASETS[name];
  const url = datasetUrl(name, o.mirror ?? process.env['CJEPA_DATA_MIRROR']);
  const md5 = expectedMd5(name, o);
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  try {
    mkdirSync(cacheDir, { recursive: true });
  } catch (e) {
    throw new FetchError(`${name}: cannot create the data cache ${cacheDir} (${(e as Error).message}); set CJEPA_DATA to a writable folder`);
  }
  return withFetchLock(cacheDir, name, log, async () => {
    if (!o.force) {
      const hit = cachedDatasetDir(name, cacheDir); // another process finished it while we waited
      if (hit) return hit;
    }
    // unpacking folders left by a process killed mid-way (we hold this name's lock: none is in use)
    for (const e of readdirSync(cacheDir)) if (e.startsWith(`.tmp-${name}-`)) rmSync(join(cacheDir, e), { recursive: true, force: true });
    const bar = typeof o.progress === 'function' || o.progress === false ? null : defaultProgress();
    const report = (p: FetchProgress) => (typeof o.progress === 'function' ? o.progress(p) : bar?.update(p));
    const archive = join(cacheDir, r.file);
    const part = `${archive}.part`;
    try {
      if (existsSync(archive)) {
        // placed by hand (our own downloads are renamed here only after the check)
        const got = await md5File(archive);
        if (got !== md5) {
          throw new FetchError(`${name}: ${archive} has md5 ${got}, expected ${md5}: it is not the official ${r.file} (or is incomplete). ` +
            'Delete or replace it, then run again.');
        }
      } else {
        const resumed = existsSync(part) ? statSync(part).size : 0;
        log(`${name}: downloading ${url} (about ${r.approxMB} MB) into ${cacheDir}${resumed ? `, resuming after ${mb(resumed)} MB` : ''}`);
        try {
          await downloadResumable(url, part, o, (done, total) => report({ file: r.file, done, total, stage: 'download' }));
        } catch (e) {
          if (!(e instanceof FetchError)) throw e;
          const kept = existsSync(part) ? statSync(part).size : 0;
          throw new FetchError(`${name}: cannot download ${url} (${e.message}).` +
            (kept ? ` ${mb(kept)} MB are kept in ${part}; running again resumes.` : '') + ` ${offlineHelp(name, url, cacheDir, md5)}`);
        }
        bar?.stop();
        const got = await md5File(part);
        if (got !== md5) {
          rmSync(part, { force: true });
          throw new FetchError(`${name}: checksum mismatch for ${url}: md5 ${got}, expected ${md5}. The download was deleted; ` +
            'run again to retry (a mirror or proxy serving a different file gives this too).');
        }
        renameSync(part, archive);
      }
      const tmp = join(cacheDir, `.tmp-${name}-${process.pid}-${randomBytes(4).toString('hex')}`);
      try {
        const size = statSync(archive).size;
        log(`${name}: unpacking ${r.file}`);
        await extractTar(archive, tmp, { onProgress: (done) => report({ file: r.file, done, total: size, stage: 'extract' }) });
        bar?.stop();
        const missing = r.files.filter((f) => !existsSync(join(tmp, r.root, f)));
        if (missing.length) throw new FetchError(`${name}: ${archive} lacks ${missing.map((f) => `${r.root}/${f}`).join(', ')}`);
        writeFileSync(join(tmp, 'source.json'), JSON.stringify({ name, url, file: r.file, md5, fetched: new Date().toISOString() }, null, 1) + '\n');
        const dest = join(cacheDir, name);
        rmSync(dest, { recursive: true, force: true }); // an incomplete folder placed by hand, or --force
        renameSync(tmp, dest);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
      rmSync(archive, { force: true }); // unpacked: the archive is no longer needed
      log(`${name}: ready in ${join(cacheDir, name)}`);
      return join(cacheDir, name);
    } finally {
      bar?.stop();
    }
  });
}

export interface CacheEntry {
  name: RemoteName;
  state: 'ready' | 'partial download' | 'archive (not unpacked)' | 'absent';
  path: string;
  bytes: number;
  url: string;
}

function duBytes(p: string): number {
  try {
    const st = statSync(p);
    if (!st.isDirectory()) return st.size;
    return readdirSync(p).reduce((a, e) => a + duBytes(join(p, e)), 0);
  } catch {
    return 0;
  }
}

/** The named datasets and their state in the cache. */
export function listCache(cacheDir = dataCacheDir()): CacheEntry[] {
  return REMOTE_NAMES.map((name) => {
    const r = REMOTE_DATASETS[name];
    const url = datasetUrl(name);
    const dir = cachedDatasetDir(name, cacheDir);
    if (dir) return { name, state: 'ready', path: dir, bytes: duBytes(dir), url };
    const archive = join(cacheDir, r.file);
    if (existsSync(archive)) return { name, state: 'archive (not unpacked)', path: archive, bytes: duBytes(archive), url };
    if (existsSync(`${archive}.part`)) return { name, state: 'partial download', path: `${archive}.part`, bytes: duBytes(`${archive}.part`), url };
    return { name, state: 'absent', path: join(cacheDir, name), bytes: 0, url };
  });
}
