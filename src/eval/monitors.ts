// Collapse monitors on an embedding matrix (N, D): RankMe, the std of L2-normalised embeddings, and
// the eigen-spectrum of the covariance.
import { Tensor, F, tidy, noGrad } from '../tensor/index.js';

/** RankMe (Garrido et al. 2023): exp of the entropy of the normalised singular values. 1..min(N, D). */
export function rankMe(emb: Tensor, eps = 1e-7): number {
  return noGrad(() => tidy(() => {
    const s = emb.to('float64').svdvals();
    const p = s.div(s.sum().add(eps)).add(eps);
    return p.mul(p.log()).sum().neg().exp().item();
  }));
}

/** Mean over dimensions of the per-dimension std of L2-normalised embeddings (~1/sqrt(D) when healthy, 0 at collapse). */
export function normalisedStd(emb: Tensor): number {
  return noGrad(() => tidy(() => F.normalize(emb, 2, 1).std(0).mean().item()));
}

/** Eigenvalues of the embedding covariance, largest first. */
export function covarianceSpectrum(emb: Tensor): number[] {
  return noGrad(() => tidy(() => {
    const x = emb.to('float64');
    const xc = x.sub(x.mean(0));
    const cov = xc.t().matmul(xc).div(Math.max(1, x.size(0) - 1));
    return cov.eigvalsh().flip([0]).toArray();
  }));
}

export interface CollapseStats { rankme: number; std: number; dim: number; effectiveRankFraction: number }

export function collapseStats(emb: Tensor): CollapseStats {
  const dim = emb.size(1);
  const rankme = rankMe(emb);
  return { rankme, std: normalisedStd(emb), dim, effectiveRankFraction: rankme / Math.min(dim, emb.size(0)) };
}
