// Augmentations against torchvision (0.14, /usr/bin/python3): crop-box sampling, Pillow resizing,
// flips, colour ops, blur, solarisation and whole views with the same parameters.
// Tolerances: Pillow resizing is reproduced exactly up to fixed-point ties (<= 1 grey level);
// float ops agree to ~1e-5 (float32 vs double rounding).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Sample } from '../src/data/dataset.js';
import { resizedCrop } from '../src/data/resize.js';
import { Rng } from '../src/data/rng.js';
import {
  type CropBox,
  type Interp,
  type JitterParams,
  type ViewSpec,
  adjustBrightness,
  adjustContrast,
  adjustHue,
  adjustSaturation,
  applyJitter,
  applyView,
  blurRadius,
  evalTransform,
  gaussianBlur,
  ijepaTransform,
  rrcParams,
  SOLARIZE_THRESHOLD,
  solarize,
  toGrayscale,
  vicregViews,
  viewsForMethod,
} from '../src/data/transforms.js';

const PY = '/usr/bin/python3';
const SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/torchvision_ref.py');

/** A deterministic test image: gradients, a hard edge, saturated corners and some noise. */
function makeImage(w: number, h: number, c: number, seed: number): Sample {
  const rng = Rng.from(seed);
  const px = new Uint8Array(w * h * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++) {
        let v = ((x * (97 + 40 * k)) / w + (y * (131 - 30 * k)) / h) % 256;
        if (x > w / 2 && y < h / 3) v = k === 0 ? 255 : 10; // a saturated block with a hard edge
        if (x < 3 && y < 3) v = 0;
        v += rng.int(41) - 20;
        px[(y * w + x) * c + k] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return { pixels: px, width: w, height: h, channels: c, label: -1 };
}

/** Replays fixed uniforms (as the Python side does) and counts what was used. */
class Replay {
  used = 0;
  constructor(private readonly u: number[]) {}
  uniform(): number {
    return this.u[this.used++]!;
  }
}

function planar(s: Sample): Float32Array {
  const n = s.width * s.height;
  const f = new Float32Array(n * s.channels);
  for (let p = 0; p < n; p++) for (let k = 0; k < s.channels; k++) f[k * n + p] = s.pixels[p * s.channels + k]! / 255;
  return f;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function meanDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}

const RGB = makeImage(37, 29, 3, 1);
const GRAY = makeImage(23, 31, 1, 2);
const BIG = makeImage(120, 90, 3, 3);
const images: Record<string, Sample> = { rgb: RGB, gray: GRAY, big: BIG };

type Case = Record<string, unknown> & { op: string };
const cases: Case[] = [];
let results: Record<string, unknown>[] = [];
let dir = '';

function add(c: Case): number {
  cases.push(c);
  return cases.length - 1;
}

// --- crop boxes -------------------------------------------------------------------------------
const rrcCases: { idx: number; w: number; h: number; scale: [number, number]; ratio: [number, number]; u: number[] }[] = [];
{
  const rng = Rng.from(77);
  const scales: [number, number][] = [[0.08, 1], [0.3, 1], [0.9, 1], [0.5, 0.5]];
  const ratios: [number, number][] = [[3 / 4, 4 / 3], [0.5, 2], [1, 1]];
  for (let t = 0; t < 400; t++) {
    let w = 1 + rng.int(300);
    let h = 1 + rng.int(300);
    if (t % 5 === 0) [w, h] = t % 10 === 0 ? [200 + rng.int(100), 5 + rng.int(10)] : [5 + rng.int(10), 200 + rng.int(100)];
    const scale = scales[rng.int(scales.length)]!;
    const ratio = ratios[rng.int(ratios.length)]!;
    const u = Array.from({ length: 40 }, () => rng.uniform());
    rrcCases.push({ idx: add({ op: 'rrc_params', width: w, height: h, scale, ratio, uniforms: u }), w, h, scale, ratio, u });
  }
}

// --- resized crops ----------------------------------------------------------------------------
const cropCases: { idx: number; img: string; box: CropBox; size: number; interp: Interp }[] = [];
for (const interp of ['bilinear', 'bicubic'] as Interp[]) {
  const boxes: [string, CropBox, number][] = [
    ['rgb', { top: 0, left: 0, height: 29, width: 37 }, 16], // downscale, antialiased
    ['rgb', { top: 3, left: 5, height: 11, width: 17 }, 24], // upscale, different ratios
    ['rgb', { top: 7, left: 2, height: 20, width: 9 }, 12], // mixed
    ['rgb', { top: 0, left: 0, height: 24, width: 24 }, 24], // identity
    ['rgb', { top: 10, left: 30, height: 1, width: 7 }, 8], // one row
    ['gray', { top: 2, left: 1, height: 25, width: 19 }, 14],
    ['gray', { top: 5, left: 5, height: 6, width: 6 }, 20],
    ['big', { top: 4, left: 9, height: 81, width: 100 }, 32], // strong downscale
  ];
  for (const [img, box, size] of boxes) {
    cropCases.push({ idx: add({ op: 'resized_crop', image: img, box: [box.top, box.left, box.height, box.width], size, interp }), img, box, size, interp });
  }
}

const flipIdx = add({ op: 'hflip', image: 'rgb' });
const centerCases = [
  { img: 'big', resize: 40, size: 32, interp: 'bilinear' as Interp },
  { img: 'rgb', resize: 32, size: 32, interp: 'bicubic' as Interp },
  { img: 'gray', resize: 23, size: 20, interp: 'bilinear' as Interp },
].map((c) => ({ ...c, idx: add({ op: 'center', image: c.img, resize: c.resize, size: c.size, interp: c.interp }) }));

// --- float colour ops -------------------------------------------------------------------------
type Op = [string, ...unknown[]];
const floatCases: { idx: number; img: string; ops: Op[] }[] = [];
for (const img of ['rgb', 'gray']) {
  const opLists: Op[][] = [
    [['brightness', 1.37]],
    [['brightness', 0.61]],
    [['contrast', 1.39]],
    [['contrast', 0.62]],
    [['saturation', 1.18]],
    [['saturation', 0.0]],
    [['hue', 0.093]],
    [['hue', -0.1]],
    [['hue', 0.5]],
    [['grayscale']],
    [['solarize', SOLARIZE_THRESHOLD]],
    [['blur', 2 * blurRadius(0.7) + 1, 0.7]],
    [['blur', 2 * blurRadius(2.0) + 1, 2.0]],
    [['blur', 2 * blurRadius(0.1) + 1, 0.1]],
  ];
  for (const ops of opLists) floatCases.push({ idx: add({ op: 'float_ops', image: img, ops }), img, ops });
}

function jsOps(s: Sample, ops: Op[]): Float32Array {
  const f = planar(s);
  const c = s.channels;
  const n = s.width * s.height;
  for (const [kind, a, b] of ops) {
    if (kind === 'brightness') adjustBrightness(f, a as number);
    else if (kind === 'contrast') adjustContrast(f, c, n, a as number);
    else if (kind === 'saturation') adjustSaturation(f, c, n, a as number);
    else if (kind === 'hue') adjustHue(f, c, n, a as number);
    else if (kind === 'grayscale') toGrayscale(f, c, n);
    else if (kind === 'solarize') solarize(f, a as number);
    else if (kind === 'blur') gaussianBlur(f, c, s.width, s.height, b as number, ((a as number) - 1) / 2);
    else throw new Error(kind);
  }
  return f;
}

function jitterOps(jp: JitterParams): Op[] {
  const names = ['brightness', 'contrast', 'saturation', 'hue'] as const;
  const ops: Op[] = [];
  for (const k of jp.order) {
    const v = jp[names[k]!];
    if (v !== null) ops.push([names[k]!, v]);
  }
  return ops;
}

// --- whole views: our sampled parameters replayed through torchvision ---------------------------
const MEAN = [0.4914, 0.4822, 0.4465];
const STD = [0.247, 0.2435, 0.2616];
const viewCases: { idx: number; out: Float32Array; spec: ViewSpec }[] = [];
{
  const [v1, v2] = vicregViews({ size: 24, blurSigmaScale: 1 });
  const ij = ijepaTransform({ size: 24, flip: true });
  const specs = [v1, v2, ij, vicregViews({ size: 16, interpolation: 'bilinear', jitter: { p: 1 } })[1]];
  for (let t = 0; t < 24; t++) {
    const spec = specs[t % specs.length]!;
    const out = new Float32Array(3 * spec.size * spec.size);
    const tr = applyView(RGB, spec, Rng.from(1000 + t), out, 0, 3, MEAN, STD);
    const ops: Op[] = tr.jitter ? jitterOps(tr.jitter) : [];
    if (tr.grayscale) ops.push(['grayscale']);
    if (tr.sigma !== null) ops.push(['blur', 2 * blurRadius(tr.sigma) + 1, tr.sigma]);
    if (tr.solarize) ops.push(['solarize', SOLARIZE_THRESHOLD]);
    ops.push(['normalize', MEAN, STD]);
    const b = tr.box;
    viewCases.push({
      idx: add({ op: 'view', image: 'rgb', box: [b.top, b.left, b.height, b.width], size: spec.size, interp: spec.interpolation, flip: tr.flip, ops }),
      out,
      spec,
    });
  }
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'cjepa-tv-'));
  const imgs: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(images)) {
    const p = join(dir, `${k}.raw`);
    writeFileSync(p, s.pixels);
    imgs[k] = { path: p, width: s.width, height: s.height, channels: s.channels };
  }
  writeFileSync(join(dir, 'cases.json'), JSON.stringify({ images: imgs, cases }));
  const r = spawnSync(PY, [SCRIPT, join(dir, 'cases.json'), join(dir, 'out.json')], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `torchvision reference failed (${PY} needs python3-torch and python3-torchvision):\n${r.stderr}`);
  results = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8'));
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('RandomResizedCrop boxes equal torchvision get_params (incl. the fallback)', () => {
  let fallbacks = 0;
  for (const c of rrcCases) {
    const rep = new Replay(c.u);
    const box = rrcParams(c.w, c.h, c.scale, c.ratio, rep);
    const ref = results[c.idx] as { box: number[]; consumed: number };
    assert.deepEqual([box.top, box.left, box.height, box.width], ref.box, `${c.w}x${c.h} scale ${c.scale} ratio ${c.ratio}`);
    assert.equal(rep.used, ref.consumed);
    if (ref.consumed === 20) fallbacks++;
  }
  assert.ok(fallbacks >= 20, `only ${fallbacks} cases reached the fallback`);
});

