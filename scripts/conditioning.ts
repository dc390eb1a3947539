// Is C-JEPA's k-NN lead over I-JEPA information, or only the conditioning of the same information? A linear probe
// is (up to its L2 penalty) blind to an invertible linear map of the features; cosine k-NN is not. This re-scores
// reproduce's cached features (<run>/features/step-N-target-M.safetensors) after centring and after whitening
// (x - mean) Sigma^-1/2 with Sigma + eps I, eps a fraction of the mean eigenvalue, all fitted on the train bank
// only (libtorch's eigh). Whitening maps differ from each other by a rotation, which cosine k-NN ignores, so ZCA stands for them all.
// If whitened I-JEPA features reach C-JEPA's k-NN, the lead is conditioning a linear probe gets for free.
//
//   node dist/scripts/conditioning.js [--probe] FEATURES.safetensors [...]
import { parseArgs } from 'node:util';
import * as T from '../src/tensor/index.js';
import { loadTensors } from '../src/io/tensors.js';
import { knnClassify } from '../src/eval/knn.js';
import { linearProbe } from '../src/eval/linear_probe.js';
import { rankMe } from '../src/method/monitors.js';

/** The train bank's mean and its covariance's eigenvalues (ascending) and eigenvectors (columns), float64. The caller owns them. */
export function covarianceEigen(x: T.Tensor): { mean: T.Tensor; values: T.Tensor; vectors: T.Tensor } {
  return T.tidy(() => {
    const x64 = x.to('float64'), mean = x64.mean(0), xc = x64.sub(mean);
    const { values, vectors } = xc.t().mm(xc).div(x.size(0) - 1).eigh();
    return { mean: T.keep(mean), values: T.keep(values), vectors: T.keep(vectors) };
  });
}

/** The whitening map of the bank, x -> (x - mean) V diag(1 / sqrt(lambda + eps)) V^T: identity covariance on the bank (up to eps). */
export function whitener(e: ReturnType<typeof covarianceEigen>, eps: number): ((x: T.Tensor) => T.Tensor) & { dispose(): void } {
  const w = T.keep(T.tidy(() => e.vectors.mul(e.values.clampMin(0).add(eps).rsqrt()).mm(e.vectors.t()).float()));
  const mean = T.keep(e.mean.float());
  const f = (x: T.Tensor) => T.tidy(() => x.sub(mean).mm(w));
  return Object.assign(f, { dispose: () => { w.dispose(); mean.dispose(); } });
}

async function main() {
  const { values: a, positionals: files } = parseArgs({ options: { probe: { type: 'boolean', default: false } }, allowPositionals: true });
  if (files.length === 0) throw new Error('usage: node dist/scripts/conditioning.js [--probe] FEATURES.safetensors [...]');
  const fracs = [1e-3, 1e-2, 1e-1];
  for (const f of files) {
    const t = loadTensors(f).tensors;
    const [tr, te] = [t['train'], t['test']];
    if (!tr || !te || !t['train_labels'] || !t['test_labels']) throw new Error(`${f}: expected tensors train, test, train_labels, test_labels`);
    const trY = Int32Array.from(t['train_labels'].toArray() as number[]), teY = Int32Array.from(t['test_labels'].toArray() as number[]);
    const knn = (x: T.Tensor, y: T.Tensor) => knnClassify(x, trY, y, teY, { ks: [20] }).top1['20']!;
    const e = covarianceEigen(tr);
    const meanEig = e.values.mean().item() as number;
    const row: Record<string, number | string> = { file: f, rankme_centred: rankMe(tr, { centred: true }), knn20: knn(tr, te) };
    row['knn20_centred'] = T.tidy(() => { const m = e.mean.float(); return knn(tr.sub(m), te.sub(m)); });
    for (const frac of fracs) {
      const white = whitener(e, frac * meanEig);
      T.tidy(() => {
        const [wtr, wte] = [white(tr), white(te)];
        row[`knn20_white_${frac}`] = knn(wtr, wte);
        if (a.probe && frac === 1e-2) row['linear_white_0.01'] = linearProbe(wtr, trY, wte, teY).top1;
      });
      white.dispose();
    }
    if (a.probe) row['linear'] = linearProbe(tr, trY, te, teY).top1;
    for (const x of [e.mean, e.values, e.vectors, ...Object.values(t)]) x.dispose();
    console.log(JSON.stringify(row));
  }
}
if (import.meta.url === `file://${process.argv[1]}`) await main();
