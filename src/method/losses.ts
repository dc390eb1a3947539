// Losses of the three methods: I-JEPA's feature regression, VICReg, and C-JEPA's combination.
import { Tensor, F, tidy } from '../tensor/index.js';

// ------------------------------------------------------------------ I-JEPA

export type JepaDistance = 'smooth_l1' | 'l2';

/** Regression of predictions z onto targets h (same shape); official: smooth L1 (beta 1), mean. */
export function ijepaLoss(z: Tensor, h: Tensor, distance: JepaDistance = 'smooth_l1'): Tensor {
  return distance === 'smooth_l1' ? F.smoothL1Loss(z, h, 'mean', 1.0) : F.mseLoss(z, h, 'mean');
}

// ------------------------------------------------------------------ VICReg

/** What the covariance term penalises: the official off-diagonal covariance, or the off-diagonal correlation. */
export type Decorrelation = 'covariance' | 'correlation';
export const DECORRELATIONS: readonly Decorrelation[] = ['covariance', 'correlation'];

export interface VicregWeights {
  inv: number; // sim_coeff, official 25
  var: number; // std_coeff, official 25
  cov: number; // cov_coeff, official 1
  /**
   * 'covariance' (official) or 'correlation': the same sum over off-diagonal entries of the correlation
   * matrix. Covariance falls as std^4, so on low-rank features it can be lowered by shrinking them, which
   * holds the variance hinge in a stall; correlation can only be lowered by decorrelating.
   */
  decorrelate?: Decorrelation;
  /**
   * The std the variance hinge asks of each dimension (VICReg's gamma, official 1). Pooled token features
   * spread less than single tokens do, so a hinge at 1 keeps pushing on them for the whole run.
   */
  stdTarget?: number;
}
export const VICREG_WEIGHTS: VicregWeights = { inv: 25, var: 25, cov: 1 };

export interface VicregTerms {
  loss: Tensor; // weighted sum
  inv: Tensor;
  var: Tensor;
  cov: Tensor;
}

/**
 * Gathers a (B, D) batch from every process (global-batch statistics). Identity in one process;
 * the distributed trainer passes an autograd-aware all-gather.
 */
export type AllGather = (x: Tensor) => Tensor;

/** Variance hinge of one centred batch: mean(relu(gamma - sqrt(var + 1e-4))), gamma = stdTarget (official 1). */
function varianceHinge(xc: Tensor, stdTarget = 1): Tensor {
  return xc.var(0).add(1e-4).sqrt().rsub(stdTarget).relu().mean();
}

/** Sum of squared off-diagonal covariance entries / D, for a centred batch. */
function offDiagCov(xc: Tensor): Tensor {
  const [n, d] = xc.shape as [number, number];
  const cov = F.gram(xc).div(n - 1);
  return cov.square().sum().sub(cov.diagonal().square().sum()).div(d);
}

/** The cov term of one centred batch: off-diagonal covariance (official) or correlation (the hinge's std formula). */
function decorrelationTerm(xc: Tensor, decorrelate: Decorrelation = 'covariance'): Tensor {
  return offDiagCov(decorrelate === 'correlation' ? xc.div(xc.var(0).add(1e-4).sqrt()) : xc);
}

/** The official VICReg loss on two batches of embeddings x, y (B, D). */
export function vicregLoss(x: Tensor, y: Tensor, w: VicregWeights = VICREG_WEIGHTS, allGather?: AllGather): VicregTerms {
  return tidy(() => {
    const inv = F.mseLoss(x, y);
    const gx = allGather ? allGather(x) : x;
    const gy = allGather ? allGather(y) : y;
    const xc = gx.sub(gx.mean(0)), yc = gy.sub(gy.mean(0));
    const vr = varianceHinge(xc, w.stdTarget).div(2).add(varianceHinge(yc, w.stdTarget).div(2));
    const cv = decorrelationTerm(xc, w.decorrelate).add(decorrelationTerm(yc, w.decorrelate));
    const loss = inv.mul(w.inv).add(vr.mul(w.var)).add(cv.mul(w.cov));
    return { loss, inv, var: vr, cov: cv };
  });
}

// ------------------------------------------------------------------ C-JEPA

/**
 * Where the VICReg regulariser acts in C-JEPA:
 * - 'block-pair' (our reading of Algorithm 1; the in1k preset): mean-pool the predictor output of each target
 *   block -> (M, B, D); VICReg between every pair of blocks of the same image, averaged over pairs.
 * - 'patch': variance/covariance on the flattened patch-level predictor outputs (M B Lt, D), and the
 *   block-pair invariance.
 * - 'context': VICReg between the pooled context-encoder output and the pooled predictions of the same
 *   image (B, D): acts directly on the encoder that is evaluated. On CIFAR-10 it is the only single-view
 *   placement that beats I-JEPA (docs/results/cifar10-ablation/).
 * - 'views': the abstract's "invariance in the mean of augmented views": the batch holds two augmented
 *   views of each image (view 1 of every image, then view 2), the JEPA loss runs on both, and VICReg acts
 *   between the pooled context-encoder outputs of the two views of each image (after the optional
 *   projector); with `cjepa.viewInput: full` the trainer passes a full (unmasked) online-encoder pass as `ctx`.
 * - 'target': VICReg between the pooled context-encoder output and the pooled target-encoder output of the
 *   whole image (no gradient; both before the JEPA targets' layer norm): the masked view of
 *   an image must agree with the EMA teacher's view of all of it, so the invariance term carries information
 *   about the image ('context' pairs two functions of the same context, which any features satisfy). Free:
 *   the target encoder has already seen the whole image for the JEPA targets.
 */
