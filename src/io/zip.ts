// A read-only zip archive reader over a file descriptor: the central directory (ZIP64 included) is
// parsed once, and each entry is read on demand with positioned reads, so a many-gigabyte
// torch.save archive costs only the entries asked for. Entries may be STORED (torch.save writes
// every entry uncompressed, 64-byte aligned) or DEFLATEd (node:zlib); anything else is refused.
// Every offset and size is checked against the file size, so a truncated or corrupted archive gives
// a clear error rather than a short read. CRC-32 is checked for every entry read when node:zlib
// has crc32 (Node >= 20.15).
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import * as zlib from 'node:zlib';

export interface ZipEntry {
  name: string;
  method: number; // 0 stored, 8 deflated
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

export class ZipError extends Error {
  constructor(path: string, message: string) {
    super(`zip archive '${path}': ${message}`);
    this.name = 'ZipError';
  }
}

const SIG_LOCAL = 0x04034b50, SIG_CENTRAL = 0x02014b50, SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50, SIG_EOCD64_LOCATOR = 0x07064b50;
const IO_CHUNK = 1 << 30;
const crc32: ((data: Uint8Array) => number) | undefined = (zlib as unknown as { crc32?: (d: Uint8Array) => number }).crc32;

/** True when the first bytes are a zip local file header ("PK\x03\x04"). */
export function looksLikeZip(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
}

/** A file read with positioned reads; every read is bounds-checked against the size at open. */
export class RandomAccessFile {
  readonly size: number;
  private fd: number | null;

  constructor(readonly path: string, private readonly onError: (msg: string) => never) {
    this.fd = openSync(path, 'r');
    this.size = fstatSync(this.fd).size;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  /** Exactly `len` bytes at `pos`, or an error naming what was being read. */
  readAt(pos: number, len: number, what: string): Buffer {
    if (this.fd === null) return this.onError('the file is closed');
    if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(len) || pos < 0 || len < 0 || pos + len > this.size) {
      this.onError(`${what} lies outside the file (bytes ${pos}..${pos + len} of ${this.size}): the file is truncated or corrupt`);
    }
    const buf = Buffer.allocUnsafe(len);
    let done = 0;
    while (done < len) {
      const n = readSync(this.fd, buf, done, Math.min(IO_CHUNK, len - done), pos + done);
      if (n <= 0) this.onError(`short read of ${what}: the file changed or is truncated`);
      done += n;
    }
    return buf;
  }
}

export class ZipReader {
  readonly entries = new Map<string, ZipEntry>();
  readonly fileSize: number;
  private file: RandomAccessFile;

  constructor(readonly path: string) {
    this.file = new RandomAccessFile(path, (m) => this.fail(m));
    this.fileSize = this.file.size;
    try {
      this.readCentralDirectory();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  close(): void {
    this.file.close();
  }

  private fail(msg: string): never {
    throw new ZipError(this.path, msg);
  }

  private readAt(pos: number, len: number, what: string): Buffer {
    return this.file.readAt(pos, len, what);
  }

  private readCentralDirectory(): void {
    const size = this.fileSize;
    if (size < 22) this.fail(`only ${size} bytes: not a complete zip archive (truncated?)`);
    // the end-of-central-directory record is in the last 22 + 65535 (comment) bytes
    const tailLen = Math.min(size, 22 + 0xffff);
    const tail = this.readAt(size - tailLen, tailLen, 'the archive tail');
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === SIG_EOCD && i + 22 + tail.readUInt16LE(i + 20) <= tailLen) { eocd = i; break; }
    }
    if (eocd < 0) this.fail('no end-of-central-directory record: the archive is truncated or not a zip file');
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const locPos = size - tailLen + eocd - 20;
      if (locPos < 0) this.fail('ZIP64 end-of-central-directory locator missing');
      const loc = this.readAt(locPos, 20, 'the ZIP64 locator');
      if (loc.readUInt32LE(0) !== SIG_EOCD64_LOCATOR) this.fail('ZIP64 end-of-central-directory locator missing');
      const rec = this.readAt(Number(loc.readBigUInt64LE(8)), 56, 'the ZIP64 end-of-central-directory record');
      if (rec.readUInt32LE(0) !== SIG_EOCD64) this.fail('bad ZIP64 end-of-central-directory record');
      count = Number(rec.readBigUInt64LE(32));
      cdSize = Number(rec.readBigUInt64LE(40));
      cdOffset = Number(rec.readBigUInt64LE(48));
    }
    const cd = this.readAt(cdOffset, cdSize, 'the central directory');
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL) this.fail(`central directory entry ${i} is corrupt`);
      const flags = cd.readUInt16LE(p + 8);
      const method = cd.readUInt16LE(p + 10);
      const crc = cd.readUInt32LE(p + 16);
      let compressedSize = cd.readUInt32LE(p + 20);
      let sz = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28), extraLen = cd.readUInt16LE(p + 30), commentLen = cd.readUInt16LE(p + 32);
      let localHeaderOffset = cd.readUInt32LE(p + 42);
      if (p + 46 + nameLen + extraLen + commentLen > cd.length) this.fail(`central directory entry ${i} overruns the directory`);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
      // ZIP64 extended information: the 64-bit values of the fields that read 0xFFFFFFFF, in this order
      let e = p + 46 + nameLen;
      const end = e + extraLen;
      while (e + 4 <= end) {
        const id = cd.readUInt16LE(e), len = cd.readUInt16LE(e + 2);
        if (id === 0x0001) {
          let q = e + 4;
          const next = (): number => {
            if (q + 8 > e + 4 + len) this.fail(`entry '${name}': short ZIP64 extra field`);
            const v = Number(cd.readBigUInt64LE(q));
            q += 8;
            return v;
          };
          if (sz === 0xffffffff) sz = next();
          if (compressedSize === 0xffffffff) compressedSize = next();
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = next();
        }
        e += 4 + len;
      }
      if (flags & 0x1) this.fail(`entry '${name}' is encrypted`);
      this.entries.set(name, { name, method, compressedSize, size: sz, crc32: crc, localHeaderOffset });
      p += 46 + nameLen + extraLen + commentLen;
    }
  }

  /** Where the entry's (possibly compressed) data starts in the file. */
  dataOffset(name: string): number {
    const en = this.entries.get(name);
    if (!en) this.fail(`has no entry '${name}'`);
    const lh = this.readAt(en.localHeaderOffset, 30, `the local header of '${name}'`);
    if (lh.readUInt32LE(0) !== SIG_LOCAL) this.fail(`local header of '${name}' is corrupt`);
    return en.localHeaderOffset + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
  }

  /** The entry's bytes (inflated when deflated). */
  read(name: string): Buffer {
    const dataPos = this.dataOffset(name);
    const en = this.entries.get(name)!;
    const raw = this.readAt(dataPos, en.compressedSize, `the data of '${name}'`);
    let data: Buffer;
    if (en.method === 0) data = raw;
    else if (en.method === 8) {
      try {
        data = zlib.inflateRawSync(raw);
      } catch (e) {
        this.fail(`entry '${name}' does not inflate: ${(e as Error).message}`);
      }
    } else this.fail(`entry '${name}' uses compression method ${en.method} (only stored and deflate are supported)`);
    if (data.length !== en.size) this.fail(`entry '${name}' has ${data.length} bytes, the directory says ${en.size}`);
    if (crc32 && (crc32(data) >>> 0) !== en.crc32) this.fail(`entry '${name}' fails its CRC-32 check (corrupt archive)`);
    return data;
  }
}