test('crop + resize matches Pillow via torchvision F.resized_crop (bilinear, bicubic, antialiased)', () => {
  for (const c of cropCases) {
    const s = images[c.img]!;
    const ours = resizedCrop(s.pixels, s.width, s.height, s.channels, c.box, c.size, c.size, c.interp);
    const ref = (results[c.idx] as { pixels: number[] }).pixels;
    const d = maxDiff(ours, ref);
    assert.ok(d <= 1, `${c.img} ${JSON.stringify(c.box)} -> ${c.size} ${c.interp}: max diff ${d}`);
    let exact = 0;
    for (let i = 0; i < ref.length; i++) if (ours[i] === ref[i]) exact++;
    assert.ok(exact / ref.length >= 0.99, `${c.interp}: only ${exact}/${ref.length} pixels exact`);
  }
});

test('horizontal flip and evaluation resize + centre crop match torchvision', () => {
  const out = new Float32Array(3 * 37 * 29);
  const ref = (results[flipIdx] as { pixels: number[] }).pixels;
  // Flip via a full-image "view" with flip forced.
  const spec: ViewSpec = { ...ijepaTransform({ size: 29 }), crop: { kind: 'center', resize: 29 }, flipP: 1 };
  const sq = resizedCrop(RGB.pixels, 37, 29, 3, { top: 0, left: 0, width: 29, height: 29 }, 29, 29, 'bilinear');
  applyView({ ...RGB, pixels: sq, width: 29 }, spec, new Replay([0]), out, 0, 3, [0, 0, 0], [1, 1, 1]);
  for (let y = 0; y < 29; y++) {
    for (let x = 0; x < 29; x++) {
      for (let k = 0; k < 3; k++) {
        assert.equal(Math.round(out[k * 29 * 29 + y * 29 + x]! * 255), ref[(y * 37 + (37 - 29) + x) * 3 + k], 'flip');
      }
    }
  }
  for (const c of centerCases) {
    const s = images[c.img]!;
    const spec = evalTransform({ size: c.size, resize: c.resize, interpolation: c.interp });
    const o = new Float32Array(s.channels * c.size * c.size);
    applyView(s, spec, new Replay([]), o, 0, s.channels, Array(s.channels).fill(0), Array(s.channels).fill(1));
    const r = (results[c.idx] as { pixels: number[] }).pixels;
    const n = c.size * c.size;
    const hwc = Array.from({ length: o.length }, (_, i) => Math.round(o[(i % s.channels) * n + Math.floor(i / s.channels)]! * 255));
    assert.ok(maxDiff(hwc, r) <= 1, `centre ${c.img}: ${maxDiff(hwc, r)}`);
  }
});

