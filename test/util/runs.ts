// Shared by the trainer and reliability tests: a tiny training run (in process or through the CLI)
// and polling helpers for runs in child processes.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The CLI entry point (dist/src/cli/main.js). */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** A YAML config for a tiny C-JEPA run on `data` (single thread, no workers), plus `extra` YAML lines. */
export function writeTinyCliConfig(path: string, data: string, extra: string[]): string {
  writeFileSync(path, [
    'method: cjepa', `data: "${data}"`, 'workers: 0', 'threads: 1', 'masks: { minKeep: 1 }',
    'model: { name: vit_tiny, patch: 4, imgSize: 16, depth: 1, embedDim: 32, numHeads: 2 }',
    'predictor: { embedDim: 16, depth: 1, numHeads: 2 }', ...extra,
  ].join('\n'));
  return path;
}

/** The step latest.json names (-1 while there is none or it is being replaced). */
export function latestStep(out: string): number {
  try {
    return existsSync(`${out}/latest.json`) ? (JSON.parse(readFileSync(`${out}/latest.json`, 'utf8')) as { step: number }).step : -1;
  } catch {
    return -1;
  }
}

/** Polls `cond` every 20 ms; throws naming `what` after `timeoutMs`. */
export async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
