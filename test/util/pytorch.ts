// Runs a PyTorch reference script (Debian python3-torch) on tensors we pass, and returns its tensors.
// Inputs and outputs travel as safetensors files; the script gets `inp` (dict) and fills `out` (dict).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor } from '../../src/tensor/index.js';
import { saveTensors, loadTensors } from '../../src/io/tensors.js';

export const PYTHON = process.env.CJEPA_TEST_PYTHON ?? '/usr/bin/python3';
const PY_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'py');

/** Runs `body` (Python, indented at top level) with `inp`/`out` dicts and `torch` imported. */
export function runTorch(body: string, inputs: Record<string, Tensor>, extraPath: string[] = []): Record<string, Tensor> {
  const dir = mkdtempSync(join(tmpdir(), 'cjepa-pt-'));
  try {
    const inPath = join(dir, 'in.safetensors');
    const outPath = join(dir, 'out.safetensors');
    saveTensors(inPath, inputs);
    const script = [
      'import sys, torch',
      `sys.path[:0] = ${JSON.stringify([PY_DIR, ...extraPath])}`,
      'import st',
      'torch.set_num_threads(1)',
      `inp = st.load(${JSON.stringify(inPath)})`,
      'out = {}',
      body,
      `st.save(${JSON.stringify(outPath)}, out)`,
    ].join('\n');
    const scriptPath = join(dir, 'ref.py');
    writeFileSync(scriptPath, script);
    const r = spawnSync(PYTHON, [scriptPath], { encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) throw new Error(`PyTorch reference failed (${PYTHON}):\n${r.stderr || r.error}`);
    return loadTensors(outPath).tensors;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Max |a - b| over all elements (both converted to float64). */
export function maxAbsDiff(a: Tensor, b: Tensor): number {
  const x = a.to('float64').toArray();
  const y = b.to('float64').toArray();
  if (x.length !== y.length) throw new Error(`size mismatch ${a.shape} vs ${b.shape}`);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

/** Max |a - b| / (max |b| + tiny): a relative error for whole tensors. */
export function maxRelDiff(a: Tensor, b: Tensor): number {
  const y = b.to('float64').toArray();
  let scale = 0;
  for (const v of y) scale = Math.max(scale, Math.abs(v));
  return maxAbsDiff(a, b) / (scale + 1e-12);
}
