// Checkpoints: one directory per save, `<out>/checkpoints/step-NNNNNNN/`, holding each network as a
// safetensors file with the official state-dict names (encoder, target_encoder, predictor or
// expander), the optimiser state, and state.json (step, RNG states, resolved config). The directory
// is written under a temporary name and renamed, then `<out>/latest.json` is replaced atomically:
// a kill at any moment leaves the previous checkpoint intact. state.json, written last, records the
// size and sha256 of every other file; resuming verifies them and falls back to the newest intact
// checkpoint (with a warning) when a file was flipped, truncated or lost.
import { mkdirSync, renameSync, rmSync, readdirSync, existsSync, readFileSync, writeFileSync, openSync, fsyncSync, closeSync, statSync, readSync } from 'node:fs';
import { join, resolve, dirname, basename } from 'node:path';
import { createHash } from 'node:crypto';
import { Tensor } from '../tensor/index.js';
import { saveTensors, loadTensors } from '../io/tensors.js';

export interface CheckpointState {
  step: number;
  epoch: number;
  stepInEpoch: number;
  config: unknown;
  maskRng?: number[];
  torchRng?: number[];
  optimizerStep: number;
  method: string;
  /** size and sha256 of each file of the checkpoint (added by saveCheckpoint) */
  files?: Record<string, FileDigest>;
  [k: string]: unknown;
}

export interface FileDigest {
  bytes: number;
  sha256: string;
}

export interface CheckpointContent {
  nets: Record<string, Record<string, Tensor>>; // file stem -> state dict
  optimizer?: Record<string, Tensor>;
  state: CheckpointState;
}

function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, JSON.stringify(value, null, 2));
    const fd = openSync(tmp, 'r');
    try { fsyncSync(fd); } finally { closeSync(fd); }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true }); // a full disk must not leave temp files behind
    throw e;
  }
}

/** Size and sha256 of a file, read in 8 MiB blocks. */
export function digestFile(path: string): FileDigest {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(8 << 20);
  const fd = openSync(path, 'r');
  let bytes = 0;
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; bytes += n) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return { bytes, sha256: hash.digest('hex') };
}

const STEP_DIR = /^step-\d+$/;
const stepDirName = (step: number): string => `step-${String(step).padStart(7, '0')}`;

export function saveCheckpoint(out: string, c: CheckpointContent, keep = 2): string {
  const root = join(out, 'checkpoints');
  mkdirSync(root, { recursive: true });
  const name = stepDirName(c.state.step);
  const final = join(root, name);
  const tmp = join(root, `.${name}.tmp-${process.pid}`);
  if (existsSync(join(final, 'state.json')) && checkpointProblem(final) === undefined) {
    // This step is already saved (the state of a step is unique): never delete what latest.json may name.
    writeJsonAtomic(join(out, 'latest.json'), { step: c.state.step, dir: `checkpoints/${name}` });
    return final;
  }
  rmSync(tmp, { recursive: true, force: true });
  try {
    mkdirSync(tmp);
    const files: Record<string, FileDigest> = {};
    const write = (file: string, sd: Record<string, Tensor>, meta?: Record<string, string>) => {
      saveTensors(join(tmp, file), sd, meta);
      files[file] = digestFile(join(tmp, file));
    };
    for (const [stem, sd] of Object.entries(c.nets)) write(`${stem}.safetensors`, sd, { format: 'pt', step: String(c.state.step) });
    if (c.optimizer) write('optimizer.safetensors', c.optimizer);
    writeJsonAtomic(join(tmp, 'state.json'), { ...c.state, files });
  } catch (e) {
    // e.g. a full disk: drop the partial checkpoint; latest.json still names the previous, intact one
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`checkpoint at step ${c.state.step} not written (${(e as Error).message}); ` +
      `the previous checkpoint${existsSync(join(out, 'latest.json')) ? ' named by latest.json' : ''} is intact`, { cause: e });
  }
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  writeJsonAtomic(join(out, 'latest.json'), { step: c.state.step, dir: `checkpoints/${name}` });
  // prune older checkpoints (never the one just written) and temp dirs left by killed runs
  for (const d of readdirSync(root)) if (/^\.step-\d+\.tmp-\d+$/.test(d)) rmSync(join(root, d), { recursive: true, force: true });
  const all = readdirSync(root).filter((d) => STEP_DIR.test(d)).sort();
  for (const d of all.slice(0, Math.max(0, all.length - keep))) if (d !== name) rmSync(join(root, d), { recursive: true, force: true });
  return final;
}

