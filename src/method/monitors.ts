// Collapse monitors on an embedding matrix (N, D): RankMe, the std of L2-normalised embeddings, and
// the eigen-spectrum of the covariance.
import { Tensor, F, tidy, noGrad } from '../tensor/index.js';

/**
 * RankMe (Garrido et al. 2023): exp of the entropy of the normalised singular values. 1..min(N, D).
 * Uncentred as in the paper by default; `centred` first subtracts the mean embedding, so that a random
 * encoder (whose features share one large mean direction, uncentred RankMe ~3) is not read as collapsed.
 */
export function rankMe(emb: Tensor, o: { centred?: boolean; eps?: number } = {}): number {
  const eps = o.eps ?? 1e-7;
  return noGrad(() => tidy(() => {
    let x = emb.to('float64');
    if (o.centred) x = x.sub(x.mean(0));
    const s = x.svdvals();
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

/** Healthy value of `normalisedStd` for D dimensions: 1/sqrt(D) (embeddings spread over the sphere). */
export function healthyStd(dim: number): number {
  return 1 / Math.sqrt(dim);
}

export interface CollapseStats {
  /** uncentred RankMe (the literature's) */
  rankme: number;
  /** RankMe of the centred embeddings: what tells a collapsed encoder from an untrained one */
  rankme_centred: number;
  std: number;
  dim: number;
  effectiveRankFraction: number;
}

export function collapseStats(emb: Tensor): CollapseStats {
  const dim = emb.size(1);
  const rankme = rankMe(emb);
  return { rankme, rankme_centred: rankMe(emb, { centred: true }), std: normalisedStd(emb), dim, effectiveRankFraction: rankme / Math.min(dim, emb.size(0)) };
}

/**
 * The monitor's verdict: 'collapsed' when the centred RankMe is below 10 % of the dimensions or the
 * normalised std below a quarter of the healthy 1/sqrt(D); 'low-rank' below 20 % / half; else 'healthy'.
 */
export function collapseVerdict(s: Pick<CollapseStats, 'rankme_centred' | 'std' | 'dim'>): 'healthy' | 'low-rank' | 'collapsed' {
  const h = healthyStd(s.dim);
  if (s.rankme_centred < 0.1 * s.dim || s.std < 0.25 * h) return 'collapsed';
  if (s.rankme_centred < 0.2 * s.dim || s.std < 0.5 * h) return 'low-rank';
  return 'healthy';
}
