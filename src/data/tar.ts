// A small streaming reader for (gzipped) tar archives: enough for the dataset releases (ustar / GNU /
// pax headers, regular files and directories). Files are streamed to disk, so multi-gigabyte archives
// (STL-10) never sit in memory. Links, devices and FIFOs are skipped; absolute paths and '..' are refused.

import { createReadStream } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createGunzip } from 'node:zlib';

const BLOCK = 512;

export class TarError extends Error {}

export interface TarExtractOptions {
  /** Bytes of the compressed archive read so far (for a progress bar). */
  onProgress?: (compressedBytes: number) => void;
}

function field(h: Buffer, off: number, len: number): string {
  const end = h.indexOf(0, off);
  return h.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

/** An octal numeric field, or GNU base-256 (high bit of the first byte set). */
function numeric(h: Buffer, off: number, len: number, what: string): number {
  if (h[off]! & 0x80) {
    let v = h[off]! & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + h[off + i]!;
    return v;
  }
  const s = field(h, off, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarError(`bad ${what} field '${s}' in a tar header`);
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  const stored = numeric(h, 148, 8, 'checksum');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum === stored;
}

/** pax extended header records: "<len> key=value\n". */
function parsePax(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length) {
    const sp = body.indexOf(0x20, i);
    if (sp < 0) break;
    const len = parseInt(body.toString('utf8', i, sp), 10);
    if (!(len > 0) || i + len > body.length) break;
    const rec = body.toString('utf8', sp + 1, i + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

/** A relative path with no '..', '.' or empty parts, '/'-separated. */
function safePath(name: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (name.startsWith('/') || parts.some((p) => p === '..' || p.includes('\0'))) {
    throw new TarError(`unsafe path in archive: '${name}'`);
  }
  return parts.join('/');
}

type Entry = { kind: 'file' | 'dir' | 'skip' | 'meta'; type: string; path: string; size: number; remaining: number; pad: number };

/**
 * Extracts a .tar or .tar.gz (detected by its magic bytes) into `dest` (created if missing).
 * Returns the relative paths of the regular files written.
 */
export async function extractTar(archive: string, dest: string, o: TarExtractOptions = {}): Promise<string[]> {
  const head = await open(archive, 'r');
  const magic = Buffer.alloc(2);
  await head.read(magic, 0, 2, 0);
  await head.close();
  // No 'data' listener here: it would start the stream flowing before the loop below
  // attaches, and a small plain tar could be read (and lost) during the mkdir await.
  const raw = createReadStream(archive, { highWaterMark: 1 << 20 });
  const gz = magic[0] === 0x1f && magic[1] === 0x8b;
  const stream: AsyncIterable<Buffer> = gz ? raw.pipe(createGunzip({ chunkSize: 1 << 20 })) : raw;
  if (gz) raw.on('error', (e) => (stream as ReturnType<typeof createGunzip>).destroy(e));
  await mkdir(dest, { recursive: true });

  const written: string[] = [];
  let pending: Buffer = Buffer.alloc(0);
  let entry: Entry | null = null;
  let meta: Buffer[] = [];
  let longName: string | null = null;
  let pax: Record<string, string> = {};
  let out: FileHandle | null = null;
  let ended = false;
  let zeroBlocks = 0;

  const startEntry = async (h: Buffer): Promise<void> => {
    if (!checksumOk(h)) throw new TarError('tar header checksum mismatch (not a tar archive, or corrupt)');
    const type = String.fromCharCode(h[156]!);
    const size = numeric(h, 124, 12, 'size');
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (type === 'L' || type === 'x' || type === 'g') {
      entry = { kind: 'meta', type, path: '', size, remaining: size, pad };
      meta = [];
      return;
    }
    let name = field(h, 0, 100);
    if (field(h, 257, 5) === 'ustar') {
      const prefix = field(h, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    if (longName !== null) name = longName;
    if (pax['path'] !== undefined) name = pax['path'];
    const realSize = pax['size'] !== undefined ? Number(pax['size']) : size;
    longName = null;
    pax = {};
    const path = safePath(name);
    const isFile = type === '0' || type === '\0' || type === '7';
    const kind = isFile ? 'file' : type === '5' ? 'dir' : 'skip';
    const dataSize = kind === 'dir' ? 0 : realSize;
    entry = { kind, type, path, size: dataSize, remaining: dataSize, pad: (BLOCK - (dataSize % BLOCK)) % BLOCK };
    if (kind === 'dir' && path) await mkdir(join(dest, path), { recursive: true });
    if (kind === 'file') {
      if (!path) throw new TarError('a file entry with an empty name');
      await mkdir(dirname(join(dest, path)), { recursive: true });
      out = await open(join(dest, path), 'w');
      written.push(path);
    }
  };

  const finishEntry = async (): Promise<void> => {
    const e = entry!;
    if (out) await out.close(), (out = null);
    if (e.kind === 'meta') {
      const body = Buffer.concat(meta);
      if (e.type === 'L') longName = body.toString('utf8').replace(/\0+$/, '');
      else if (e.type === 'x') pax = parsePax(body);
      meta = [];
    }
    entry = null;
  };

  try {
    for await (const chunk of stream) {
      o.onProgress?.(raw.bytesRead);
      let buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let pos = 0;
      while (!ended) {
        if (entry) {
          const e: Entry = entry;
          if (e.remaining > 0) {
            const n = Math.min(e.remaining, buf.length - pos);
            if (n === 0) break;
            const part = buf.subarray(pos, pos + n);
            if (out) await (out as FileHandle).write(part);
            else if (e.kind === 'meta') meta.push(Buffer.from(part));
            e.remaining -= n;
            pos += n;
            continue;
          }
          if (buf.length - pos < e.pad) break;
          pos += e.pad;
          await finishEntry();
          continue;
        }
        if (buf.length - pos < BLOCK) break;
        const h = buf.subarray(pos, pos + BLOCK);
        pos += BLOCK;
        if (h.every((b) => b === 0)) {
          if (++zeroBlocks >= 2) ended = true;
          continue;
        }
        zeroBlocks = 0;
        await startEntry(h);
      }
      pending = ended ? Buffer.alloc(0) : Buffer.from(buf.subarray(pos));
      buf = Buffer.alloc(0);
    }
  } catch (e) {
    if (e instanceof TarError) throw new TarError(`${archive}: ${e.message}`);
    const msg = (e as Error).message;
    throw new TarError(`${archive}: cannot read the archive (${msg})`);
  } finally {
    if (out) await (out as FileHandle).close().catch(() => {});
  }
  if (entry) throw new TarError(`${archive}: the archive ends inside '${(entry as Entry).path || 'a header'}' (truncated)`);
  if (!ended && zeroBlocks === 0 && written.length === 0) throw new TarError(`${archive}: no entries (not a tar archive?)`);
  return written;
}
