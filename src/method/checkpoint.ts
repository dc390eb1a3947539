// Checkpoints: one directory per save, `<out>/checkpoints/step-NNNNNNN/`, holding each network as a
// safetensors file with the official state-dict names (encoder, target_encoder, predictor or
// expander), the optimiser state, and state.json (step, RNG states, resolved config). The directory
// is written under a temporary name and renamed, then `<out>/latest.json` is replaced atomically:
// a kill at any moment leaves the previous checkpoint intact.
import { mkdirSync, renameSync, rmSync, readdirSync, existsSync, readFileSync, writeFileSync, openSync, fsyncSync, closeSync, statSync } from 'node:fs';
import { join, resolve, dirname, basename } from 'node:path';
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
  [k: string]: unknown;
}

export interface CheckpointContent {
  nets: Record<string, Record<string, Tensor>>; // file stem -> state dict
  optimizer?: Record<string, Tensor>;
  state: CheckpointState;
}

function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(value, null, 2));
  const fd = openSync(tmp, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
  renameSync(tmp, path);
}

export function saveCheckpoint(out: string, c: CheckpointContent, keep = 2): string {
  const root = join(out, 'checkpoints');
  mkdirSync(root, { recursive: true });
  const name = `step-${String(c.state.step).padStart(7, '0')}`;
  const final = join(root, name);
  const tmp = join(root, `.${name}.tmp-${process.pid}`);
  if (existsSync(join(final, 'state.json'))) {
    // This step is already saved (the state of a step is unique): never delete what latest.json may name.
    writeJsonAtomic(join(out, 'latest.json'), { step: c.state.step, dir: `checkpoints/${name}` });
    return final;
  }
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  for (const [stem, sd] of Object.entries(c.nets)) saveTensors(join(tmp, `${stem}.safetensors`), sd, { format: 'pt', step: String(c.state.step) });
  if (c.optimizer) saveTensors(join(tmp, 'optimizer.safetensors'), c.optimizer);
  writeJsonAtomic(join(tmp, 'state.json'), c.state);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  writeJsonAtomic(join(out, 'latest.json'), { step: c.state.step, dir: `checkpoints/${name}` });
  // prune older checkpoints (never the one just written) and temp dirs left by killed runs
  for (const d of readdirSync(root)) if (/^\.step-\d+\.tmp-\d+$/.test(d)) rmSync(join(root, d), { recursive: true, force: true });
  const all = readdirSync(root).filter((d) => /^step-\d+$/.test(d)).sort();
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

export function hasCheckpoint(out: string): boolean {
  return existsSync(join(out, 'latest.json'));
}

export function readCheckpointState(dir: string): CheckpointState {
  const p = join(dir, 'state.json');
  if (!existsSync(p)) throw new Error(`checkpoint '${dir}' has no state.json`);
  return JSON.parse(readFileSync(p, 'utf8')) as CheckpointState;
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
