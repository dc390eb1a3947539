// Per-method augmentations as plain, serialisable view specs, plus the code that applies one view
// to one decoded image and writes it, normalised, into an NCHW float32 batch.
//
// Semantics follow torchvision (0.14):
//  - RandomResizedCrop: the box sampling is torchvision's get_params (10 tries, then the centre-crop
//    fallback; float32 draws, Python's round-half-even); the crop is resized with Pillow's algorithm
//    (see resize.ts) because torchvision pipelines run on PIL images.
//  - Colour ops (ColorJitter with a random order of brightness/contrast/saturation/hue, grayscale,
//    solarize) use torchvision's float-tensor definitions on [0,1] values. The official VICReg code
//    applies them to PIL uint8 images, which rounds after every op: outputs differ by ~1-2/255.
//  - Gaussian blur: torchvision's gaussian_blur (separable kernel, reflect padding) with kernel
//    radius ceil(3 sigma). VICReg uses PIL's GaussianBlur(radius=sigma), a box-blur approximation.
//    VICReg draws sigma in [0.1, 2.0] for 224 px; by default we scale that range by size/224
//    (so [0.014, 0.29] px at 32 px) to keep the blur's strength relative to the image. Set
//    `blurSigmaScale: 1` for the raw 224-px values.
//  - Grayscale images (1 channel): saturation, hue and grayscale are no-ops (as torchvision does
//    for 1-channel input); brightness, contrast, blur and solarize act on the luminance.
//    1-channel output is replicated when the model wants 3 channels; 3-channel images are reduced
//    to luminance (PIL's 'L' formula) first when it wants 1.

import type { Sample } from './dataset.js';
import { type CropBox, type Interp, resizedCrop } from './resize.js';
import type { UniformSource } from './rng.js';

export type { CropBox, Interp } from './resize.js';

export interface RandomResizedCropSpec {
  kind: 'random-resized';
  scale: [number, number];
  ratio: [number, number];
}

/** Resize the shorter side to `resize`, then take the centre `size` x `size` crop. */
export interface CenterCropSpec {
  kind: 'center';
  resize: number;
}

export interface JitterSpec {
  p: number;
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
}

export interface BlurSpec {
  p: number;
  /** Sigma range in output pixels. */
  sigma: [number, number];
}

/** One augmented view; plain data so it can be posted to worker threads. */
export interface ViewSpec {
  name: string;
  size: number;
  crop: RandomResizedCropSpec | CenterCropSpec;
  interpolation: Interp;
  flipP: number;
  jitter: JitterSpec | null;
  grayscaleP: number;
  blur: BlurSpec | null;
  solarizeP: number;
}

const DEFAULT_RATIO: [number, number] = [3 / 4, 4 / 3];

export interface IjepaTransformOptions {
  size?: number;
  scale?: [number, number];
  ratio?: [number, number];
  /** Horizontal flip with p = 0.5 (official I-JEPA configs: off). */
  flip?: boolean;
  interpolation?: Interp;
}

/** I-JEPA: random resized crop (scale 0.3-1.0, ratio 3/4-4/3), optional horizontal flip. */
export function ijepaTransform(o: IjepaTransformOptions = {}): ViewSpec {
  return {
    name: 'ijepa',
    size: o.size ?? 224,
    crop: { kind: 'random-resized', scale: o.scale ?? [0.3, 1.0], ratio: o.ratio ?? DEFAULT_RATIO },
    interpolation: o.interpolation ?? 'bilinear',
    flipP: o.flip ? 0.5 : 0,
    jitter: null,
    grayscaleP: 0,
    blur: null,
    solarizeP: 0,
  };
}

export interface VicregViewsOptions {
  size?: number;
  scale?: [number, number];
  ratio?: [number, number];
  interpolation?: Interp;
  flipP?: number;
  jitter?: Partial<JitterSpec>;
  grayscaleP?: number;
  /** Blur probability per view (official: [1.0, 0.1]). */
  blurP?: [number, number];
  /** Sigma range at 224 px (official: [0.1, 2.0]). */
  blurSigma?: [number, number];
  /** Multiplier of blurSigma; 'auto' (default) = size / 224. */
  blurSigmaScale?: number | 'auto';
  /** Solarisation probability per view (official: [0, 0.2]). */
  solarizeP?: [number, number];
}

/**
 * The official VICReg asymmetric pair (facebookresearch/vicreg augmentations.py): random resized crop
 * (scale 0.08-1, bicubic), flip 0.5, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale 0.2,
 * gaussian blur p 1.0 / 0.1 (sigma 0.1-2.0 at 224 px), solarisation p 0 / 0.2. Also C-JEPA's views.
 */
