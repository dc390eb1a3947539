// reproduce's floors file (<runs dir>/floors.json): the raw-pixel and random-init rows, one entry per
// data / subset / seed, so runs of several seeds share it. Read by reproduce and monitor_plots.
import { existsSync, readFileSync } from 'node:fs';

export const floorsKey = (data: string, subset: number, seed: number): string => `${data}|subset ${subset}|seed ${seed}`;

/** Every entry of the file ({} when it does not exist); the one-entry file of earlier versions too. */
export function readFloorsFile<Row>(file: string): Record<string, Row[]> {
  if (!existsSync(file)) return {};
  const j = JSON.parse(readFileSync(file, 'utf8'));
  return typeof j.key === 'string' && Array.isArray(j.floors) ? { [j.key]: j.floors } : j;
}