test('colour jitter ops, grayscale, solarize and blur match torchvision float definitions', () => {
  for (const c of floatCases) {
    const s = images[c.img]!;
    const ours = jsOps(s, c.ops);
    const ref = (results[c.idx] as { pixels: number[] }).pixels;
    const d = maxDiff(ours, ref);
    assert.ok(d < 2e-5, `${c.img} ${JSON.stringify(c.ops)}: max diff ${d}`);
  }
  // Grayscale images: saturation, hue and grayscale are no-ops.
  const g = planar(GRAY);
  const g2 = g.slice();
  adjustSaturation(g2, 1, g.length, 0.3);
  adjustHue(g2, 1, g.length, 0.2);
  toGrayscale(g2, 1, g.length);
  assert.deepEqual(g2, g);
});

test('whole views equal torchvision applied with the same sampled parameters', () => {
  let sawJitter = 0;
  let sawBlur = 0;
  for (const c of viewCases) {
    const ref = (results[c.idx] as { pixels: number[] }).pixels;
    // The resize is Pillow-exact on these inputs, so only float32 rounding remains (a one-level
    // resize tie would show up as ~0.016 after normalisation).
    const d = maxDiff(c.out, ref);
    assert.ok(d < 1e-4, `${c.spec.name}: max diff ${d}`);
    assert.ok(meanDiff(c.out, ref) < 1e-5, `${c.spec.name}: mean diff ${meanDiff(c.out, ref)}`);
    if (c.spec.jitter) sawJitter++;
    if (c.spec.blur) sawBlur++;
  }
  assert.ok(sawJitter > 0 && sawBlur > 0);
});