export function vicregViews(o: VicregViewsOptions = {}): [ViewSpec, ViewSpec] {
  const size = o.size ?? 224;
  const sigmaScale = o.blurSigmaScale === undefined || o.blurSigmaScale === 'auto' ? size / 224 : o.blurSigmaScale;
  const sigma = o.blurSigma ?? [0.1, 2.0];
  const blurP = o.blurP ?? [1.0, 0.1];
  const solP = o.solarizeP ?? [0, 0.2];
  const jitter: JitterSpec = { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1, ...o.jitter };
  const view = (k: 0 | 1): ViewSpec => ({
    name: `vicreg-${k + 1}`,
    size,
    crop: { kind: 'random-resized', scale: o.scale ?? [0.08, 1.0], ratio: o.ratio ?? DEFAULT_RATIO },
    interpolation: o.interpolation ?? 'bicubic',
    flipP: o.flipP ?? 0.5,
    jitter,
    grayscaleP: o.grayscaleP ?? 0.2,
    blur: blurP[k] > 0 ? { p: blurP[k], sigma: [sigma[0] * sigmaScale, sigma[1] * sigmaScale] } : null,
    solarizeP: solP[k],
  });
  return [view(0), view(1)];
}

export interface EvalTransformOptions {
  size?: number;
  /** Shorter side before the centre crop; default round(size * 256/224) from 128 px up, else size. */
  resize?: number;
  interpolation?: Interp;
}

/** Evaluation: resize the shorter side, centre crop. */
export function evalTransform(o: EvalTransformOptions = {}): ViewSpec {
  const size = o.size ?? 224;
  const resize = o.resize ?? (size >= 128 ? Math.round((size * 256) / 224) : size);
  if (resize < size) throw new Error(`evalTransform: resize (${resize}) must be >= crop size (${size})`);
  return {
    name: 'eval',
    size,
    crop: { kind: 'center', resize },
    interpolation: o.interpolation ?? 'bilinear',
    flipP: 0,
    jitter: null,
    grayscaleP: 0,
    blur: null,
    solarizeP: 0,
  };
}

export type Method = 'ijepa' | 'vicreg' | 'cjepa' | 'eval';

/**
 * Default views per method: I-JEPA and C-JEPA one crop (C-JEPA's regulariser compares target blocks
 * of the same image: docs/method.md, block-pair reading); VICReg the official asymmetric pair;
 * evaluation resize + centre crop. The trainer uses the same choice.
 */
export function viewsForMethod(method: Method, size: number): ViewSpec[] {
  switch (method) {
    case 'ijepa':
    case 'cjepa':
      return [ijepaTransform({ size })];
    case 'vicreg':
      return vicregViews({ size });
    case 'eval':
      return [evalTransform({ size })];
  }
}

// ---------------------------------------------------------------------------------------------
// Parameter sampling

import { roundHalfEven } from '../util/math.js';
export { roundHalfEven };

const f32 = Math.fround;

/** torch.empty(1).uniform_(a, b).item(): a float32 draw. */
function uniformF32(rng: UniformSource, a: number, b: number): number {
  return f32(a + rng.uniform() * (b - a));
}

/** torch.randint(low, high). */
function randint(rng: UniformSource, low: number, high: number): number {
  return low + Math.floor(rng.uniform() * (high - low));
}

/** torchvision RandomResizedCrop.get_params, including the centre-crop fallback after 10 tries. */
export function rrcParams(
  width: number,
  height: number,
  scale: [number, number],
  ratio: [number, number],
  rng: UniformSource,
): CropBox {
  const area = height * width;
  const logR0 = f32(Math.log(f32(ratio[0])));
  const logR1 = f32(Math.log(f32(ratio[1])));
  for (let t = 0; t < 10; t++) {
    const targetArea = area * uniformF32(rng, scale[0], scale[1]);
    const aspect = f32(Math.exp(uniformF32(rng, logR0, logR1)));
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = randint(rng, 0, height - h + 1);
      const left = randint(rng, 0, width - w + 1);
      return { top, left, height: h, width: w };
    }
  }
  const inRatio = width / height;
  const rMin = Math.min(ratio[0], ratio[1]);
  const rMax = Math.max(ratio[0], ratio[1]);
  let w = width;
  let h = height;
  if (inRatio < rMin) h = roundHalfEven(w / rMin);
  else if (inRatio > rMax) {
    h = height;
    w = roundHalfEven(h * rMax);
  }
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** torchvision Resize(shorter side) output size: [width, height]. */
export function shorterSideSize(width: number, height: number, size: number): [number, number] {
  if (width <= height) return [size, Math.trunc((size * height) / width)];
  return [Math.trunc((size * width) / height), size];
}

