// Weighted k-NN classification on frozen features, as in DINO's eval_knn.py: features L2-normalised,
// cosine similarity to every training sample, the k most similar vote for their class with weight
// exp(sim / T) (T = 0.07), the class with the largest total wins. The test x train similarity is
// computed in chunks of test rows so memory stays bounded (chunk x N_train floats).
import { Tensor, tensor, tidy, noGrad, F, zeros, cat } from '../tensor/index.js';

export interface KnnOptions {
  /** Neighbour counts (default [20, 200]); a k above the training-set size uses all training samples. */
  ks?: number[];
  /** Vote temperature (default 0.07). */
  temperature?: number;
  /** Number of classes (default: max label + 1 over train and test). */
  numClasses?: number;
  /** Test rows per similarity chunk (default: about 16M similarity entries per chunk, at most 1024 rows). */
  chunkSize?: number;
  /** Also return the vote matrix (N_test, C) of each k (for tests and analysis). */
  returnScores?: boolean;
}

export interface KnnResult {
  /** Top-1 accuracy per requested k, keyed by k ("20", "200"); present when test labels are given. */
  top1: Record<string, number>;
  /** Predicted class per test row, per k. */
  predictions: Record<string, Int32Array>;
  /** k actually used per requested k (min(k, N_train)). */
  kUsed: Record<string, number>;
  /** (N_test, C) float32 vote totals per k, with returnScores. The caller owns them. */
  scores?: Record<string, Tensor>;
}

function checkLabels(labels: Int32Array, n: number, what: string): void {
  if (labels.length !== n) throw new Error(`${what}: ${labels.length} labels for ${n} feature rows`);
  for (const l of labels) if (l < 0) throw new Error(`${what}: unlabelled samples (label ${l}); k-NN needs labelled training data`);
}

/**
 * Classifies each row of `testFeats` (M, D) by a temperature-weighted vote of its k nearest rows of
 * `trainFeats` (N, D) in cosine similarity. `testLabels` (optional) gives the accuracy.
 */
export function knnClassify(trainFeats: Tensor, trainLabels: Int32Array, testFeats: Tensor, testLabels?: Int32Array | null, o: KnnOptions = {}): KnnResult {
  const ks = [...new Set(o.ks ?? [20, 200])];
  const T = o.temperature ?? 0.07;
  if (ks.length === 0 || ks.some((k) => !Number.isInteger(k) || k < 1)) throw new Error(`k-NN: k must be positive integers, got [${ks.join(', ')}]`);
  if (!(T > 0)) throw new Error(`k-NN: temperature must be > 0, got ${T}`);
  if (trainFeats.ndim !== 2 || testFeats.ndim !== 2 || trainFeats.size(1) !== testFeats.size(1)) {
    throw new Error(`k-NN: features must be (N, D) and (M, D), got [${trainFeats.shape.join(', ')}] and [${testFeats.shape.join(', ')}]`);
  }
  const N = trainFeats.size(0), M = testFeats.size(0);
  if (N === 0) throw new Error('k-NN: no training samples');
  checkLabels(trainLabels, N, 'k-NN training set');
  if (testLabels) {
    if (testLabels.length !== M) throw new Error(`k-NN test set: ${testLabels.length} labels for ${M} feature rows`);
    for (const l of testLabels) if (l < 0) throw new Error(`k-NN test set: unlabelled samples (label ${l}); accuracy needs labels`);
  }
  let C = o.numClasses ?? 0;
  for (const l of trainLabels) C = Math.max(C, l + 1);
  if (testLabels) for (const l of testLabels) C = Math.max(C, l + 1);
  const kUsed: Record<string, number> = {};
  for (const k of ks) kUsed[String(k)] = Math.min(k, N);
  const kMax = Math.max(...Object.values(kUsed));
  const chunk = o.chunkSize ?? Math.max(1, Math.min(1024, Math.floor((1 << 24) / N)));
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`k-NN: chunkSize must be a positive integer, got ${chunk}`);

  const predictions: Record<string, Int32Array> = {};
  const scoreRows: Record<string, Tensor[]> = {};
  for (const k of ks) { predictions[String(k)] = new Int32Array(M); scoreRows[String(k)] = []; }

  noGrad(() => {
    const trainT = tidy(() => F.normalize(trainFeats.float(), 2, 1).t().contiguous()); // (D, N)
    const dev = trainFeats.device;
    const trainY = tidy(() => tensor(Int32Array.from(trainLabels), [N]).long().to(null, dev));
    try {
      for (let s = 0; s < M; s += chunk) {
        const b = Math.min(chunk, M - s);
        const kept = tidy(() => {
          const q = F.normalize(testFeats.narrow(0, s, b).float().to(null, dev), 2, 1);
          const sim = q.mm(trainT); // (b, N)
          const { values, indices } = sim.topk(kMax, 1, true); // sorted, most similar first
          const neighbourLabels = trainY.expand([b, N]).gather(1, indices); // (b, kMax)
          const weights = values.div(T).exp();
          const out: Tensor[] = [];
          for (const k of ks) {
            const key = String(k), kk = kUsed[key]!;
            const votes = zeros([b, C], { device: dev }).scatterAdd(1, neighbourLabels.narrow(1, 0, kk), weights.narrow(1, 0, kk));
            predictions[key]!.set(votes.argmax(1).to('int32', 'cpu').data<'int32'>(), s);
            if (o.returnScores) out.push(votes.to(null, 'cpu'));
          }
          return out; // vote matrices survive only with returnScores
        });
        kept.forEach((v, i) => scoreRows[String(ks[i])]!.push(v));
      }
    } finally {
      trainT.dispose();
      trainY.dispose();
    }
  });
  const top1: Record<string, number> = {};
  if (testLabels) {
    for (const k of ks) {
      const p = predictions[String(k)]!;
      let c = 0;
      for (let i = 0; i < M; i++) if (p[i] === testLabels[i]) c++;
      top1[String(k)] = M > 0 ? c / M : NaN;
    }
  }
  let scores: Record<string, Tensor> | undefined;
  if (o.returnScores) {
    scores = {};
    for (const k of ks) {
      const rows = scoreRows[String(k)]!;
      scores[String(k)] = rows.length === 1 ? rows[0]! : cat(rows, 0);
      if (rows.length > 1) rows.forEach((r) => r.dispose());
    }
  }
  return { top1, predictions, kUsed, ...(scores ? { scores } : {}) };
}