export type CjepaPlacement = 'block-pair' | 'patch' | 'context' | 'views' | 'target';
export const CJEPA_PLACEMENTS: readonly CjepaPlacement[] = ['block-pair', 'patch', 'context', 'views', 'target'];

export interface CjepaOptions {
  betaVicreg: number; // overall weight, paper 0.001
  weights: VicregWeights; // beta_inv, beta_var, beta_cov
  placement: CjepaPlacement;
  distance: JepaDistance;
}

export interface CjepaTerms {
  loss: Tensor;
  jepa: Tensor;
  vicreg: Tensor; // unweighted by beta (weighted by inv/var/cov coefficients)
  inv: Tensor;
  var: Tensor;
  cov: Tensor;
}

/**
 * z: predictions (M B, Lt, D), block-major; h: targets of the same shape; ctx: context-encoder
 * output (B, Lc, D) (used by the 'context' and 'views' placements). `projector` maps pooled (B, D)
 * embeddings before VICReg ('views' only; identity when absent). `teacher` (B, D): the pooled
 * target-encoder output of each whole image ('target' only). With betaVicreg = 0 the result is I-JEPA's
 * loss exactly (the regulariser is not even computed).
 */
export function cjepaLoss(z: Tensor, h: Tensor, ctx: Tensor, nTargets: number, o: CjepaOptions, allGather?: AllGather, projector?: Projector, ctxValid?: Tensor, teacher?: Tensor): CjepaTerms {
  return tidy(() => {
    const jepa = ijepaLoss(z, h, o.distance);
    if (o.betaVicreg === 0) {
      const zero = jepa.mul(0).detach();
      return { loss: jepa, jepa, vicreg: zero, inv: zero, var: zero, cov: zero };
    }
    const reg = cjepaRegulariser(z, ctx, nTargets, o, allGather, projector, ctxValid, teacher);
    return { loss: jepa.add(reg.loss.mul(o.betaVicreg)), jepa, vicreg: reg.loss, inv: reg.inv, var: reg.var, cov: reg.cov };
  });
}

/** Maps pooled (B, D) embeddings before the VICReg terms (e.g. an `Expander`). */
export type Projector = (x: Tensor) => Tensor;

/** Mean over tokens (B, L, D) -> (B, D); with `valid` (B, L) of 0/1, over the real tokens of each row only. */
export function poolTokens(x: Tensor, valid?: Tensor): Tensor {
  if (!valid) return x.mean(1);
  return tidy(() => x.mul(valid.unsqueeze(-1)).sum(1).div(valid.sum(1, true)));
}

/** ctxValid (B, Lc): 1 for real context tokens, 0 for padding (masks.contextFit 'pad'); absent: all real. */
export function cjepaRegulariser(z: Tensor, ctx: Tensor, nTargets: number, o: Pick<CjepaOptions, 'weights' | 'placement'>, allGather?: AllGather, projector?: Projector, ctxValid?: Tensor, teacher?: Tensor): VicregTerms {
  return tidy(() => {
    if (o.placement === 'target') {
      if (!teacher) throw new Error("C-JEPA 'target' placement: the pooled target-encoder output (teacher) is missing");
      // with a projector (cjepa.projector), both sides go through it, each batch on its own as in VICReg
      const x = poolTokens(ctx, ctxValid);
      return projector ? vicregLoss(projector(x), projector(teacher), o.weights, allGather) : vicregLoss(x, teacher, o.weights, allGather);
    }
    if (o.placement === 'views') {
      const B2 = ctx.size(0);
      if (B2 % 2 !== 0) throw new Error(`C-JEPA 'views' placement: the batch must hold two views of each image, got ${B2} rows`);
      // the projector sees each view's batch on its own, as VICReg's expander (its BatchNorm statistics)
      const pooled = poolTokens(ctx, ctxValid);
      const [x, y] = [pooled.narrow(0, 0, B2 / 2), pooled.narrow(0, B2 / 2, B2 / 2)].map((v) => (projector ? projector(v) : v)) as [Tensor, Tensor];
      return vicregLoss(x, y, o.weights, allGather);
    }
    const [MB, , D] = z.shape as [number, number, number];
    const B = MB / nTargets;
    const pooled = z.mean(1).reshape([nTargets, B, D]); // (M, B, D)
    if (o.placement === 'context') {
      return vicregLoss(poolTokens(ctx, ctxValid), pooled.mean(0), o.weights, allGather);
    }
    // every unordered pair of blocks: VICReg is symmetric in (x, y), so ordered pairs give the same mean
    const terms: VicregTerms[] = [];
    for (let i = 0; i < nTargets; i++) {
      for (let j = i + 1; j < nTargets; j++) terms.push(vicregLoss(pooled.select(0, i), pooled.select(0, j), o.weights, allGather));
    }
    if (terms.length === 0) throw new Error('C-JEPA block-pair regulariser needs at least 2 target blocks (nTargets >= 2)');
    const avg = (k: keyof VicregTerms) => terms.map((t) => t[k]).reduce((a, b) => a.add(b)).div(terms.length);
    const inv = avg('inv');
    if (o.placement === 'patch') {
      const flat = z.reshape([-1, D]);
      const g = allGather ? allGather(flat) : flat;
      const c = g.sub(g.mean(0));
      const vr = varianceHinge(c, o.weights.stdTarget);
      const cv = decorrelationTerm(c, o.weights.decorrelate);
      const loss = inv.mul(o.weights.inv).add(vr.mul(o.weights.var)).add(cv.mul(o.weights.cov));
      return { loss, inv, var: vr, cov: cv };
    }
    return { loss: avg('loss'), inv, var: avg('var'), cov: avg('cov') };
  });
}
