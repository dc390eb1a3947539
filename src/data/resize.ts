// Crop + resize with Pillow's resampling algorithm (what torchvision uses on PIL images):
// separable convolution, antialiased when downscaling (the filter support grows with the scale),
// bilinear (triangle, support 1) or bicubic (a = -0.5, support 2) kernels, 22-bit fixed-point
// weights, and rounding to uint8 after the horizontal and again after the vertical pass.
// Following Pillow exactly keeps our crops within one grey level of torchvision's.

export type Interp = 'bilinear' | 'bicubic';

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);
const INV_ONE = 1 / ONE;

function bilinear(x: number): number {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coeffs {
  ksize: number;
  /** Per output pixel: first input index and number of taps. */
  bounds: Int32Array;
  /** Fixed-point weights, ksize per output pixel. */
  kk: Float64Array;
}

const coeffCache = new Map<string, Coeffs>();

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for an input span of inSize pixels. */
function coeffs(inSize: number, outSize: number, interp: Interp): Coeffs {
  const key = `${inSize},${outSize},${interp}`;
  const hit = coeffCache.get(key);
  if (hit) return hit;
  const filter = interp === 'bilinear' ? bilinear : bicubic;
  const support0 = interp === 'bilinear' ? 1 : 2;
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = support0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Float64Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = filter((x + xmin - center + 0.5) * ss);
      ww += w[x]!;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? w[x]! / ww : w[x]!;
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  const c = { ksize, bounds, kk };
  if (coeffCache.size > 4096) coeffCache.clear();
  coeffCache.set(key, c);
  return c;
}

function clip8(ss: number): number {
  const v = Math.floor(ss * INV_ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

let scratch = new Uint8Array(0);
let accRow = new Float64Array(0);

/**
 * Crop `box` out of an HWC uint8 image and resize it to outW x outH (torchvision's
 * F.resized_crop on a PIL image). Writes HWC uint8 into `out` (allocated if absent).
 */
export function resizedCrop(
  src: Uint8Array,
  srcW: number,
  srcH: number,
  c: number,
  box: CropBox,
  outW: number,
  outH: number,
  interp: Interp,
  out?: Uint8Array,
): Uint8Array {
  const { top, left, width: bw, height: bh } = box;
  if (bw < 1 || bh < 1 || left < 0 || top < 0 || left + bw > srcW || top + bh > srcH) {
    throw new RangeError(`crop box ${JSON.stringify(box)} outside a ${srcW}x${srcH} image`);
  }
  const dst = out ?? new Uint8Array(outW * outH * c);
  const needH = bw !== outW;
  const needV = bh !== outH;
  const ch = coeffs(bw, outW, interp);
  const cv = coeffs(bh, outH, interp);
  // Rows of the crop the vertical pass reads.
  const yFirst = needV ? cv.bounds[0]! : 0;
  const yLast = needV ? cv.bounds[2 * outH - 2]! + cv.bounds[2 * outH - 1]! : outH;

  // Horizontal pass -> tmp (rows yFirst..yLast of the crop, outW wide), or a plain copy of the crop.
  const tmpW = outW;
  const tmpRows = yLast - yFirst;
  if (scratch.length < tmpW * tmpRows * c) scratch = new Uint8Array(tmpW * tmpRows * c * 2);
  const tmp = needV ? scratch : dst;
  const { ksize: kh, bounds: bh8, kk: kkh } = ch;
  for (let r = 0; r < tmpRows; r++) {
    const srow = (top + yFirst + r) * srcW;
    const trow = r * tmpW;
    if (!needH) {
      const s0 = (srow + left) * c;
      tmp.set(src.subarray(s0, s0 + bw * c), trow * c);
      continue;
    }
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bh8[2 * xx]!;
      const xn = bh8[2 * xx + 1]!;
      const k0 = xx * kh;
      const sbase = (srow + left + xmin) * c;
      const tbase = (trow + xx) * c;
      if (c === 3) {
        let a0 = HALF;
        let a1 = HALF;
        let a2 = HALF;
        for (let x = 0; x < xn; x++) {
          const k = kkh[k0 + x]!;
          const s = sbase + 3 * x;
          a0 += src[s]! * k;
          a1 += src[s + 1]! * k;
          a2 += src[s + 2]! * k;
        }
        tmp[tbase] = clip8(a0);
        tmp[tbase + 1] = clip8(a1);
        tmp[tbase + 2] = clip8(a2);
      } else {
        for (let cc = 0; cc < c; cc++) {
          let a = HALF;
          for (let x = 0; x < xn; x++) a += src[sbase + x * c + cc]! * kkh[k0 + x]!;
          tmp[tbase + cc] = clip8(a);
        }
      }
    }
  }
  if (!needV) return dst;

  // Vertical pass tmp -> dst, a whole output row at a time (contiguous inner loops).
  const { ksize: kv, bounds: bv, kk: kkv } = cv;
  const rowLen = outW * c;
  if (accRow.length < rowLen) accRow = new Float64Array(rowLen);
  const acc = accRow;
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bv[2 * yy]! - yFirst;
    const yn = bv[2 * yy + 1]!;
    const k0 = yy * kv;
    acc.fill(HALF, 0, rowLen);
    for (let y = 0; y < yn; y++) {
      const k = kkv[k0 + y]!;
      const s0 = (ymin + y) * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i] += tmp[s0 + i]! * k;
    }
    const dbase = yy * rowLen;
    for (let i = 0; i < rowLen; i++) dst[dbase + i] = clip8(acc[i]!);
  }
  return dst;
}
