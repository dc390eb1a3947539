// Collapse monitors on an embedding matrix (N, D): RankMe, the std of L2-normalised embeddings, and
// the eigen-spectrum of the covariance.
import { Tensor, F, tidy, noGrad, keep } from '../tensor/index.js';

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
    return rankMeOfSingularValues(x.svdvals(), eps);
  }));
}

/** RankMe from singular values (any order): exp of the entropy of their normalised distribution. */
function rankMeOfSingularValues(s: Tensor, eps: number): number {
  return tidy(() => {
    const p = s.div(s.sum().add(eps)).add(eps);
    return p.mul(p.log()).sum().neg().exp().item();
  });
}

/**
 * Centred RankMe of patch tokens, every token of every image one row: whether the token-level representation (what
 * a JEPA predicts) has collapsed, which the pooled features can hide. Batches are added one at a time and only the
 * D x D Gram matrix and the token sum are kept (float64); the singular values of the centred tokens are the square
 * roots of the centred Gram's eigenvalues.
 */
export class TokenRankMe {
  private gram: Tensor | null = null;
  private sum: Tensor | null = null;
  private rows = 0;

  /** Adds tokens (B, T, D) or rows (M, D). */
  add(tokens: Tensor): void {
    const D = tokens.size(-1);
    if (this.gram && this.gram.size(0) !== D) throw new Error(`TokenRankMe: tokens of width ${D} after width ${this.gram.size(0)}`);
    const [g, s] = noGrad(() => tidy(() => {
      const x = tokens.reshape([-1, D]).to('float64');
      const g0 = x.t().matmul(x), s0 = x.sum(0);
      return [this.gram ? this.gram.add(g0) : g0, this.sum ? this.sum.add(s0) : s0];
    }));
    this.gram?.dispose();
    this.sum?.dispose();
    this.gram = keep(g!); // owned here, whatever scope add() runs in
    this.sum = keep(s!);
    this.rows += tokens.numel / D;
  }

  /** Tokens added so far. */
  get count(): number {
    return this.rows;
  }

  /** The centred RankMe of every token added (1..min(tokens, D)). */
  value(eps = 1e-7): number {
    if (!this.gram || !this.sum || this.rows < 2) throw new Error('TokenRankMe: add at least two tokens first');
    const gram = this.gram, sum = this.sum, n = this.rows;
    return noGrad(() => tidy(() => {
      const centred = gram.sub(sum.unsqueeze(1).matmul(sum.unsqueeze(0)).div(n));
      return rankMeOfSingularValues(centred.eigvalsh().clampMin(0).sqrt(), eps);
    }));
  }

  dispose(): void {
    this.gram?.dispose();
    this.sum?.dispose();
    this.gram = this.sum = null;
  }
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
  /** centred RankMe of the patch tokens (every token a row; `TokenRankMe`), when they were collected */
  rankme_tokens?: number;
}

/** The monitors of pooled embeddings (N, D), with the tokens' centred RankMe when `tokens` collected them. */
export function collapseStats(emb: Tensor, tokens?: TokenRankMe): CollapseStats {
  const dim = emb.size(1);
  const rankme = rankMe(emb);
  return {
    rankme, rankme_centred: rankMe(emb, { centred: true }), std: normalisedStd(emb), dim, effectiveRankFraction: rankme / Math.min(dim, emb.size(0)),
    ...(tokens && tokens.count >= 2 ? { rankme_tokens: tokens.value() } : {}),
  };
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