test('view parameters: official VICReg values, probabilities, and determinism', () => {
  const [a, b] = vicregViews({ size: 32 });
  assert.deepEqual(a.crop, { kind: 'random-resized', scale: [0.08, 1], ratio: [3 / 4, 4 / 3] });
  assert.equal(a.interpolation, 'bicubic');
  assert.deepEqual(a.jitter, { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 });
  assert.equal(a.blur!.p, 1.0);
  assert.equal(b.blur!.p, 0.1);
  assert.ok(Math.abs(a.blur!.sigma[0] - (0.1 * 32) / 224) < 1e-12 && Math.abs(a.blur!.sigma[1] - (2.0 * 32) / 224) < 1e-12);
  assert.equal(a.solarizeP, 0);
  assert.equal(b.solarizeP, 0.2);
  const ij = ijepaTransform({ size: 32 });
  assert.deepEqual(ij.crop, { kind: 'random-resized', scale: [0.3, 1], ratio: [3 / 4, 4 / 3] });
  assert.equal(ij.flipP, 0);
  assert.deepEqual(viewsForMethod('cjepa', 32), [ij]);
  assert.deepEqual(viewsForMethod('vicreg', 32), vicregViews({ size: 32 }));
  assert.deepEqual(viewsForMethod('ijepa', 32), [ij]);
  assert.deepEqual(viewsForMethod('eval', 224)[0]!.crop, { kind: 'center', resize: 256 });

  const N = 3000;
  const cnt = { flip: 0, jitter: 0, gray: 0, blur: 0, sol: 0 };
  const out = new Float32Array(3 * 32 * 32);
  for (let i = 0; i < N; i++) {
    const t = applyView(RGB, b, Rng.from(5, i), out, 0, 3, MEAN, STD);
    cnt.flip += +t.flip;
    cnt.jitter += +(t.jitter !== null);
    cnt.gray += +t.grayscale;
    cnt.blur += +(t.sigma !== null);
    cnt.sol += +t.solarize;
    if (t.sigma !== null) assert.ok(t.sigma >= b.blur!.sigma[0] && t.sigma <= b.blur!.sigma[1]);
  }
  const near = (k: number, p: number): void => assert.ok(Math.abs(k / N - p) < 0.04, `${k}/${N} vs ${p}`);
  near(cnt.flip, 0.5);
  near(cnt.jitter, 0.8);
  near(cnt.gray, 0.2);
  near(cnt.blur, 0.1);
  near(cnt.sol, 0.2);

  const o1 = new Float32Array(3 * 32 * 32);
  const o2 = new Float32Array(3 * 32 * 32);
  applyView(RGB, a, Rng.from(9, 1), o1, 0, 3, MEAN, STD);
  applyView(RGB, a, Rng.from(9, 1), o2, 0, 3, MEAN, STD);
  assert.deepEqual(o1, o2);
  applyView(RGB, a, Rng.from(9, 2), o2, 0, 3, MEAN, STD);
  assert.notDeepEqual(o1, o2);
});

