// Weight initialisers (the official I-JEPA / timm ones), drawing from an explicit Generator.
import { Tensor, Generator, noGrad, tidy, empty } from '../tensor/index.js';

/**
 * Truncated normal on [a, b] (timm's / PyTorch's trunc_normal_: inverse-CDF sampling).
 * Default bounds [-2, 2] are absolute, as in the official code, so with std 0.02 it is ~untruncated.
 */
export function truncNormal_(t: Tensor, std: number, gen?: Generator, mean = 0, a = -2, b = 2): Tensor {
  const cdf = (x: number) => (1 + erf(x / Math.SQRT2)) / 2;
  const l = cdf((a - mean) / std), u = cdf((b - mean) / std);
  noGrad(() => tidy(() => {
    // drawn on the CPU (where the generator lives; CUDA refuses a CPU generator), then copied: a seed
    // gives the same weights on every device
    const x = t.device === 'cpu' ? t : empty(t.shape, { dtype: t.dtype, device: 'cpu' });
    x.uniform_(2 * l - 1, 2 * u - 1, gen);
    t.copy_(x.erfinv().mul(std * Math.SQRT2).add(mean).clamp(a, b));
  }));
  return t;
}

/** Abramowitz-Stegun erf, enough for the bounds above. */
function erf(x: number): number {
  const s = Math.sign(x); x = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * x);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return s * y;
}
