// One writer per run directory. `<out>/run.lock` is created with O_EXCL and holds the writer's PID,
// host and start time; a second pretrain or resume on the same directory is refused with one line
// naming the holder. A lock whose process is gone (killed with SIGKILL, machine rebooted) is stale:
// the next writer on the same host takes it over, so a kill never blocks a resume. The lock is
// released by `release()` and, as a last resort, when the process exits.
import { openSync, writeSync, closeSync, readFileSync, unlinkSync, renameSync, linkSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

export const LOCK_FILE = 'run.lock';

export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the holder took the lock */
  started: string;
}

export interface RunLock {
  readonly path: string;
  /** Removes the lock if it is still ours. Idempotent. */
  release(): void;
}

/** Lock files held by this process (a second pretrain in the same process is a second writer too). */
const heldHere = new Set<string>();

function readHolder(path: string): { raw: string; holder: LockHolder | null } | undefined {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const h = JSON.parse(raw) as LockHolder;
    if (Number.isSafeInteger(h.pid) && h.pid > 0 && typeof h.host === 'string' && typeof h.started === 'string') return { raw, holder: h };
  } catch { /* not JSON: a writer between open and write, or garbage */ }
  return { raw, holder: null };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

/** Linux: when the process now running as `pid` started (ms since the epoch), to detect a reused PID. */
function processStartMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    return Number.isFinite(ticks) && Number.isFinite(btime) ? btime * 1000 + ticks * 10 : undefined; // USER_HZ = 100
  } catch {
    return undefined;
  }
}

/** Why the lock is stale (its writer is gone), or undefined while it may still be held. */
function staleReason(path: string, h: LockHolder | null): string | undefined {
  if (h === null) {
    // unparsable: a writer is between creating and filling it (microseconds), or it is debris
    return Date.now() - statSync(path).mtimeMs > 10_000 ? 'unreadable lock file' : undefined;
  }
  if (h.host !== hostname()) return undefined; // cannot see another machine's processes
  if (h.pid === process.pid) return heldHere.has(path) ? undefined : 'left by an earlier process with this PID';
  if (!pidAlive(h.pid)) return `process ${h.pid} is gone`;
  const start = processStartMs(h.pid), locked = Date.parse(h.started);
  if (start !== undefined && Number.isFinite(locked) && start > locked + 2_000) return `PID ${h.pid} now belongs to a newer process`;
  return undefined;
}

/** Moves a stale lock away and deletes it, unless another writer replaced it meanwhile. */
function breakStale(path: string, staleRaw: string): void {
  const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    renameSync(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else removed it
    throw e;
  }
  if (readFileSync(aside, 'utf8') !== staleRaw) {
    // we moved a fresh lock another writer took after our read: put it back (never over a newer one)
    try { linkSync(aside, path); } catch { /* a third writer holds it now */ }
  }
  unlinkSync(aside);
}

function describeHolder(h: LockHolder | null): string {
  return h === null ? 'another process (lock being written)' : `PID ${h.pid} on ${h.host} since ${h.started}`;
}

/** Takes the run lock of `out` (an existing directory) or throws naming the process that holds it. */
export function acquireRunLock(out: string): RunLock {
  const path = join(out, LOCK_FILE);
  const text = JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString() } satisfies LockHolder) + '\n';
  for (let attempt = 0; attempt < 8; attempt++) {
    let fd: number | undefined;
    try {
      fd = openSync(path, 'wx', 0o644); // O_CREAT | O_EXCL: exactly one writer creates it
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot create the run lock '${path}': ${(e as Error).message}`);
    }
    if (fd !== undefined) {
      try {
        writeSync(fd, text);
      } catch (e) {
        closeSync(fd);
        unlinkSync(path);
        throw new Error(`cannot write the run lock '${path}': ${(e as Error).message}`);
      }
      closeSync(fd);
      return hold(path, text);
    }
    const cur = readHolder(path);
    if (cur === undefined) continue; // released meanwhile: try again
    if (staleReason(path, cur.holder) === undefined) {
      throw new Error(`'${out}' is in use by another run: ${describeHolder(cur.holder)} holds ${path}` +
        (cur.holder && cur.holder.host !== hostname() ? ' (on another machine: delete the lock if that run is over)' : ''));
    }
    breakStale(path, cur.raw);
  }
  throw new Error(`cannot take the run lock '${path}': other writers keep replacing it`);
}

function hold(path: string, text: string): RunLock {
  heldHere.add(path);
  const release = (): void => {
    if (!heldHere.delete(path)) return;
    process.removeListener('exit', release);
    try {
      if (readFileSync(path, 'utf8') === text) unlinkSync(path);
    } catch { /* already gone */ }
  };
  process.on('exit', release);
  return { path, release };
}