test('grayscale images feed 3-channel models and colour images 1-channel models', () => {
  const [v] = vicregViews({ size: 16, jitter: { p: 1 } });
  const out = new Float32Array(3 * 16 * 16);
  for (let i = 0; i < 20; i++) {
    applyView(GRAY, v, Rng.from(3, i), out, 0, 3, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]);
    const n = 256;
    for (let p = 0; p < n; p++) {
      assert.equal(out[p], out[n + p]);
      assert.equal(out[p], out[2 * n + p]);
    }
  }
  const one = new Float32Array(16 * 16);
  const tr = applyView(RGB, evalTransform({ size: 16, resize: 16 }), new Replay([]), one, 0, 1, [0], [1]);
  assert.equal(tr.box.width, 16);
  // Luminance of the resized image: check one pixel against PIL's 'L' formula on the source.
  const small = resizedCrop(
    Uint8Array.from({ length: 37 * 29 }, (_, p) => (RGB.pixels[3 * p]! * 19595 + RGB.pixels[3 * p + 1]! * 38470 + RGB.pixels[3 * p + 2]! * 7471 + 0x8000) >>> 16),
    37, 29, 1, { top: 0, left: 0, width: 37, height: 29 }, 20, 16, 'bilinear',
  );
  assert.equal(Math.round(one[0]! * 255), small[tr.box.left]);
});

test('ColorJitter order and factor ranges', () => {
  const [v] = vicregViews({ size: 8, jitter: { p: 1 } });
  const seen = new Set<string>();
  const out = new Float32Array(3 * 64);
  for (let i = 0; i < 400; i++) {
    const t = applyView(RGB, v, Rng.from(11, i), out, 0, 3, MEAN, STD);
    const j = t.jitter!;
    seen.add(j.order.join(''));
    assert.ok(j.brightness! >= 0.6 && j.brightness! <= 1.4);
    assert.ok(j.contrast! >= 0.6 && j.contrast! <= 1.4);
    assert.ok(j.saturation! >= 0.8 && j.saturation! <= 1.2);
    assert.ok(j.hue! >= -0.1 && j.hue! <= 0.1);
  }
  assert.equal(seen.size, 24, 'all 24 orders of the four ops occur');
  // applyJitter with an identity parameter set changes nothing.
  const f = planar(RGB);
  const g = f.slice();
  applyJitter(g, 3, 37 * 29, { order: [0, 1, 2, 3], brightness: 1, contrast: 1, saturation: 1, hue: 0 });
  assert.ok(maxDiff(f, g) < 1e-6);
});
