// A tiny labelled image dataset for end-to-end tests: 16x16 grayscale images with a bright 8x8 square
// in one of four quadrants (the class), plus seeded noise, written as IDX files.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeIdx } from '../../src/data/index.js';

export const SYNTH_SIZE = 16;

/** Writes `<dir>/img.idx` and `<dir>/lab.idx`; returns the labelled and unlabelled data specs. */
export function writeQuadrantIdx(dir: string, n: number, seed = 1): { data: string; unlabelled: string } {
  const S = SYNTH_SIZE;
  const img = new Uint8Array(n * S * S), lab = new Uint8Array(n);
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < n; i++) {
    lab[i] = i % 4;
    const oy = (lab[i]! >> 1) * 8, ox = (lab[i]! & 1) * 8;
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) {
      const inside = y >= oy && y < oy + 8 && x >= ox && x < ox + 8;
      img[i * S * S + y * S + x] = Math.min(255, Math.floor((inside ? 180 : 30) + rnd() * 60));
    }
  }
  writeFileSync(join(dir, 'img.idx'), encodeIdx([n, S, S], img));
  writeFileSync(join(dir, 'lab.idx'), encodeIdx([n], lab));
  return { data: `idx:${join(dir, 'img.idx')},${join(dir, 'lab.idx')}`, unlabelled: `idx:${join(dir, 'img.idx')}` };
}
