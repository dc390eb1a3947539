// Tensor.eigh (libtorch's linalg_eigh) and scripts/conditioning.ts's whitening: eigenvalues equal eigvalsh, V diag(l) V^T
// rebuilds the matrix, and the whitened bank has identity covariance (lambda / (lambda + eps) with eps).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { covarianceEigen, whitener } from '../scripts/conditioning.js';

test('eigh: eigenvalues equal eigvalsh, vectors orthonormal, V diag(l) V^T rebuilds the matrix', () => {
  T.tidy(() => {
    T.manualSeed(3);
    const g = T.randn([40, 40], { dtype: 'float64' });
    const a = g.add(g.t()).div(2);
    const { values, vectors } = a.eigh();
    assert.ok((values.sub(a.eigvalsh()).abs().max().item()) < 1e-10);
    const rebuild = vectors.mul(values).mm(vectors.t()).sub(a).abs().max().item();
    const orth = vectors.t().mm(vectors).sub(T.eye(40, { dtype: 'float64' })).abs().max().item();
    assert.ok(rebuild < 1e-10 && orth < 1e-12, `rebuild ${rebuild}, orthogonality ${orth}`);
  });
});

test('whitener: the bank gets zero mean and identity covariance; eps shrinks each direction to lambda / (lambda + eps)', () => {
  T.manualSeed(4);
  const x = T.randn([3000, 12]).mm(T.randn([12, 12])).add(2);
  const e = covarianceEigen(x);
  const cov = (w: T.Tensor) => { const c = w.sub(w.mean(0)); return c.t().mm(c).div(w.size(0) - 1); };
  const w0 = whitener(e, 0), wmin = whitener(e, e.values.min().item());
  T.tidy(() => {
    const y = w0(x);
    assert.ok(y.mean(0).abs().max().item() < 1e-4);
    assert.ok(cov(y).sub(T.eye(12)).abs().max().item() < 1e-4);
    // with eps = lambda_min the whitened covariance's eigenvalues are lambda / (lambda + lambda_min): 1/2 for the smallest
    const got = cov(wmin(x)).to('float64').eigvalsh(), lmin = e.values.min();
    const want = e.values.div(e.values.add(lmin));
    assert.ok(got.sub(want).abs().max().item() < 1e-4, `${got.toArray()} vs ${want.toArray()}`);
    assert.ok(Math.abs(got.min().item() - 0.5) < 1e-4);
  });
  for (const t of [x, e.mean, e.values, e.vectors]) t.dispose();
  w0.dispose(); wmin.dispose();
});