/** torchvision center_crop box (no padding case). */
export function centerCropBox(width: number, height: number, cw: number, ch: number): CropBox {
  return { top: roundHalfEven((height - ch) / 2), left: roundHalfEven((width - cw) / 2), height: ch, width: cw };
}

export interface JitterParams {
  order: number[];
  brightness: number | null;
  contrast: number | null;
  saturation: number | null;
  hue: number | null;
}

/** ColorJitter.get_params: a random order, then the four factors. */
export function jitterParams(j: JitterSpec, rng: UniformSource): JitterParams {
  const order = [0, 1, 2, 3];
  for (let i = 3; i > 0; i--) {
    const k = Math.floor(rng.uniform() * (i + 1));
    [order[i], order[k]] = [order[k]!, order[i]!];
  }
  const factor = (v: number, center: number, lo: number): number | null =>
    v > 0 ? Math.max(lo, center - v) + rng.uniform() * (center + v - Math.max(lo, center - v)) : null;
  const brightness = factor(j.brightness, 1, 0);
  const contrast = factor(j.contrast, 1, 0);
  const saturation = factor(j.saturation, 1, 0);
  const hue = j.hue > 0 ? -j.hue + rng.uniform() * 2 * j.hue : null;
  return { order, brightness, contrast, saturation, hue };
}

// ---------------------------------------------------------------------------------------------
// Pixel ops on planar float images (c planes of n pixels, values in [0,1])

function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

export function adjustBrightness(img: Float32Array, f: number): void {
  for (let i = 0; i < img.length; i++) img[i] = clamp01(f * img[i]!);
}

function gray(img: Float32Array, n: number, p: number): number {
  return f32(0.2989 * img[p]! + 0.587 * img[n + p]! + 0.114 * img[2 * n + p]!);
}

export function adjustContrast(img: Float32Array, c: number, n: number, f: number): void {
  let sum = 0;
  if (c === 3) for (let p = 0; p < n; p++) sum += gray(img, n, p);
  else for (let p = 0; p < n; p++) sum += img[p]!;
  const mean = f32(sum / n);
  const m = (1 - f) * mean;
  for (let i = 0; i < c * n; i++) img[i] = clamp01(f * img[i]! + m);
}

export function adjustSaturation(img: Float32Array, c: number, n: number, f: number): void {
  if (c !== 3) return;
  for (let p = 0; p < n; p++) {
    const g = (1 - f) * gray(img, n, p);
    img[p] = clamp01(f * img[p]! + g);
    img[n + p] = clamp01(f * img[n + p]! + g);
    img[2 * n + p] = clamp01(f * img[2 * n + p]! + g);
  }
}

export function adjustHue(img: Float32Array, c: number, n: number, f: number): void {
  if (c !== 3) return;
  for (let p = 0; p < n; p++) {
    const r = img[p]!;
    const g = img[n + p]!;
    const b = img[2 * n + p]!;
    let maxc = r > g ? r : g;
    if (b > maxc) maxc = b;
    let minc = r < g ? r : g;
    if (b < minc) minc = b;
    if (maxc === minc) continue; // grey pixel: hue is irrelevant, torchvision returns it unchanged
    const cr = maxc - minc;
    const s = cr / maxc;
    let h = maxc === r ? (g - b) / cr : maxc === g ? 2 + (b - r) / cr : 4 + (r - g) / cr;
    h = (h / 6 + 1) % 1;
    h = (((h + f) % 1) + 1) % 1;
    const v = maxc;
    const h6 = h * 6;
    const i = Math.floor(h6);
    const fr = h6 - i;
    const pp = clamp01(v * (1 - s));
    const q = clamp01(v * (1 - s * fr));
    const t = clamp01(v * (1 - s * (1 - fr)));
    let R: number, G: number, B: number;
    switch (i % 6) {
      case 0: R = v; G = t; B = pp; break;
      case 1: R = q; G = v; B = pp; break;
      case 2: R = pp; G = v; B = t; break;
      case 3: R = pp; G = q; B = v; break;
      case 4: R = t; G = pp; B = v; break;
      default: R = v; G = pp; B = q; break;
    }
    img[p] = R;
    img[n + p] = G;
    img[2 * n + p] = B;
  }
}

export function toGrayscale(img: Float32Array, c: number, n: number): void {
  if (c !== 3) return;
  for (let p = 0; p < n; p++) {
    const g = gray(img, n, p);
    img[p] = g;
    img[n + p] = g;
    img[2 * n + p] = g;
  }
}