/** Resolves a run directory, a checkpoint directory or a .safetensors file to a checkpoint directory. */
export function resolveCheckpointDir(path: string): string {
  const p = resolve(path);
  if (!existsSync(p)) throw new Error(`checkpoint '${path}' does not exist`);
  if (statSync(p).isFile()) {
    if (!p.endsWith('.safetensors')) throw new Error(`checkpoint '${path}' is a file but not .safetensors`);
    return dirname(p);
  }
  const latest = join(p, 'latest.json');
  if (existsSync(latest)) {
    let rel: string;
    try {
      rel = (JSON.parse(readFileSync(latest, 'utf8')) as { dir: string }).dir;
    } catch (e) {
      throw new Error(`checkpoint pointer '${latest}' is unreadable: ${(e as Error).message}`);
    }
    return join(p, rel);
  }
  if (existsSync(join(p, 'state.json')) || readdirSync(p).some((f) => f.endsWith('.safetensors'))) return p;
  throw new Error(`'${path}' holds no checkpoint (no latest.json, state.json or .safetensors file)`);
}

/** A run directory holds a checkpoint: latest.json, or (latest.json lost) a saved step directory. */
export function hasCheckpoint(out: string): boolean {
  if (existsSync(join(out, 'latest.json'))) return true;
  const root = join(out, 'checkpoints');
  return existsSync(root) && readdirSync(root).some((d) => STEP_DIR.test(d) && existsSync(join(root, d, 'state.json')));
}

/** Why a state.json value is not a checkpoint state, or undefined. */
function stateProblem(v: unknown): string | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'not a JSON object';
  const s = v as Record<string, unknown>;
  const count = (k: string) => (typeof s[k] === 'number' && Number.isSafeInteger(s[k]) && (s[k] as number) >= 0 ? undefined
    : `'${k}' must be a non-negative integer, got ${JSON.stringify(s[k])}`);
  const ints = (k: string, max: number) => (s[k] === undefined || (Array.isArray(s[k]) &&
    (s[k] as unknown[]).every((x) => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= max)) ? undefined
    : `'${k}' must be an array of integers in [0, ${max}]`);
  const problem = count('step') ?? count('epoch') ?? count('stepInEpoch') ?? count('optimizerStep') ??
    ints('maskRng', 0xffffffff) ?? ints('torchRng', 255);
  if (problem) return problem;
  if (typeof s.method !== 'string' || !['cjepa', 'ijepa', 'vicreg'].includes(s.method)) return `'method' must be cjepa, ijepa or vicreg, got ${JSON.stringify(s.method)}`;
  if (s.config === null || typeof s.config !== 'object') return `'config' must be an object`;
  if (s.files !== undefined) {
    if (s.files === null || typeof s.files !== 'object') return `'files' must be an object`;
    for (const [f, d] of Object.entries(s.files as Record<string, unknown>)) {
      const dg = d as FileDigest | null;
      if (!/^[\w.-]+\.safetensors$/.test(f) || dg === null || typeof dg !== 'object' || !Number.isSafeInteger(dg.bytes) || dg.bytes < 0 ||
        typeof dg.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(dg.sha256)) return `'files' entry ${JSON.stringify(f)} is invalid`;
    }
  }
  return undefined;
}

