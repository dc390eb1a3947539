/**
 * Small seedable PRNG (xoshiro128**, Blackman & Vigna) in pure TypeScript.
 *
 * Deterministic across platforms (only 32-bit integer ops via Math.imul / >>> 0),
 * with an exactly checkpointable state: `state()` returns the four 32-bit words,
 * `Rng.fromState(s)` / `setState(s)` restore them bit for bit.
 */

const TWO32 = 4294967296;

/** splitmix32 step: returns [nextState, output]; used only for seeding. */
function splitmix32(x: number): [number, number] {
  const s = (x + 0x9e3779b9) >>> 0;
  let z = s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  z = (z ^ (z >>> 16)) >>> 0;
  return [s, z];
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /** `seed`: any finite number; integers in [0, 2^53) map to distinct streams in practice. */
  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`Rng seed must be finite, got ${seed}`);
    const t = Math.trunc(seed);
    const lo = t >>> 0;
    const hi = Math.floor(Math.abs(t) / TWO32) >>> 0;
    // Mix the high word (and sign) into the splitmix seed so large seeds differ.
    let x = (lo ^ Math.imul(hi ^ (t < 0 ? 0xa5a5a5a5 : 0), 0x27d4eb2d)) >>> 0;
    const words: number[] = [];
    for (let i = 0; i < 4; i++) {
      const [nx, out] = splitmix32(x);
      x = nx;
      words.push(out);
    }
    this.setState(words);
    // Guarantee a non-zero state (the all-zero state is a fixed point).
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Copy of the 4 internal 32-bit words (unsigned). */
  state(): number[] {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  /** Restore a state obtained from `state()`. */
  setState(s: readonly number[]): void {
    if (s.length !== 4) throw new RangeError(`Rng state must have 4 words, got ${s.length}`);
    for (const w of s) {
      if (!Number.isInteger(w) || w < 0 || w >= TWO32) {
        throw new RangeError(`Rng state words must be integers in [0, 2^32), got ${w}`);
      }
    }
    if ((s[0]! | s[1]! | s[2]! | s[3]!) === 0) throw new RangeError('Rng state must not be all zero');
    this.s0 = s[0]! >>> 0;
    this.s1 = s[1]! >>> 0;
    this.s2 = s[2]! >>> 0;
    this.s3 = s[3]! >>> 0;
  }

  static fromState(s: readonly number[]): Rng {
    const r = new Rng(0);
    r.setState(s);
    return r;
  }

  clone(): Rng {
    return Rng.fromState(this.state());
  }

  /** Next uniform 32-bit unsigned integer (xoshiro128**). */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform float in [0, 1) with 53 random bits (two 32-bit draws). */
  nextFloat(): number {
    const a = this.nextUint32() >>> 5; // 27 bits
    const b = this.nextUint32() >>> 6; // 26 bits
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** Uniform integer in [lo, hiExclusive); exact (rejection sampling), range size up to 2^32. */
  nextInt(lo: number, hiExclusive: number): number {
    if (!Number.isInteger(lo) || !Number.isInteger(hiExclusive)) {
      throw new RangeError(`nextInt bounds must be integers, got [${lo}, ${hiExclusive})`);
    }
    const n = hiExclusive - lo;
    if (n <= 0 || n > TWO32) throw new RangeError(`nextInt: empty or too large range [${lo}, ${hiExclusive})`);
    const limit = TWO32 - (TWO32 % n); // largest multiple of n not above 2^32
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return lo + (x % n);
    }
  }

  /** Fisher-Yates shuffle, in place (arrays and typed arrays); returns the same array. */
  shuffle<A extends { length: number; [i: number]: unknown }>(array: A): A {
    const a = array as { [i: number]: unknown };
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.nextInt(0, i + 1);
      const tmp = a[i];
      a[i] = a[j];
      a[j] = tmp;
    }
    return array;
  }
}