export const SOLARIZE_THRESHOLD = f32(128 / 255);

/** PIL ImageOps.solarize default: invert values >= 128/255. */
export function solarize(img: Float32Array, threshold = SOLARIZE_THRESHOLD): void {
  for (let i = 0; i < img.length; i++) if (img[i]! >= threshold) img[i] = 1 - img[i]!;
}

function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

export function blurRadius(sigma: number): number {
  return Math.max(1, Math.ceil(3 * sigma));
}

let blurTmp = new Float32Array(0);
let blurRow = new Float32Array(0);

/** torchvision gaussian_blur with kernel size 2*radius+1 and reflect padding, separably. */
export function gaussianBlur(img: Float32Array, c: number, w: number, h: number, sigma: number, radius = blurRadius(sigma)): void {
  const ks = 2 * radius + 1;
  const k = new Float64Array(ks);
  let sum = 0;
  for (let i = 0; i < ks; i++) {
    const x = (i - radius) / sigma;
    k[i] = Math.exp(-0.5 * x * x);
    sum += k[i]!;
  }
  for (let i = 0; i < ks; i++) k[i] = f32(k[i]! / sum);
  const n = w * h;
  const padW = w + 2 * radius;
  if (blurTmp.length < n) blurTmp = new Float32Array(n);
  if (blurRow.length < padW) blurRow = new Float32Array(padW);
  const tmp = blurTmp;
  const row = blurRow;
  const xi = new Int32Array(padW);
  for (let i = 0; i < padW; i++) xi[i] = reflect(i - radius, w);
  const yi = new Int32Array(h + 2 * radius);
  for (let i = 0; i < h + 2 * radius; i++) yi[i] = reflect(i - radius, h) * w;
  for (let cc = 0; cc < c; cc++) {
    const base = cc * n;
    // Horizontal: reflect-pad the row, then a direct convolution.
    for (let y = 0; y < h; y++) {
      const r0 = base + y * w;
      for (let i = 0; i < padW; i++) row[i] = img[r0 + xi[i]!]!;
      const t0 = y * w;
      for (let x = 0; x < w; x++) {
        // symmetric kernel: pair the taps at equal distance from the centre
        let a = k[radius]! * row[x + radius]!;
        for (let t = 0; t < radius; t++) a += k[t]! * (row[x + t]! + row[x + ks - 1 - t]!);
        tmp[t0 + x] = a;
      }
    }
    // Vertical: accumulate whole rows (contiguous inner loop) straight into the image.
    for (let y = 0; y < h; y++) {
      const d = base + y * w;
      const sc = yi[y + radius]!;
      const kc = k[radius]!;
      for (let x = 0; x < w; x++) img[d + x] = kc * tmp[sc + x]!;
      for (let t = 0; t < radius; t++) {
        const s0 = yi[y + t]!;
        const s1 = yi[y + ks - 1 - t]!;
        const kt = k[t]!;
        for (let x = 0; x < w; x++) img[d + x] += kt * (tmp[s0 + x]! + tmp[s1 + x]!);
      }
    }
  }
}

/** Apply ColorJitter with fixed parameters. */
export function applyJitter(img: Float32Array, c: number, n: number, jp: JitterParams): void {
  for (const op of jp.order) {
    if (op === 0 && jp.brightness !== null) adjustBrightness(img, jp.brightness);
    else if (op === 1 && jp.contrast !== null) adjustContrast(img, c, n, jp.contrast);
    else if (op === 2 && jp.saturation !== null) adjustSaturation(img, c, n, jp.saturation);
    else if (op === 3 && jp.hue !== null) adjustHue(img, c, n, jp.hue);
  }
}

// ---------------------------------------------------------------------------------------------
// Whole views

/** 3-channel HWC uint8 -> 1-channel, PIL's 'L' conversion. */
export function toLuminance(s: Sample): Sample {
  if (s.channels === 1) return s;
  const n = s.width * s.height;
  const px = new Uint8Array(n);
  const src = s.pixels;
  for (let p = 0; p < n; p++) {
    px[p] = (src[3 * p]! * 19595 + src[3 * p + 1]! * 38470 + src[3 * p + 2]! * 7471 + 0x8000) >>> 16;
  }
  return { ...s, pixels: px, channels: 1 };
}

const U8_TO_FLOAT = Float32Array.from({ length: 256 }, (_, k) => k / 255);

/** Reusable buffers (one per thread). */
export class Workspace {
  u8 = new Uint8Array(0);
  u8b = new Uint8Array(0);
  f = new Float32Array(0);
  ensure(nU8: number, nF: number): void {
    if (this.u8.length < nU8) this.u8 = new Uint8Array(nU8);
    if (this.f.length < nF) this.f = new Float32Array(nF);
  }
}

