// Is C-JEPA's k-NN lead over I-JEPA information, or only the conditioning of the same information? A linear probe
// is (up to its L2 penalty) blind to an invertible linear map of the features; cosine k-NN is not. This re-scores
// reproduce's cached features (<run>/features/step-N-target-M.safetensors) after centring and after whitening
// (x - mean) Sigma^-1/2 with Sigma + eps I, eps a fraction of the mean eigenvalue, all fitted on the train bank
// only. Whitening maps differ from each other by a rotation, which cosine k-NN ignores, so ZCA stands for them all.
// If whitened I-JEPA features reach C-JEPA's k-NN, the lead is conditioning a linear probe gets for free.
//
//   node dist/scripts/conditioning.js [--probe] FEATURES.safetensors [...]
import { parseArgs } from 'node:util';
import * as T from '../src/tensor/index.js';
import { loadTensors } from '../src/io/tensors.js';
import { knnClassify } from '../src/eval/knn.js';
import { linearProbe } from '../src/eval/linear_probe.js';
import { rankMe } from '../src/method/monitors.js';

/** Eigen-decomposition of a symmetric n x n matrix (row-major) by cyclic Jacobi rotations: values and columns of vectors. */
export function symmetricEigen(a0: Float64Array, n: number, sweeps = 60): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(a0), v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let s = 0; s < sweeps; s++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off < 1e-22 * n * n) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), sn = t * c;
        for (let k = 0; k < n; k++) {  // columns p, q of a
          const akp = a[k * n + p]!, akq = a[k * n + q]!;
          a[k * n + p] = c * akp - sn * akq; a[k * n + q] = sn * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {  // rows p, q of a
          const apk = a[p * n + k]!, aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - sn * aqk; a[q * n + k] = sn * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!, vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - sn * vkq; v[k * n + q] = sn * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i]!;
  return { values, vectors: v };
}

/** The train bank's mean and its covariance's eigen-decomposition (float64). */
export function covarianceEigen(x: T.Tensor): { mean: T.Tensor; values: Float64Array; vectors: Float64Array } {
  return T.tidy(() => {
    const x64 = x.to('float64'), mean = x64.mean(0), xc = x64.sub(mean);
    const D = x.size(1), cov = xc.t().mm(xc).div(x.size(0) - 1);
    const e = symmetricEigen(cov.contiguous().data<'float64'>(), D);
    return { mean: T.keep(mean.to('float32')), ...e };
  });
}

/** (x - mean) V diag(1 / sqrt(lambda + eps)) V^T: identity covariance on the bank (up to eps). */
export function whiten(x: T.Tensor, e: ReturnType<typeof covarianceEigen>, eps: number): T.Tensor {
  const D = e.values.length, w = new Float32Array(D * D);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < D; j++) {
      let s = 0;
      for (let k = 0; k < D; k++) s += e.vectors[i * D + k]! * e.vectors[j * D + k]! / Math.sqrt(Math.max(e.values[k]!, 0) + eps);
      w[i * D + j] = s;
    }
  }
  return T.tidy(() => x.sub(e.mean).mm(T.tensor(w, [D, D])));
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
    const meanEig = e.values.reduce((s, v) => s + v, 0) / e.values.length;
    const row: Record<string, number | string> = { file: f, rankme_centred: rankMe(tr, { centred: true }), knn20: knn(tr, te) };
    row['knn20_centred'] = T.tidy(() => knn(tr.sub(e.mean), te.sub(e.mean)));
    for (const frac of fracs) {
      T.tidy(() => {
        const [wtr, wte] = [whiten(tr, e, frac * meanEig), whiten(te, e, frac * meanEig)];
        row[`knn20_white_${frac}`] = knn(wtr, wte);
        if (a.probe && frac === 1e-2) row['linear_white_0.01'] = linearProbe(wtr, trY, wte, teY).top1;
      });
    }
    if (a.probe) row['linear'] = linearProbe(tr, trY, te, teY).top1;
    console.log(JSON.stringify(row));
  }
}
if (import.meta.url === `file://${process.argv[1]}`) await main();
