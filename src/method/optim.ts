// AdamW with decoupled weight decay and parameter groups, the arithmetic of torch.optim.AdamW
// (PyTorch 1.13, single-tensor path; fused into one pass per tensor), plus the official I-JEPA grouping and gradient clipping.
import { Tensor, zerosLike, noGrad, tidy, F } from '../tensor/index.js';

export interface ParamGroup {
  params: [string, Tensor][];
  /** false: this group never decays (biases and 1-D parameters) */
  decay: boolean;
}

/** I-JEPA grouping: weight decay on weights of >= 2 dims, none on biases and 1-D parameters. */
export function ijepaParamGroups(named: readonly [string, Tensor][]): ParamGroup[] {
  const decay: [string, Tensor][] = [], noDecay: [string, Tensor][] = [];
  for (const [n, p] of named) {
    if (!p.requiresGrad) continue;
    (n.endsWith('bias') || p.ndim === 1 ? noDecay : decay).push([n, p]);
  }
  return [{ params: decay, decay: true }, { params: noDecay, decay: false }];
}

export interface AdamWOptions {
  betas: [number, number];
  eps: number;
}

export class AdamW {
  step = 0;
  readonly expAvg = new Map<string, Tensor>();
  readonly expAvgSq = new Map<string, Tensor>();
  constructor(readonly groups: ParamGroup[], readonly opts: AdamWOptions = { betas: [0.9, 0.999], eps: 1e-8 }) {
    for (const g of groups) {
      for (const [n, p] of g.params) {
        this.expAvg.set(n, noGrad(() => zerosLike(p)));
        this.expAvgSq.set(n, noGrad(() => zerosLike(p)));
      }
    }
  }

  /** One update with learning rate `lr` and weight decay `wd` (applied to decaying groups). */
  update(lr: number, wd: number): void {
    this.step += 1;
    const [b1, b2] = this.opts.betas;
    const bc1 = 1 - b1 ** this.step;
    const bc2Sqrt = Math.sqrt(1 - b2 ** this.step);
    const stepSize = lr / bc1;
    // one native call per group; the per-element arithmetic is torch.optim.AdamW's (native/fused.cc)
    tidy(() => {  // disposes the grad handles `p.grad` hands out
      for (const g of this.groups) {
        const ps: Tensor[] = [], gs: Tensor[] = [], ms: Tensor[] = [], vs: Tensor[] = [];
        for (const [n, p] of g.params) {
          const grad = p.grad;
          if (grad === undefined) continue;
          ps.push(p); gs.push(grad); ms.push(this.expAvg.get(n)!); vs.push(this.expAvgSq.get(n)!);
        }
        if (ps.length === 0) continue;
        F.fusedAdamW_(ps, gs, ms, vs, { decay: 1 - lr * (g.decay ? wd : 0), beta1: b1, beta2: b2, stepSize, bc2Sqrt, eps: this.opts.eps });
      }
    });
  }

  /** Named state for checkpoints: `exp_avg.<param>`, `exp_avg_sq.<param>`. */
  stateTensors(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [n, t] of this.expAvg) out[`exp_avg.${n}`] = t;
    for (const [n, t] of this.expAvgSq) out[`exp_avg_sq.${n}`] = t;
    return out;
  }
  loadStateTensors(state: Record<string, Tensor>, step: number): void {
    noGrad(() => {
      for (const [prefix, map] of [['exp_avg', this.expAvg], ['exp_avg_sq', this.expAvgSq]] as const) {
        for (const [n, t] of map) {
          const src = state[`${prefix}.${n}`];
          if (!src) throw new Error(`optimizer state is missing '${prefix}.${n}'`);
          // copy_ broadcasts: a moment of another shape would be spread silently
          if (src.shape.join() !== t.shape.join()) throw new Error(`optimizer state '${prefix}.${n}' has shape [${src.shape}], the parameter [${t.shape}]`);
          t.copy_(src);
        }
      }
    });
    this.step = step;
  }
  dispose(): void {
    for (const t of [...this.expAvg.values(), ...this.expAvgSq.values()]) t.dispose();
  }
}

/** Scales gradients so their global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_). Returns the norm. */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  return tidy(() => clipGradNorm_(params, maxNorm).item());
}

/**
 * clipGradNorm without reading the norm on the host (as torch's clip_grad_norm_: the factor
 * min(1, maxNorm / (norm + 1e-6)) is applied on the gradients' device, so a GPU step never waits).
 * Returns the norm as a 0-d float64 tensor on that device (the caller disposes it).
 */
export function clipGradNorm_(params: readonly Tensor[], maxNorm: number): Tensor {
  const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== undefined);
  const total = F.foreachNormTensor(grads);
  noGrad(() => tidy(() => {
    const coef = total.add(1e-6).reciprocal().mul(maxNorm).clamp(null, 1);
    grads.forEach((g) => g.mul_(coef)); // by exactly 1 when the norm is within maxNorm
  }));
  return total;
}
