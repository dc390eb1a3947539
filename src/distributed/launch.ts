// Starting data-parallel ranks: the `--nproc` launcher (one child process per local rank, all of them
// stopped when one fails) and the torchrun-style environment a rank reads its place from.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/** Where this process sits: torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). */
export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
}

export const DEFAULT_MASTER_PORT = 29500;

function intVar(env: Record<string, string | undefined>, name: string, min: number): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}='${v}' must be an integer >= ${min}`);
  return n;
}

/** The rank's place from torchrun-style variables, or null when RANK and WORLD_SIZE are both unset. */
export function distEnvFrom(env: Record<string, string | undefined> = process.env): DistEnv | null {
  const rank = intVar(env, 'RANK', 0), worldSize = intVar(env, 'WORLD_SIZE', 1);
  if (rank === undefined && worldSize === undefined) return null;
  if (rank === undefined || worldSize === undefined) {
    throw new Error(`distributed launch: RANK and WORLD_SIZE must be set together (got RANK=${env.RANK ?? 'unset'}, WORLD_SIZE=${env.WORLD_SIZE ?? 'unset'})`);
  }
  if (rank >= worldSize) throw new Error(`distributed launch: RANK=${rank} must be below WORLD_SIZE=${worldSize}`);
  const masterAddr = env.MASTER_ADDR || '127.0.0.1';
  const masterPort = intVar(env, 'MASTER_PORT', 1) ?? DEFAULT_MASTER_PORT;
  if (masterPort > 65535) throw new Error(`MASTER_PORT=${masterPort} must be at most 65535`);
  return { rank, worldSize, localRank: intVar(env, 'LOCAL_RANK', 0) ?? rank, masterAddr, masterPort };
}

/** A TCP port free on this machine right now (for a single-machine rendezvous). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

export interface LaunchOptions {
  /** Ranks on this machine. */
  nproc: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  /** Default: a free port with one node, 29500 with several. */
  masterPort?: number;
  /** Threads of this machine, split between the local ranks (CJEPA_THREADS = max(1, floor(threads / nproc))). */
  threads: number;
  /** The script and arguments every rank runs. */
  script: string;
  args: (threadsPerRank: number) => string[];
  onMessage?: (m: string) => void;
  /** After a rank fails: how long the others get to stop on SIGTERM before SIGKILL, ms (default 5000). */
  graceMs?: number;
}

/**
 * Starts `nproc` ranks and waits for them. When one exits non-zero (or is killed), the others are
 * stopped and the launcher's exit code is non-zero; 0 only when every rank exited 0.
 */
export async function launchLocal(o: LaunchOptions): Promise<number> {
  const say = o.onMessage ?? ((m: string) => console.error(m));
  const nnodes = o.nnodes ?? 1, nodeRank = o.nodeRank ?? 0;
  if (!Number.isInteger(o.nproc) || o.nproc < 1) throw new Error(`--nproc must be a positive integer, got ${o.nproc}`);
  if (!Number.isInteger(nnodes) || nnodes < 1) throw new Error(`--nnodes must be a positive integer, got ${nnodes}`);
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes) throw new Error(`--node-rank must be in [0, ${nnodes}), got ${nodeRank}`);
  if (nnodes > 1 && !o.masterAddr) throw new Error('--nnodes > 1 needs --master-addr (the address of node 0, reachable from every node)');
  const masterAddr = o.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? (nnodes > 1 ? DEFAULT_MASTER_PORT : await freePort());
  const world = nnodes * o.nproc;
  const perRank = Math.max(1, Math.floor(o.threads / o.nproc));
  const graceMs = o.graceMs ?? 5000;
  say(`launching ${o.nproc} rank(s) on this node (node ${nodeRank} of ${nnodes}, world size ${world}), rendezvous ${masterAddr}:${masterPort}, ${perRank} thread(s) each`);

  const children: (ChildProcess | null)[] = [];
  let failed: { rank: number; code: number } | null = null;
  const stopOthers = (): void => {
    for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    setTimeout(() => { for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); }, graceMs).unref();
  };
  const onTerm = (): void => stopOthers();
  process.on('SIGTERM', onTerm); // Ctrl-C reaches every rank through the terminal; a kill of the launcher does not
  let interrupted = false;
  const onInt = (): void => { // the ranks got it too: they agree on a step, rank 0 checkpoints, all exit 130
    if (!interrupted) say('interrupt: the ranks finish this step and rank 0 writes a checkpoint (Ctrl-C again quits at once)');
    interrupted = true;
  };
  process.on('SIGINT', onInt);
  try {
    const exits = Array.from({ length: o.nproc }, (_, local) => {
      const rank = nodeRank * o.nproc + local;
      const child = spawn(process.execPath, [o.script, ...o.args(perRank)], {
        stdio: 'inherit',
        env: {
          ...process.env, RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(local), LOCAL_WORLD_SIZE: String(o.nproc),
          MASTER_ADDR: masterAddr, MASTER_PORT: String(masterPort), CJEPA_THREADS: String(perRank), CJEPA_LAUNCHED: '1',
        },
      });
      children.push(child);
      say(`rank ${rank}: pid ${child.pid}`);
      return new Promise<void>((resolve) => {
        child.once('error', (e) => { say(`rank ${rank} could not start: ${e.message}`); failed ??= { rank, code: 1 }; stopOthers(); resolve(); });
        child.once('exit', (code, signal) => {
          if (interrupted && (code === 130 || signal === 'SIGINT')) {
            failed ??= { rank, code: 130 };
          } else if (code !== 0 && failed === null) {
            failed = { rank, code: code ?? 1 };
            say(`rank ${rank} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}; stopping the other rank(s)`);
            stopOthers();
          }
          resolve();
        });
      });
    });
    await Promise.all(exits);
  } finally {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
  }
  const f = failed as { rank: number; code: number } | null;
  return f === null ? 0 : f.code === 0 ? 1 : f.code;
}