/** The state.json of a checkpoint, fully validated; errors name the file. */
export function readCheckpointState(dir: string): CheckpointState {
  const p = join(dir, 'state.json');
  if (!existsSync(p)) throw new Error(`checkpoint '${dir}' has no state.json`);
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    throw new Error(`checkpoint state '${p}' is unreadable (truncated or corrupt?): ${(e as Error).message}`);
  }
  const problem = stateProblem(v);
  if (problem) throw new Error(`checkpoint state '${p}' is invalid: ${problem}`);
  const st = v as CheckpointState;
  if (STEP_DIR.test(basename(dir)) && basename(dir) !== stepDirName(st.step)) {
    throw new Error(`checkpoint state '${p}' is invalid: it says step ${st.step} but lies in ${basename(dir)}`);
  }
  return st;
}

/** Why a checkpoint file does not match its recorded size and sha256, or undefined. */
function fileProblem(dir: string, file: string, want: FileDigest): string | undefined {
  const p = join(dir, file);
  if (!existsSync(p)) return `${file} is missing`;
  const got = digestFile(p);
  if (got.bytes !== want.bytes) return `${file} has ${got.bytes} bytes, ${want.bytes} were written (truncated?)`;
  if (got.sha256 !== want.sha256) return `${file} fails its sha256 check (content changed since it was written)`;
  return undefined;
}

/**
 * Why a checkpoint directory is not intact (state.json unreadable or invalid, a file missing, truncated or
 * changed), or undefined. Checkpoints written before checksums were recorded are checked for state.json only.
 */
export function checkpointProblem(dir: string): string | undefined {
  let st: CheckpointState;
  try {
    st = readCheckpointState(dir);
  } catch (e) {
    return (e as Error).message;
  }
  for (const [file, want] of Object.entries(st.files ?? {})) {
    const problem = fileProblem(dir, file, want);
    if (problem) return problem;
  }
  return undefined;
}

/** Throws if `file` (a file of a checkpoint directory) differs from the digest its state.json records. */
export function verifyCheckpointFile(file: string): void {
  const dir = dirname(file);
  if (!existsSync(join(dir, 'state.json'))) return;
  const want = readCheckpointState(dir).files?.[basename(file)];
  const problem = want && fileProblem(dir, basename(file), want);
  if (problem) throw new Error(`checkpoint '${dir}' is damaged: ${problem}`);
}

/**
 * The checkpoint to resume `out` from: the one latest.json names if it is intact, else the newest intact
 * one (each damaged checkpoint skipped is reported through `warn`). Throws when none is intact.
 */
export function resolveIntactCheckpoint(out: string, warn: (msg: string) => void): string {
  const root = join(out, 'checkpoints');
  const candidates: string[] = [];
  try {
    const latest = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as { dir?: unknown };
    if (typeof latest.dir === 'string' && /^checkpoints\/step-\d+$/.test(latest.dir)) candidates.push(join(out, latest.dir));
    else warn(`${join(out, 'latest.json')} names no checkpoint directory; looking for the newest intact checkpoint`);
  } catch (e) {
    warn(`${join(out, 'latest.json')} is unreadable (${(e as Error).message}); looking for the newest intact checkpoint`);
  }
  const dirs = existsSync(root) ? readdirSync(root).filter((d) => STEP_DIR.test(d)).sort().reverse() : [];
  for (const d of dirs) if (!candidates.includes(join(root, d))) candidates.push(join(root, d));
  const damaged: string[] = [];
  for (const dir of candidates) {
    const problem = checkpointProblem(dir);
    if (problem === undefined) {
      if (damaged.length) warn(`warning: skipped damaged checkpoint(s): ${damaged.join('; ')}. Resuming from ${basename(dir)}`);
      return dir;
    }
    damaged.push(`${basename(dir)}: ${problem}`);
  }
  throw new Error(`no intact checkpoint in '${out}'` + (damaged.length ? `: ${damaged.join('; ')}` : ''));
}

/** Loads one network's tensors (`stem` = encoder, target_encoder, predictor, expander, optimizer). */
export function loadNet(dir: string, stem: string): Record<string, Tensor> {
  const p = join(dir, `${stem}.safetensors`);
  if (!existsSync(p)) throw new Error(`checkpoint '${dir}' has no ${stem}.safetensors`);
  return loadTensors(p).tensors;
}

export function checkpointName(dir: string): string {
  return basename(dir);
}
