// scripts/conditioning.ts: the Jacobi eigen-decomposition against libtorch's eigvalsh, and whitening's identity covariance.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { symmetricEigen, covarianceEigen, whiten } from '../scripts/conditioning.js';

test('symmetricEigen: eigenvalues equal eigvalsh, vectors orthonormal, V diag(l) V^T rebuilds the matrix', () => {
  T.manualSeed(3);
  const n = 40;
  const g = T.randn([n, n], { dtype: 'float64' });
  const a = g.add(g.t()).div(2);
  const flat = a.contiguous().data<'float64'>();
  const e = symmetricEigen(flat, n);
  const ours = Array.from(e.values).sort((x, y) => x - y);
  const ref = a.eigvalsh().toArray() as number[];
  for (let i = 0; i < n; i++) assert.ok(Math.abs(ours[i]! - ref[i]!) < 1e-10, `eigenvalue ${i}: ${ours[i]} vs ${ref[i]}`);
  let rebuild = 0, orth = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let x = 0, o = 0;
      for (let k = 0; k < n; k++) { x += e.vectors[i * n + k]! * e.values[k]! * e.vectors[j * n + k]!; o += e.vectors[k * n + i]! * e.vectors[k * n + j]!; }
      rebuild = Math.max(rebuild, Math.abs(x - flat[i * n + j]!));
      orth = Math.max(orth, Math.abs(o - (i === j ? 1 : 0)));
    }
  }
  assert.ok(rebuild < 1e-10 && orth < 1e-12, `rebuild ${rebuild}, orthogonality ${orth}`);
});

test('whiten: the bank gets zero mean and identity covariance; eps shrinks the small directions', () => {
  T.manualSeed(4);
  const x = T.randn([3000, 12]).mm(T.randn([12, 12])).add(2);
  const e = covarianceEigen(x);
  const cov = (w: T.Tensor) => T.tidy(() => { const c = w.sub(w.mean(0)); return c.t().mm(c).div(w.size(0) - 1); });
  const w0 = whiten(x, e, 0);
  assert.ok((w0.mean(0).abs().max().item() as number) < 1e-4);
  assert.ok((cov(w0).sub(T.eye(12)).abs().max().item() as number) < 1e-4);
  const lmin = Math.min(...e.values);
  // the whitened covariance's eigenvalues are lambda / (lambda + eps): 1/2 for the smallest with eps = lambda_min
  const got = (cov(whiten(x, e, lmin)).to('float64').eigvalsh().toArray() as number[]).sort((p, q) => p - q);
  const want = Array.from(e.values).map((l) => l / (l + lmin)).sort((p, q) => p - q);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 1e-4, `eigenvalue ${i}: ${got[i]} vs ${want[i]}`);
  assert.ok(Math.abs(got[0]! - 0.5) < 1e-4);
});
