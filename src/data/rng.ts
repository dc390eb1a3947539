// Counter-based seeding: every random stream is derived from integers such as
// (seed, epoch, index, view) by hashing, never from worker scheduling, so the
// pipeline produces the same batches for any worker count.

/** murmur3 finaliser: a good 32-bit integer mixer. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Hash a list of integers (each taken modulo 2^32, with the high part of large seeds folded in). */
export function hash32(...xs: number[]): number {
  let h = 0x9e3779b9 ^ xs.length;
  for (const x of xs) {
    const lo = x >>> 0;
    const hi = Math.floor(x / 4294967296) >>> 0;
    h = fmix32((h ^ lo) + 0x7f4a7c15);
    if (hi !== 0) h = fmix32((h ^ hi) + 0x2545f491);
  }
  return h >>> 0;
}

/** sfc32: small, fast, statistically solid 32-bit generator. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(a: number, b: number, c: number, d: number) {
    this.a = a >>> 0;
    this.b = b >>> 0;
    this.c = c >>> 0;
    this.d = d >>> 0 || 1;
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  /** A generator seeded from any list of integers. */
  static from(...keys: number[]): Rng {
    const h = hash32(...keys);
    return new Rng(h, hash32(h, 1), hash32(h, 2), hash32(h, 3));
  }

  nextU32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

/** Something that hands out uniforms in [0,1): an Rng, or a replayed list in tests. */
export interface UniformSource {
  uniform(): number;
}

// Stream tags keep the streams of different purposes apart.
export const STREAM_SHUFFLE = 0x5348;
export const STREAM_VIEW = 0x5649;
export const STREAM_REPLACE = 0x5245;

/** The augmentation stream of one view of one sample in one epoch. */
export function viewRng(seed: number, epoch: number, index: number, view: number): Rng {
  return Rng.from(STREAM_VIEW, seed, epoch, index, view);
}

/** Seeded Fisher-Yates permutation of 0..n-1 for an epoch. */
export function permutation(n: number, seed: number, epoch: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const rng = Rng.from(STREAM_SHUFFLE, seed, epoch);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}
