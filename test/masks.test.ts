import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Rng } from '../src/method/rng.js';
import {
  MultiBlockMaskSampler,
  blockSizeFromUniform,
  defaultMaskConfig,
  roundHalfEven,
  smallGridMaskConfig,
  truncateMask,
  type MaskBatch,
  type MultiBlockMaskConfig,
} from '../src/method/masks.js';

/** Runs plain Python 3 (no torch) with a JSON input on stdin and parses the JSON it prints. */
function py(code: string, input: unknown = null): unknown {
  const r = spawnSync('/usr/bin/python3', ['-c', code], {
    input: JSON.stringify(input),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.equal(r.status, 0, `python failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

// Independent plain-Python reimplementation of the official MaskCollator._sample_block_size
// (one uniform `_rand` drives both scale and aspect), plus an independent-draws variant.
const PY_BLOCK_SIZE = `
import json, math, sys
def block_size(H, W, scale, ar, u, v=None):
    if v is None: v = u
    s = scale[0] + u * (scale[1] - scale[0])
    max_keep = int(H * W * s)
    a = ar[0] + v * (ar[1] - ar[0])
    h = int(round(math.sqrt(max_keep * a)))
    w = int(round(math.sqrt(max_keep / a)))
    while h >= H: h -= 1
    while w >= W: w -= 1
    return h, w
`;

function rowCol(idx: number, W: number): [number, number] {
  return [Math.floor(idx / W), idx % W];
}

/** Structural checks every batch must pass. */
function checkBatch(b: MaskBatch, cfg: MultiBlockMaskConfig, batchSize: number, noOverlap: boolean): void {
  const [H, W] = cfg.gridSize;
  const N = H * W;
  const [th, tw] = b.targetBlockHW;
  const [ch, cw] = b.contextBlockHW;
  assert.ok(th >= 1 && th < H && tw >= 1 && tw < W, `target block ${th}x${tw}`);
  assert.ok(ch >= 1 && ch < H && cw >= 1 && cw < W, `context block ${ch}x${cw}`);
  assert.equal(b.context.length, batchSize);
  assert.equal(b.targets.length, cfg.nTargets);
  assert.equal(b.targetLength, th * tw, 'targets are never truncated: all full blocks');
  assert.ok(b.contextLength >= 1 && b.contextLength <= ch * cw);
  const sortedUniqueInRange = (m: Int32Array): void => {
    for (let i = 0; i < m.length; i++) {
      assert.ok(m[i]! >= 0 && m[i]! < N, `index ${m[i]} out of range`);
      if (i > 0) assert.ok(m[i]! > m[i - 1]!, 'indices must be strictly increasing');
    }
  };
  for (let img = 0; img < batchSize; img++) {
    const ctx = b.context[img]!;
    assert.equal(ctx.length, b.contextLength);
    sortedUniqueInRange(ctx);
    // the context fits in one ch x cw block
    const rows = Array.from(ctx, (i) => rowCol(i, W)[0]);
    const cols = Array.from(ctx, (i) => rowCol(i, W)[1]);
    assert.ok(Math.max(...rows) - Math.min(...rows) < ch && Math.max(...cols) - Math.min(...cols) < cw);
    const taken = new Set<number>();
    for (let t = 0; t < cfg.nTargets; t++) {
      assert.equal(b.targets[t]!.length, batchSize);
      const m = b.targets[t]![img]!;
      assert.equal(m.length, b.targetLength);
      sortedUniqueInRange(m);
      // a full th x tw rectangle starting at its smallest index
      const [top, left] = rowCol(m[0]!, W);
      let k = 0;
      for (let i = top; i < top + th; i++) for (let j = left; j < left + tw; j++) assert.equal(m[k++], i * W + j);
      for (const i of m) taken.add(i);
    }
    if (noOverlap) for (const i of ctx) assert.ok(!taken.has(i), `context index ${i} is also a target index`);
  }
}

function batchesEqual(a: MaskBatch, b: MaskBatch): boolean {
  const eq = (x: Int32Array, y: Int32Array): boolean => x.length === y.length && x.every((v, i) => v === y[i]);
  return (
    a.contextLength === b.contextLength &&
    a.targetLength === b.targetLength &&
    a.targetBlockHW.join() === b.targetBlockHW.join() &&
    a.contextBlockHW.join() === b.contextBlockHW.join() &&
    a.context.every((c, i) => eq(c, b.context[i]!)) &&
    a.targets.every((t, k) => t.every((m, i) => eq(m, b.targets[k]![i]!)))
  );
}

function chiSquare(counts: number[]): number {
  const n = counts.reduce((s, c) => s + c, 0);
  const e = n / counts.length;
  return counts.reduce((s, c) => s + ((c - e) * (c - e)) / e, 0);
}

// ---------------------------------------------------------------- Rng

test('Rng: deterministic per seed, distinct across seeds, exact state checkpoint/restore', () => {
  const a = new Rng(123);
  const b = new Rng(123);
  const c = new Rng(124);
  const sa = Array.from({ length: 50 }, () => a.nextUint32());
  assert.deepEqual(sa, Array.from({ length: 50 }, () => b.nextUint32()));
  assert.notDeepEqual(sa, Array.from({ length: 50 }, () => c.nextUint32()));
  assert.notDeepEqual(new Rng(2 ** 40).state(), new Rng(0).state());
  assert.notDeepEqual(new Rng(-1).state(), new Rng(2 ** 32 - 1).state());

  const r = new Rng(7);
  for (let i = 0; i < 13; i++) r.nextFloat();
  const saved = r.state();
  const next = [r.nextFloat(), r.nextInt(0, 100), r.nextUint32()];
  const restored = Rng.fromState(saved);
  assert.deepEqual([restored.nextFloat(), restored.nextInt(0, 100), restored.nextUint32()], next);
  r.setState(saved);
  assert.deepEqual([r.nextFloat(), r.nextInt(0, 100), r.nextUint32()], next);
  assert.throws(() => r.setState([0, 0, 0, 0]), /all zero/);
  assert.throws(() => r.setState([1, 2, 3]), /4 words/);
});

test('Rng: xoshiro128** outputs match an independent Python implementation', () => {
  const code = `
import json, sys
s = json.load(sys.stdin)
M = 0xffffffff
rotl = lambda x, k: ((x << k) | (x >> (32 - k))) & M
out = []
for _ in range(64):
    out.append((rotl((s[1] * 5) & M, 7) * 9) & M)
    t = (s[1] << 9) & M
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 11)
print(json.dumps(out))
`;
  for (const state of [[1, 2, 3, 4], new Rng(2024).state()]) {
    const r = Rng.fromState(state);
    const expected = py(code, state) as number[];
    assert.deepEqual(Array.from({ length: 64 }, () => r.nextUint32()), expected);
  }
  assert.equal(Rng.fromState([1, 2, 3, 4]).nextUint32(), 11520); // reference first output
});

test('Rng: nextFloat in [0,1), nextInt uniform and in range, shuffle is a uniform permutation', () => {
  const r = new Rng(99);
  let sum = 0;
  for (let i = 0; i < 20000; i++) {
    const x = r.nextFloat();
    assert.ok(x >= 0 && x < 1);
    sum += x;
  }
  assert.ok(Math.abs(sum / 20000 - 0.5) < 0.01);
  const counts = new Array(7).fill(0) as number[];
  for (let i = 0; i < 70000; i++) {
    const v = r.nextInt(-3, 4);
    assert.ok(Number.isInteger(v) && v >= -3 && v < 4);
    counts[v + 3]!++;
  }
  assert.ok(chiSquare(counts) < 22.5, `chi2 ${chiSquare(counts)}`); // dof 6, p ~ 0.001
  assert.throws(() => r.nextInt(5, 5), RangeError);
  assert.throws(() => r.nextInt(0, 1.5), RangeError);
  const first = new Array(5).fill(0) as number[];
  for (let i = 0; i < 20000; i++) {
    const a = r.shuffle([0, 1, 2, 3, 4]);
    assert.deepEqual([...a].sort(), [0, 1, 2, 3, 4]);
    first[a[0]!]!++;
  }
  assert.ok(chiSquare(first) < 18.5, `chi2 ${chiSquare(first)}`); // dof 4, p ~ 0.001
  const ta = r.shuffle(Int32Array.from([5, 6, 7, 8]));
  assert.deepEqual(Array.from(ta).sort(), [5, 6, 7, 8]);
});

// ---------------------------------------------------------------- block size formula

test('roundHalfEven matches Python round()', () => {
  const xs = [0.5, 1.5, 2.5, 3.5, -0.5, -1.5, 2.4999999, 2.5000001, 7.49, 7.51, 0, 3];
  const expected = py('import json,sys; print(json.dumps([round(x) for x in json.load(sys.stdin)]))', xs) as number[];
  assert.deepEqual(xs.map(roundHalfEven), expected);
});

test('block sizes equal the official formula (Python) for many uniform draws and grids', () => {
  const us = [0, 1 - 2 ** -53, ...Array.from({ length: 2000 }, (_, i) => (i + 0.37) / 2000)];
  const cases: { grid: [number, number]; scale: [number, number]; ar: [number, number] }[] = [];
  for (const grid of [[14, 14], [8, 8], [7, 11], [16, 16], [2, 3]] as [number, number][]) {
    cases.push({ grid, scale: [0.15, 0.2], ar: [0.75, 1.5] }, { grid, scale: [0.85, 1.0], ar: [1, 1] });
  }
  const code = `${PY_BLOCK_SIZE}
inp = json.load(sys.stdin)
print(json.dumps([[block_size(c['grid'][0], c['grid'][1], c['scale'], c['ar'], u) for u in inp['us']] for c in inp['cases']]))
`;
  const expected = py(code, { us, cases }) as [number, number][][];
  let degenerate = 0;
  cases.forEach((c, k) => {
    const got = us.map((u) => blockSizeFromUniform(c.grid, c.scale, c.ar, u));
    // Only deliberate deviation: a 0 side (official: empty block, endless loop) is clamped to 1.
    const want = expected[k]!.map(([h, w]) => {
      if (h === 0 || w === 0) degenerate++;
      return [Math.max(h, 1), Math.max(w, 1)];
    });
    assert.deepEqual(got, want, `grid ${c.grid} scale ${c.scale}`);
  });
  assert.ok(degenerate > 0); // the 2x3 grid exercises the clamp
});

// ---------------------------------------------------------------- sampler

test('sampler: same seed gives the same masks, another seed differs, Rng state restores exactly', () => {
  for (const mode of ['faithful', 'unbiased'] as const) {
    const cfg = { ...defaultMaskConfig([14, 14]), mode };
    const a = new MultiBlockMaskSampler(cfg, 42);
    const b = new MultiBlockMaskSampler(cfg, 42);
    const c = new MultiBlockMaskSampler(cfg, 43);
    let differs = false;
    for (let i = 0; i < 20; i++) {
      const ba = a.sample(8);
      assert.ok(batchesEqual(ba, b.sample(8)), `${mode}: batch ${i} differs for equal seeds`);
      if (!batchesEqual(ba, c.sample(8))) differs = true;
    }
    assert.ok(differs, `${mode}: different seeds gave identical masks`);
    const saved = a.rng.state();
    const next = a.sample(8);
    const resumed = new MultiBlockMaskSampler(cfg, Rng.fromState(saved));
    assert.ok(batchesEqual(resumed.sample(8), next));
  }
});

test('sampler: 14x14 default config (224/16) invariants in both modes, no context/target overlap', () => {
  for (const mode of ['unbiased', 'faithful'] as const) {
    const cfg = { ...defaultMaskConfig([14, 14]), mode };
    const s = new MultiBlockMaskSampler(cfg, 5);
    for (let i = 0; i < 100; i++) {
      const b = s.sample(16);
      checkBatch(b, cfg, 16, true);
      assert.ok(b.contextLength >= 10);
      assert.deepEqual(b.contextBlockHW, [13, 13]); // 0.85-1.0 of 196 -> 13x13 after clipping
    }
    assert.equal(s.relaxedContexts, 0);
  }
  // allowOverlap: the context is the full block (no target removal, so no truncation either)
  const cfg = { ...defaultMaskConfig([14, 14]), allowOverlap: true };
  const s = new MultiBlockMaskSampler(cfg, 6);
  let overlapSeen = false;
  for (let i = 0; i < 20; i++) {
    const b = s.sample(8);
    checkBatch(b, cfg, 8, false);
    assert.equal(b.contextLength, b.contextBlockHW[0] * b.contextBlockHW[1]);
    const ctx = new Set(b.context[0]);
    if (b.targets.some((t) => t[0]!.some((i) => ctx.has(i)))) overlapSeen = true;
  }
  assert.ok(overlapSeen);
});

test('sampler: target block size distribution matches the official formula (Python integration)', () => {
  const n = 20000;
  for (const independent of [false, true]) {
    const cfg: MultiBlockMaskConfig = { ...defaultMaskConfig([14, 14]), independentSizeDraws: independent };
    // Python: exact distribution of (h, w) by a fine midpoint grid over the uniform draw(s).
    const code = `${PY_BLOCK_SIZE}
from collections import Counter
c = json.load(sys.stdin)
H, W = c['grid']
cnt = Counter()
if c['independent']:
    M = 600
    for i in range(M):
        for j in range(M):
            cnt[block_size(H, W, c['scale'], c['ar'], (i + .5) / M, (j + .5) / M)] += 1
    tot = M * M
else:
    M = 400000
    for i in range(M):
        cnt[block_size(H, W, c['scale'], c['ar'], (i + .5) / M)] += 1
    tot = M
probs = {f'{h}x{w}': k / tot for (h, w), k in cnt.items()}
areas = [(h * w, k / tot) for (h, w), k in cnt.items()]
mean = sum(a * p for a, p in areas)
var = sum((a - mean) ** 2 * p for a, p in areas)
print(json.dumps({'probs': probs, 'mean': mean, 'var': var}))
`;
    const ref = py(code, { grid: cfg.gridSize, scale: cfg.targetScale, ar: cfg.targetAspect, independent }) as {
      probs: Record<string, number>;
      mean: number;
      var: number;
    };
    // Loose analytic envelope from the ranges alone: k = floor(196 s) in [29, 39]; rounding h and w
    // each by at most 0.5 keeps the area within (sqrt(k r) +- .5)(sqrt(k / r) +- .5).
    const kMin = Math.floor(196 * 0.15);
    const kMax = Math.floor(196 * 0.2);
    const lo = kMin - Math.sqrt(kMin) * (Math.sqrt(1.5) + 1 / Math.sqrt(0.75)) * 0.5 + 0.25;
    const hi = kMax + Math.sqrt(kMax) * (Math.sqrt(1.5) + 1 / Math.sqrt(0.75)) * 0.5 + 0.25;

    const s = new MultiBlockMaskSampler(cfg, 11);
    const counts = new Map<string, number>();
    let sumArea = 0;
    for (let i = 0; i < n; i++) {
      const b = s.sample(1);
      const [h, w] = b.targetBlockHW;
      const key = `${h}x${w}`;
      assert.ok(key in ref.probs, `block ${key} impossible under the official formula`);
      assert.ok(h * w >= lo && h * w <= hi, `area ${h * w} outside [${lo}, ${hi}]`);
      assert.equal(b.targets[0]![0]!.length, h * w);
      counts.set(key, (counts.get(key) ?? 0) + 1);
      sumArea += h * w;
    }
    const mean = sumArea / n;
    const se = Math.sqrt(ref.var / n);
    assert.ok(Math.abs(mean - ref.mean) < 4 * se, `mean area ${mean} vs ${ref.mean} (se ${se}), independent=${independent}`);
    for (const [key, p] of Object.entries(ref.probs)) {
      const f = (counts.get(key) ?? 0) / n;
      const sd = Math.sqrt((p * (1 - p)) / n);
      assert.ok(Math.abs(f - p) < 4.5 * sd + 1e-4, `P(${key}) ${f} vs ${p}, independent=${independent}`);
    }
  }
});

test('faithful mode on 8x8: last patch row/column never used (exclusive randint bound); unbiased covers them', () => {
  const H = 8;
  const W = 8;
  const run = (mode: 'faithful' | 'unbiased'): { ctx: number[]; tgt: number[]; cfg: MultiBlockMaskConfig } => {
    const cfg = { ...smallGridMaskConfig([H, W]), mode };
    const s = new MultiBlockMaskSampler(cfg, 3);
    const ctx = new Array(H * W).fill(0) as number[];
    const tgt = new Array(H * W).fill(0) as number[];
    for (let i = 0; i < 200; i++) {
      const b = s.sample(16);
      checkBatch(b, cfg, 16, true);
      assert.ok(b.contextBlockHW[0] < H && b.targetBlockHW[0] < H);
      for (const m of b.context) for (const k of m) ctx[k]!++;
      for (const t of b.targets) for (const m of t) for (const k of m) tgt[k]!++;
    }
    assert.equal(s.relaxedContexts, 0);
    return { ctx, tgt, cfg };
  };
  const f = run('faithful');
  for (let k = 0; k < H * W; k++) {
    const [r, c] = rowCol(k, W);
    if (r === H - 1 || c === W - 1) {
      assert.equal(f.ctx[k], 0, `faithful context used patch (${r},${c})`);
      assert.equal(f.tgt[k], 0, `faithful target used patch (${r},${c})`);
    }
  }
  const u = run('unbiased');
  for (let k = 0; k < H * W; k++) {
    assert.ok(u.ctx[k]! > 0, `unbiased context never used patch ${k}`);
    assert.ok(u.tgt[k]! > 0, `unbiased target never used patch ${k}`);
  }
});

test('unbiased positions are uniform over all valid offsets (chi-square), patch coverage matches theory', () => {
  const H = 8;
  const W = 8;
  // Fixed sizes: targets 3x3 (k = 9, aspect 1), context 7x7 (k = 49); allowOverlap so the context is a full block.
  const base: MultiBlockMaskConfig = {
    gridSize: [H, W],
    nTargets: 4,
    targetScale: [9 / 64, 9 / 64],
    targetAspect: [1, 1],
    contextScale: [49 / 64, 49 / 64],
    contextAspect: [1, 1],
    minKeep: 4,
    allowOverlap: true,
    mode: 'unbiased',
  };
  const collect = (mode: 'faithful' | 'unbiased') => {
    const cfg = { ...base, mode };
    const s = new MultiBlockMaskSampler(cfg, 17);
    const tOff = new Array(36).fill(0) as number[]; // 3x3 top-left offsets 0..5 x 0..5
    const cOff = new Array(4).fill(0) as number[]; // 7x7 top-left offsets 0..1 x 0..1
    const cover = new Array(H * W).fill(0) as number[];
    let nBlocks = 0;
    for (let i = 0; i < 500; i++) {
      const b = s.sample(8);
      checkBatch(b, cfg, 8, false);
      assert.deepEqual(b.targetBlockHW, [3, 3]);
      assert.deepEqual(b.contextBlockHW, [7, 7]);
      for (const t of b.targets) {
        for (const m of t) {
          const [r, c] = rowCol(m[0]!, W);
          tOff[r * 6 + c]!++;
          for (const k of m) cover[k]!++;
          nBlocks++;
        }
      }
      for (const m of b.context) {
        const [r, c] = rowCol(m[0]!, W);
        cOff[r * 2 + c]!++;
      }
    }
    return { tOff, cOff, cover, nBlocks };
  };
  const u = collect('unbiased');
  assert.ok(chiSquare(u.tOff) < 70, `target offsets chi2 ${chiSquare(u.tOff)} (dof 35)`);
  assert.ok(chiSquare(u.cOff) < 16.3, `context offsets chi2 ${chiSquare(u.cOff)} (dof 3)`);
  // P(patch (i, j) covered by a uniformly placed 3x3 block) = c(i) c(j) / 36, c(i) = #tops covering row i.
  const c = (i: number): number => Math.min(5, i) - Math.max(0, i - 2) + 1;
  for (let k = 0; k < H * W; k++) {
    const [i, j] = rowCol(k, W);
    const p = (c(i) * c(j)) / 36;
    const sd = Math.sqrt(u.nBlocks * p * (1 - p));
    assert.ok(Math.abs(u.cover[k]! - u.nBlocks * p) < 5 * sd, `patch (${i},${j}) coverage ${u.cover[k]} vs ${u.nBlocks * p}`);
  }
  // The same statistics detect the faithful bias: offset 5 (targets) and 1 (context) never occur.
  const f = collect('faithful');
  for (let r = 0; r < 6; r++) assert.equal(f.tOff[r * 6 + 5], 0);
  for (let col = 0; col < 6; col++) assert.equal(f.tOff[5 * 6 + col], 0);
  assert.equal(f.cOff[0], 4000); // context always at the top-left corner
  assert.ok(chiSquare(f.tOff) > 1000);
});

test('faithful truncation drops trailing indices; unbiased truncation keeps a uniform random subset', () => {
  // Integration: on 8x8 the faithful 7x7 context always sits at (0,0), so its untruncated mask is known.
  const cfg = { ...smallGridMaskConfig([8, 8]), mode: 'faithful' as const };
  const s = new MultiBlockMaskSampler(cfg, 21);
  let truncated = 0;
  for (let i = 0; i < 100; i++) {
    const b = s.sample(8);
    assert.deepEqual(b.contextBlockHW, [7, 7]);
    for (let img = 0; img < 8; img++) {
      const taken = new Set<number>();
      for (const t of b.targets) for (const k of t[img]!) taken.add(k);
      const full: number[] = [];
      for (let r = 0; r < 7; r++) for (let col = 0; col < 7; col++) if (!taken.has(r * 8 + col)) full.push(r * 8 + col);
      assert.deepEqual(Array.from(b.context[img]!), full.slice(0, b.contextLength));
      if (full.length > b.contextLength) truncated++;
    }
  }
  assert.equal(s.relaxedContexts, 0);
  assert.ok(truncated > 100);

  // Unit: truncateMask
  const rng = new Rng(5);
  const idx = Int32Array.from({ length: 20 }, (_, i) => 3 * i + 1);
  assert.deepEqual(Array.from(truncateMask(idx, 5, 'faithful', rng)), [1, 4, 7, 10, 13]);
  assert.equal(truncateMask(idx, 20, 'unbiased', rng), idx);
  const kept = new Array(20).fill(0) as number[];
  const trials = 4000;
  for (let t = 0; t < trials; t++) {
    const m = truncateMask(idx, 5, 'unbiased', rng);
    assert.equal(m.length, 5);
    for (let i = 1; i < 5; i++) assert.ok(m[i]! > m[i - 1]!);
    for (const v of m) kept[(v - 1) / 3]!++;
  }
  const p = 5 / 20;
  for (const k of kept) assert.ok(Math.abs(k - trials * p) < 5 * Math.sqrt(trials * p * (1 - p)), `kept ${k}`);
  assert.throws(() => truncateMask(idx, 21, 'faithful', rng), RangeError);
});

test('faithful minKeep 10 on an 8x8 grid throws a clear Error instead of hanging', () => {
  const cfg = { ...defaultMaskConfig([8, 8]), mode: 'faithful' as const };
  const s = new MultiBlockMaskSampler(cfg, 0);
  let ok = 0;
  assert.throws(
    () => {
      for (let i = 0; i < 200; i++) {
        s.sample(8);
        ok++;
      }
    },
    (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.match(e.message, /3x3/);
      assert.match(e.message, /8x8 grid/);
      assert.match(e.message, /minKeep=10/);
      assert.match(e.message, /loops forever/);
      assert.match(e.message, /Lower minKeep/);
      assert.match(e.message, /'unbiased'/);
      return true;
    },
  );
  assert.ok(ok < 200);
  // a 3x3-only target config throws at the very first batch
  const fixed = { ...cfg, targetScale: [9 / 64, 9 / 64] as [number, number], targetAspect: [1, 1] as [number, number] };
  assert.throws(() => new MultiBlockMaskSampler(fixed, 1).sample(1), /3x3 patches on a 8x8 grid with minKeep=10/);
});

test('unbiased small-grid config works on 8x8 for 200 batches', () => {
  const cfg = smallGridMaskConfig([8, 8]);
  assert.equal(cfg.mode, 'unbiased');
  const s = new MultiBlockMaskSampler(cfg, 8);
  for (let i = 0; i < 200; i++) {
    const b = s.sample(64);
    checkBatch(b, cfg, 64, true);
    assert.ok(b.contextLength >= cfg.minKeep);
  }
});

test('impossible placements: unbiased throws after maxTries, faithful applies the official relaxation', () => {
  // 4x4 grid, 3x3 target and 3x3 context: any two 3x3 blocks intersect, so the context can never keep 9 patches.
  const cfg: MultiBlockMaskConfig = {
    gridSize: [4, 4],
    nTargets: 1,
    targetScale: [9 / 16, 9 / 16],
    targetAspect: [1, 1],
    contextScale: [9 / 16, 9 / 16],
    contextAspect: [1, 1],
    minKeep: 9,
    allowOverlap: false,
    mode: 'unbiased',
    maxTries: 7,
  };
  assert.throws(() => new MultiBlockMaskSampler(cfg, 1).sample(2), (e: unknown) => {
    assert.ok(e instanceof Error);
    assert.match(e.message, /3x3 patches on a 4x4 grid with minKeep=9/);
    assert.match(e.message, /maxTries=7/);
    return true;
  });
  // Faithful (valid means > minKeep, so minKeep 8): after 20 failures the official code drops the target
  // constraint; the context then overlaps the target, which is counted.
  const f = new MultiBlockMaskSampler({ ...cfg, mode: 'faithful', minKeep: 8, maxTries: 200 }, 1);
  const b = f.sample(2);
  assert.equal(f.relaxedContexts, 2);
  assert.equal(b.contextLength, 9);
  assert.deepEqual(Array.from(b.context[0]!), Array.from(b.targets[0]![0]!)); // both at (0,0): randint(0, 1) = 0
  assert.throws(
    () => new MultiBlockMaskSampler({ ...cfg, mode: 'faithful', minKeep: 8, maxTries: 20 }, 1).sample(1),
    /maxTries=20/,
  );
});

test('config validation', () => {
  const ok = defaultMaskConfig([14, 14]);
  assert.throws(() => new MultiBlockMaskSampler({ ...ok, gridSize: [1, 14] }), RangeError);
  assert.throws(() => new MultiBlockMaskSampler({ ...ok, targetScale: [0.3, 0.2] }), RangeError);
  assert.throws(() => new MultiBlockMaskSampler({ ...ok, contextAspect: [0, 1] }), RangeError);
  assert.throws(() => new MultiBlockMaskSampler({ ...ok, minKeep: -1 }), RangeError);
  assert.throws(() => new MultiBlockMaskSampler({ ...ok, maxTries: 0 }), RangeError);
  assert.throws(() => new MultiBlockMaskSampler(ok).sample(0), RangeError);
  assert.equal(defaultMaskConfig([14, 14]).minKeep, 10);
  assert.equal(smallGridMaskConfig([8, 8]).minKeep, 4);
});

test("contextMode 'complement': the context is every patch outside the targets (then truncated), disjoint from them", () => {
  const cfg: MultiBlockMaskConfig = { ...smallGridMaskConfig([8, 8]), contextMode: 'complement' };
  const s = new MultiBlockMaskSampler(cfg, 5);
  // one image: no truncation, so the context is exactly the complement of the union of the targets
  for (let trial = 0; trial < 50; trial++) {
    const m = s.sample(1);
    const inTarget = new Set<number>();
    for (const t of m.targets) for (const i of t[0]!) inTarget.add(i);
    const expected = Array.from({ length: 64 }, (_, i) => i).filter((i) => !inTarget.has(i));
    assert.deepEqual(Array.from(m.context[0]!), expected);
    assert.deepEqual(m.contextBlockHW, [8, 8]);
  }
  // a batch: truncated to the shortest, still disjoint from each image's targets; on average about
  // twice the official block context on this grid
  const block = new MultiBlockMaskSampler(smallGridMaskConfig([8, 8]), 5);
  let lc = 0, lb = 0;
  for (let b = 0; b < 40; b++) {
    const m = s.sample(32);
    lc += m.contextLength;
    lb += block.sample(32).contextLength;
    for (let i = 0; i < 32; i++) for (const t of m.targets) for (const k of t[i]!) assert.ok(!m.context[i]!.includes(k));
  }
  assert.ok(lc > 1.5 * lb, `complement ${lc / 40} vs block ${lb / 40} tokens`);
  assert.throws(() => new MultiBlockMaskSampler({ ...cfg, contextMode: 'all' as 'block' }), /contextMode/);
});