/** What one view did, for tests and debugging. */
export interface ViewTrace {
  box: CropBox;
  flip: boolean;
  jitter: JitterParams | null;
  grayscale: boolean;
  sigma: number | null;
  solarize: boolean;
}

/** Crop + resize (random resized or centre) to an HWC uint8 image of spec.size. */
function cropResize(s: Sample, spec: ViewSpec, rng: UniformSource, ws: Workspace): { img: Uint8Array; box: CropBox } {
  const size = spec.size;
  const c = s.channels;
  ws.ensure(size * size * c, 0);
  const out = ws.u8.subarray(0, size * size * c);
  if (spec.crop.kind === 'random-resized') {
    const box = rrcParams(s.width, s.height, spec.crop.scale, spec.crop.ratio, rng);
    return { img: resizedCrop(s.pixels, s.width, s.height, c, box, size, size, spec.interpolation, out), box };
  }
  const [rw, rh] = shorterSideSize(s.width, s.height, spec.crop.resize);
  let src = s.pixels;
  if (rw !== s.width || rh !== s.height) {
    if (ws.u8b.length < rw * rh * c) ws.u8b = new Uint8Array(rw * rh * c);
    const full = { top: 0, left: 0, width: s.width, height: s.height };
    src = resizedCrop(s.pixels, s.width, s.height, c, full, rw, rh, spec.interpolation, ws.u8b.subarray(0, rw * rh * c));
  }
  if (size > rw || size > rh) throw new Error(`centre crop ${size} larger than the resized image ${rw}x${rh}`);
  const box = centerCropBox(rw, rh, size, size);
  return { img: resizedCrop(src, rw, rh, c, box, size, size, spec.interpolation, out), box };
}

/**
 * Apply one view to a decoded image; writes C x size x size floats, normalised, at out[offset].
 * `outChannels` is the model's channel count (1 <-> 3 conversion as documented above).
 */
export function applyView(
  sample: Sample,
  spec: ViewSpec,
  rng: UniformSource,
  out: Float32Array,
  offset: number,
  outChannels: number,
  mean: readonly number[],
  std: readonly number[],
  ws: Workspace = new Workspace(),
): ViewTrace {
  const s = outChannels === 1 && sample.channels === 3 ? toLuminance(sample) : sample;
  const c = s.channels;
  const size = spec.size;
  const n = size * size;
  const { img: u8, box } = cropResize(s, spec, rng, ws);
  const flip = spec.flipP > 0 && rng.uniform() < spec.flipP;
  ws.ensure(0, c * n);
  const f = ws.f.subarray(0, c * n);
  // HWC uint8 -> planar float (exactly k/255 in float32, as ToTensor), flipping on the way.
  for (let y = 0; y < size; y++) {
    const row = y * size;
    for (let x = 0; x < size; x++) {
      const si = (row + (flip ? size - 1 - x : x)) * c;
      const di = row + x;
      if (c === 3) {
        f[di] = U8_TO_FLOAT[u8[si]!]!;
        f[n + di] = U8_TO_FLOAT[u8[si + 1]!]!;
        f[2 * n + di] = U8_TO_FLOAT[u8[si + 2]!]!;
      } else f[di] = U8_TO_FLOAT[u8[si]!]!;
    }
  }
  let jp: JitterParams | null = null;
  if (spec.jitter && rng.uniform() < spec.jitter.p) {
    jp = jitterParams(spec.jitter, rng);
    applyJitter(f, c, n, jp);
  }
  const grayscale = spec.grayscaleP > 0 && rng.uniform() < spec.grayscaleP;
  if (grayscale) toGrayscale(f, c, n);
  let sigma: number | null = null;
  if (spec.blur && rng.uniform() < spec.blur.p) {
    const [lo, hi] = spec.blur.sigma;
    sigma = lo + rng.uniform() * (hi - lo);
    gaussianBlur(f, c, size, size, sigma);
  }
  const sol = spec.solarizeP > 0 && rng.uniform() < spec.solarizeP;
  if (sol) solarize(f);
  // Normalise into the batch (replicating a single plane if the model wants 3 channels).
  for (let oc = 0; oc < outChannels; oc++) {
    const src = (c === 1 ? 0 : oc) * n;
    const m = mean[oc]!;
    const inv = 1 / std[oc]!;
    const d = offset + oc * n;
    for (let p = 0; p < n; p++) out[d + p] = (f[src + p]! - m) * inv;
  }
  return { box, flip, jitter: jp, grayscale, sigma, solarize: sol };
}
