// Fixed 2-D sin-cos position embeddings, laid out as the official I-JEPA code does: the first half
// of the channels encodes the column (meshgrid(w, h)[0]), the second half the row; tokens row-major.
import { Tensor, tensor, onDefaultDevice } from '../tensor/index.js';

function sincos1d(dim: number, pos: number[]): number[][] {
  const half = dim / 2;
  const omega = Array.from({ length: half }, (_, i) => 1 / 10000 ** (i / half));
  return pos.map((p) => [...omega.map((o) => Math.sin(p * o)), ...omega.map((o) => Math.cos(p * o))]);
}

/** (1, gh*gw, dim) float32 tensor on the default device. `dim` must be divisible by 4. */
export function sincos2dPosEmbed(dim: number, gridH: number, gridW: number = gridH): Tensor {
  if (dim % 4 !== 0) throw new Error(`sin-cos position embedding needs a dim divisible by 4, got ${dim}`);
  const cols: number[] = [], rows: number[] = [];
  for (let i = 0; i < gridH; i++) for (let j = 0; j < gridW; j++) { cols.push(j); rows.push(i); }
  const a = sincos1d(dim / 2, cols), b = sincos1d(dim / 2, rows);
  const flat = new Float32Array(gridH * gridW * dim);
  for (let n = 0; n < gridH * gridW; n++) {
    flat.set(a[n]!, n * dim);
    flat.set(b[n]!, n * dim + dim / 2);
  }
  return tensor(flat, [1, gridH * gridW, dim], onDefaultDevice()); // computed on the host, used on the default device
}
