// Behaviour of the Tensor API: creation, dtypes, broadcasting, reductions, views and indexing,
// in-place ops, autograd, seeded generators, threads and safetensors round trips. Values are
// checked against hand-computed expectations, and (one batched python call) against PyTorch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../src/tensor/index.js';
import { saveTensors, loadTensors } from '../src/io/tensors.js';
import { runTorch, maxAbsDiff } from './util/pytorch.js';

// test/py/st.py cannot write 0-d tensors: the reference scripts send scalars as shape [1]
const KEEP_0D = `
for _k in list(out):
    if out[_k].dim() == 0:
        out[_k] = out[_k].reshape(1)`;

const arr = (t: T.Tensor): number[] => t.toArray();
function close(actual: number[], expected: number[], tol = 1e-6, msg = ''): void {
  assert.equal(actual.length, expected.length, `${msg}: length ${actual.length} vs ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    const ok = Number.isNaN(e) ? Number.isNaN(a) : a === e || Math.abs(a - e) <= tol * Math.max(1, Math.abs(e));
    assert.ok(ok, `${msg}: element ${i}: ${a} vs expected ${e}\n actual ${JSON.stringify(actual)}`);
  }
}

test('creation: zeros, ones, full, arange, linspace, eye, empty', () => {
  T.tidy(() => {
    const z = T.zeros([2, 3]);
    assert.deepEqual(z.shape, [2, 3]);
    assert.equal(z.dtype, 'float32');
    assert.equal(z.device, 'cpu');
    assert.equal(z.numel, 6);
    assert.equal(z.ndim, 2);
    assert.equal(z.size(-1), 3);
    assert.throws(() => z.size(2), /size\(2\)/);
    assert.deepEqual(arr(z), [0, 0, 0, 0, 0, 0]);
    assert.deepEqual(arr(T.ones([3], { dtype: 'int32' })), [1, 1, 1]);
    assert.equal(T.ones([3], { dtype: 'int32' }).dtype, 'int32');
    assert.deepEqual(arr(T.full([2, 2], 2.5)), [2.5, 2.5, 2.5, 2.5]);
    assert.deepEqual(arr(T.full([2], 7, { dtype: 'float64' })), [7, 7]);
    assert.deepEqual(T.empty([4, 0]).shape, [4, 0]);
    assert.deepEqual(T.zeros([]).shape, []);
    assert.equal(T.zeros([]).numel, 1);

    const a = T.arange(5);
    assert.equal(a.dtype, 'int64');
    assert.deepEqual(arr(a), [0, 1, 2, 3, 4]);
    assert.deepEqual(arr(T.arange(2, 11, 3)), [2, 5, 8]);
    const af = T.arange(0, 1, 0.25);
    assert.equal(af.dtype, 'float32');
    assert.deepEqual(arr(af), [0, 0.25, 0.5, 0.75]);
    assert.deepEqual(arr(T.arange(3, undefined, 1, { dtype: 'float64' })), [0, 1, 2]);
    assert.equal(T.arange(3, undefined, 1, { dtype: 'float64' }).dtype, 'float64');
    close(arr(T.linspace(-1, 1, 5)), [-1, -0.5, 0, 0.5, 1]);
    assert.deepEqual(arr(T.linspace(0, 1, 1)), [0]);
    assert.deepEqual(arr(T.eye(3)), [1, 0, 0, 0, 1, 0, 0, 0, 1]);

    assert.ok(T.zeros([2], { requiresGrad: true }).requiresGrad);
    assert.equal(T.zerosLike(T.ones([2, 2], { dtype: 'int64' })).dtype, 'int64');
    assert.deepEqual(arr(T.onesLike(T.zeros([3]))), [1, 1, 1]);
  });
});

test('tensor() from nested arrays, typed arrays, scalars; int64 BigInt64Array; bfloat16 via .to', () => {
  T.tidy(() => {
    const n = T.tensor([[1, 2, 3], [4, 5, 6]]);
    assert.deepEqual(n.shape, [2, 3]);
    assert.equal(n.dtype, 'float32');
    assert.deepEqual(arr(n), [1, 2, 3, 4, 5, 6]);
    const n3 = T.tensor([[[1], [2]], [[3], [4]]]);
    assert.deepEqual(n3.shape, [2, 2, 1]);
    const s = T.tensor(3.5);
    assert.deepEqual(s.shape, []);
    assert.equal(s.item(), 3.5);
    assert.deepEqual(T.tensor([1, 2, 3, 4], [2, 2]).shape, [2, 2]);
    assert.deepEqual(arr(T.tensor([1.7, -2.2, 3], { dtype: 'int64' })), [1, -2, 3]);
    assert.deepEqual(arr(T.tensor([0, 2, 0], { dtype: 'bool' })), [0, 1, 0]);
    assert.equal(T.tensor([0, 1], { dtype: 'bool' }).dtype, 'bool');

    const f = T.tensor(new Float32Array([0.5, 1.5]));
    assert.equal(f.dtype, 'float32');
    assert.deepEqual(arr(f), [0.5, 1.5]);
    assert.equal(T.tensor(new Float64Array([1, 2])).dtype, 'float64');
    assert.equal(T.tensor(new Int32Array([1, 2])).dtype, 'int32');
    assert.equal(T.tensor(new Uint8Array([1, 2])).dtype, 'uint8');

    // int64 beyond 2^53 survives the round trip through BigInt64Array exactly
    const big = new BigInt64Array([9007199254740993n, -5n, 0n, 1n << 62n]);
    const ti = T.tensor(big, [2, 2]);
    assert.equal(ti.dtype, 'int64');
    assert.deepEqual(ti.shape, [2, 2]);
    const back = ti.data<'int64'>();
    assert.ok(back instanceof BigInt64Array);
    assert.deepEqual(Array.from(back), Array.from(big));
    assert.deepEqual(arr(ti.slice(0, 1, 2)), [0, 2 ** 62]);

    // bfloat16: 1 + 2^-7 is exact, 1 + 2^-9 rounds to 1; raw bits via data()
    const bf = T.tensor([1, 1 + 2 ** -7, 1 + 2 ** -9, -2, 3.140625]).to('bfloat16');
    assert.equal(bf.dtype, 'bfloat16');
    assert.deepEqual(arr(bf), [1, 1 + 2 ** -7, 1, -2, 3.140625]);
    const bits = bf.data<'bfloat16'>();
    assert.ok(bits instanceof Uint16Array);
    assert.equal(bits[0], 0x3f80);
    assert.equal(bits[3], 0xc000);
    // a Uint16Array is taken as raw bfloat16 bits
    assert.deepEqual(arr(T.tensor(new Uint16Array([0x3f80, 0x4000]))), [1, 2]);
    assert.equal(T.tensor(new Uint16Array([0x3f80])).dtype, 'bfloat16');
    assert.throws(() => T.tensor([1, 2], { dtype: 'bfloat16' }), /bfloat16/);
  });
});

test('dtype conversions', () => {
  T.tidy(() => {
    const x = T.tensor([-1.7, -0.5, 0, 0.5, 2.9]);
    assert.deepEqual(arr(x.to('int64')), [-1, 0, 0, 0, 2]); // truncation toward zero
    assert.deepEqual(arr(x.long()), [-1, 0, 0, 0, 2]);
    assert.deepEqual(arr(x.to('bool')), [1, 1, 0, 1, 1]);
    assert.deepEqual(arr(x.to('uint8').to('int32')), arr(x.to('uint8')).map((v) => v));
    const d = x.to('float64');
    assert.equal(d.dtype, 'float64');
    close(arr(d), [-1.7, -0.5, 0, 0.5, 2.9], 1e-7);
    assert.equal(d.float().dtype, 'float32');
    const h = x.to('float16');
    assert.equal(h.dtype, 'float16');
    close(arr(h), [-1.7, -0.5, 0, 0.5, 2.9], 1e-3);
    assert.equal(x.to(null).dtype, 'float32');
    assert.equal(x.to(null, 'cpu').device, 'cpu');
    // type promotion: int + float -> float, int / int -> float (true division)
    const i = T.tensor([1, 2, 3], { dtype: 'int64' });
    assert.equal(i.add(T.tensor([0.5, 0.5, 0.5])).dtype, 'float32');
    assert.equal(i.add(1).dtype, 'int64');
    assert.equal(i.add(0.5).dtype, 'float32');
    assert.deepEqual(arr(i.div(2)), [0.5, 1, 1.5]);
    assert.equal(i.eq(2).dtype, 'bool');
    assert.deepEqual(arr(i.eq(2)), [0, 1, 0]);
  });
});

test('elementwise ops and broadcasting', () => {
  T.tidy(() => {
    const a = T.tensor([[1], [2], [3]]); // [3,1]
    const b = T.tensor([10, 20]); // [2]
    const s = a.add(b);
    assert.deepEqual(s.shape, [3, 2]);
    assert.deepEqual(arr(s), [11, 21, 12, 22, 13, 23]);
    assert.deepEqual(arr(a.mul(b)), [10, 20, 20, 40, 30, 60]);
    assert.deepEqual(arr(b.sub(a)), [9, 19, 8, 18, 7, 17]);
    assert.deepEqual(arr(b.div(a)), [10, 20, 5, 10, 10 / 3, 20 / 3].map(Math.fround));
    assert.deepEqual(arr(a.add(b, 2)), [21, 41, 22, 42, 23, 43]);
    assert.deepEqual(arr(a.rsub(1)), [0, -1, -2]);
    assert.deepEqual(arr(a.pow(2)), [1, 4, 9]);
    assert.deepEqual(arr(T.tensor([-3, 3]).remainder(2)), [1, 1]); // Python semantics
    assert.throws(() => T.ones([2, 3]).add(T.ones([4])), /add/);
    const x = T.tensor([-2, -0.5, 0, 1.5]);
    assert.deepEqual(arr(x.abs()), [2, 0.5, 0, 1.5]);
    assert.deepEqual(arr(x.relu()), [0, 0, 0, 1.5]);
    assert.deepEqual(arr(x.sign()), [-1, -1, 0, 1]);
    assert.deepEqual(arr(x.neg()), [2, 0.5, -0, -1.5]);
    assert.deepEqual(arr(x.clamp(-1, 1)), [-1, -0.5, 0, 1]);
    assert.deepEqual(arr(x.clampMin(0.25)), [0.25, 0.25, 0.25, 1.5]);
    assert.deepEqual(arr(x.clamp(null, 0)), [-2, -0.5, 0, 0]);
    assert.deepEqual(arr(x.floor()), [-2, -1, 0, 1]);
    assert.deepEqual(arr(x.ceil()), [-2, -0, 0, 2]);
    assert.deepEqual(arr(T.tensor([0.5, 1.5, 2.5, -0.5]).round()), [0, 2, 2, -0]); // half to even
    close(arr(x.exp()), [-2, -0.5, 0, 1.5].map(Math.exp));
    close(arr(T.tensor([1, 4, 9]).sqrt()), [1, 2, 3]);
    close(arr(T.tensor([1, 4]).rsqrt()), [1, 0.5]);
    close(arr(T.tensor([1, Math.E]).log()), [0, 1]);
    close(arr(x.tanh()), [-2, -0.5, 0, 1.5].map(Math.tanh));
    close(arr(x.sigmoid()), [-2, -0.5, 0, 1.5].map((v) => 1 / (1 + Math.exp(-v))));
    close(arr(x.silu()), [-2, -0.5, 0, 1.5].map((v) => v / (1 + Math.exp(-v))));
    close(arr(x.square()), [4, 0.25, 0, 2.25]);
    assert.deepEqual(arr(T.tensor([NaN, 1, Infinity]).isnan()), [1, 0, 0]);
    assert.deepEqual(arr(T.tensor([NaN, 1, Infinity]).isfinite()), [0, 1, 0]);
    assert.deepEqual(arr(T.tensor([1, 5]).maximum(T.tensor([3, 2]))), [3, 5]);
    assert.deepEqual(arr(T.tensor([1, 5]).minimum(T.tensor([3, 2]))), [1, 2]);
    const m = T.tensor([1, 0, 1], { dtype: 'bool' });
    assert.deepEqual(arr(T.where(m, T.tensor([1, 2, 3]), 0)), [1, 0, 3]);
    assert.deepEqual(arr(T.where(m, -1, T.tensor([[5, 6, 7]]))), [-1, 6, -1]);
    assert.deepEqual(arr(m.logicalNot()), [0, 1, 0]);
    assert.deepEqual(arr(m.logicalAnd(T.tensor([1, 1, 0], { dtype: 'bool' }))), [1, 0, 0]);
    assert.deepEqual(arr(x.gt(0)), [0, 0, 0, 1]);
    assert.deepEqual(arr(x.le(T.tensor([-2, -1, 1, 1]))), [1, 0, 1, 0]);
  });
});

test('reductions', () => {
  T.tidy(() => {
    const x = T.tensor([[1, 2, 3], [4, 5, 9]]);
    assert.equal(x.sum().item(), 24);
    assert.deepEqual(x.sum().shape, []);
    assert.deepEqual(arr(x.sum(0)), [5, 7, 12]);
    assert.deepEqual(arr(x.sum(1)), [6, 18]);
    assert.deepEqual(x.sum(1, true).shape, [2, 1]);
    assert.deepEqual(arr(x.sum([0, 1])), [24]);
    assert.deepEqual(arr(x.sum(-1)), [6, 18]);
    assert.equal(x.mean().item(), 4);
    assert.deepEqual(arr(x.mean(0)), [2.5, 3.5, 6]);
    // var / std with correction 0 (population) and 1 (sample)
    close(arr(x.var(1, { correction: 0 })), [2 / 3, 14 / 3]);
    close(arr(x.var(1)), [1, 7]);
    close(arr(x.std(1, { correction: 1 })), [1, Math.sqrt(7)]);
    close([x.var().item()], [(1 + 4 + 9 + 16 + 25 + 81 - 24 * 24 / 6) / 5]);
    close([x.std(null, { correction: 0 }).item()], [Math.sqrt((1 + 4 + 9 + 16 + 25 + 81) / 6 - 16)]);
    assert.deepEqual(x.var(0, { keepdim: true }).shape, [1, 3]);
    assert.equal(x.max().item(), 9);
    assert.equal(x.min().item(), 1);
    const md = x.maxDim(1);
    assert.deepEqual(arr(md.values), [3, 9]);
    assert.deepEqual(arr(md.indices), [2, 2]);
    assert.equal(md.indices.dtype, 'int64');
    assert.deepEqual(arr(x.minDim(0, true).values), [1, 2, 3]);
    assert.deepEqual(x.minDim(0, true).values.shape, [1, 3]);
    assert.equal(x.argmax().item(), 5);
    assert.deepEqual(arr(x.argmin(1)), [0, 0]);
    close(arr(x.logsumexp(1)), [Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3)), Math.log(Math.exp(4) + Math.exp(5) + Math.exp(9))]);
    close([x.norm().item()], [Math.sqrt(1 + 4 + 9 + 16 + 25 + 81)]);
    close(arr(x.norm(1, 1)), [6, 18]);
    assert.deepEqual(arr(x.cumsum(1)), [1, 3, 6, 4, 9, 18]);
    assert.equal(x.gt(0).all().item(), 1);
    assert.equal(x.gt(8).any().item(), 1);
    assert.equal(x.gt(9).any().item(), 0);
    const srt = T.tensor([3, 1, 2]).sort();
    assert.deepEqual(arr(srt.values), [1, 2, 3]);
    assert.deepEqual(arr(srt.indices), [1, 2, 0]);
    assert.deepEqual(arr(T.tensor([3, 1, 2]).sort(-1, true).values), [3, 2, 1]);
    const tk = T.tensor([5, 1, 7, 3]).topk(2);
    assert.deepEqual(arr(tk.values), [7, 5]);
    assert.deepEqual(arr(tk.indices), [2, 0]);
    assert.deepEqual(arr(T.tensor([5, 1, 7, 3]).topk(2, -1, false).values), [1, 3]);
    // empty reductions follow PyTorch: sum of nothing is 0, mean of nothing is NaN
    assert.equal(T.zeros([0]).sum().item(), 0);
    assert.ok(Number.isNaN(T.zeros([0]).mean().item()));
  });
});

test('linear algebra: matmul, mm, bmm, t, diag, triu/tril', () => {
  T.tidy(() => {
    const a = T.tensor([[1, 2], [3, 4]]);
    const b = T.tensor([[5, 6], [7, 8]]);
    assert.deepEqual(arr(a.matmul(b)), [19, 22, 43, 50]);
    assert.deepEqual(arr(a.mm(b)), [19, 22, 43, 50]);
    assert.deepEqual(arr(a.matmul(T.tensor([1, 1]))), [3, 7]);
    assert.deepEqual(arr(a.t()), [1, 3, 2, 4]);
    const bb = T.stack([a, b]);
    assert.deepEqual(arr(bb.bmm(bb)), [7, 10, 15, 22, 67, 78, 91, 106]);
    // broadcasting batched matmul: [2,1,2,2] @ [3,2,2] -> [2,3,2,2]
    assert.deepEqual(T.ones([2, 1, 2, 2]).matmul(T.ones([3, 2, 2])).shape, [2, 3, 2, 2]);
    assert.deepEqual(arr(a.diag()), [1, 4]);
    assert.deepEqual(arr(T.tensor([1, 2]).diag()), [1, 0, 0, 2]);
    assert.deepEqual(arr(a.diagonal()), [1, 4]);
    assert.deepEqual(arr(a.triu()), [1, 2, 0, 4]);
    assert.deepEqual(arr(a.tril(-1)), [0, 0, 3, 0]);
  });
});

test('views and indexing', () => {
  T.tidy(() => {
    const x = T.arange(24).reshape([2, 3, 4]);
    assert.deepEqual(x.shape, [2, 3, 4]);
    assert.deepEqual(x.reshape([-1, 4]).shape, [6, 4]);
    assert.deepEqual(x.view([4, 6]).shape, [4, 6]);
    assert.deepEqual(x.flatten().shape, [24]);
    assert.deepEqual(x.flatten(1).shape, [2, 12]);
    const p = x.permute([2, 0, 1]);
    assert.deepEqual(p.shape, [4, 2, 3]);
    assert.deepEqual(arr(p.select(0, 1)), [1, 5, 9, 13, 17, 21]);
    assert.throws(() => p.view([24]), /view/); // non-contiguous
    assert.deepEqual(arr(p.contiguous().view([24])).slice(0, 6), [0, 4, 8, 12, 16, 20]);
    assert.deepEqual(arr(p.reshape([24])).slice(0, 6), [0, 4, 8, 12, 16, 20]);
    const tr = x.transpose(1, 2);
    assert.deepEqual(tr.shape, [2, 4, 3]);
    assert.deepEqual(arr(tr.select(0, 0).select(0, 1)), [1, 5, 9]);
    // slicing with step, negative start, clamped end
    assert.deepEqual(arr(T.arange(10).slice(0, 1, 8, 3)), [1, 4, 7]);
    assert.deepEqual(arr(T.arange(10).slice(0, -3)), [7, 8, 9]);
    assert.deepEqual(arr(T.arange(10).slice(0, 8, 100)), [8, 9]);
    assert.deepEqual(arr(x.slice(2, 0, 4, 2).select(0, 1).select(0, 0)), [12, 14]);
    assert.deepEqual(arr(T.arange(10).narrow(0, 2, 3)), [2, 3, 4]);
    assert.deepEqual(arr(x.select(1, -1).select(0, 0)), [8, 9, 10, 11]);
    assert.deepEqual(x.unsqueeze(0).shape, [1, 2, 3, 4]);
    assert.deepEqual(x.unsqueeze(-1).shape, [2, 3, 4, 1]);
    assert.deepEqual(T.zeros([1, 3, 1]).squeeze().shape, [3]);
    assert.deepEqual(T.zeros([1, 3, 1]).squeeze(0).shape, [3, 1]);
    // views share storage: writing through a view changes the base
    const base = T.zeros([2, 3]);
    T.noGrad(() => base.select(0, 1).fill_(5));
    assert.deepEqual(arr(base), [0, 0, 0, 5, 5, 5]);

    const v = T.tensor([10, 20, 30, 40]);
    assert.deepEqual(arr(v.indexSelect(0, T.tensor([3, 0, 0], { dtype: 'int64' }))), [40, 10, 10]);
    const g = T.tensor([[1, 2], [3, 4]]);
    assert.deepEqual(arr(g.gather(1, T.tensor([[0, 0], [1, 0]], { dtype: 'int64' }))), [1, 1, 4, 3]);
    assert.deepEqual(arr(T.zeros([2, 3]).scatter(1, T.tensor([[2], [0]], { dtype: 'int64' }), T.tensor([[7], [8]]))), [0, 0, 7, 8, 0, 0]);
    assert.deepEqual(arr(T.zeros([3]).scatterAdd(0, T.tensor([0, 0, 2], { dtype: 'int64' }), T.tensor([1, 2, 3]))), [3, 0, 3]);
    assert.deepEqual(arr(T.zeros([3]).indexAdd(0, T.tensor([2, 2], { dtype: 'int64' }), T.tensor([1, 4]))), [0, 0, 5]);
    assert.deepEqual(arr(T.cat([T.tensor([[1, 2]]), T.tensor([[3, 4], [5, 6]])])), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(T.cat([T.ones([2, 1]), T.zeros([2, 3])], 1).shape, [2, 4]);
    assert.deepEqual(T.cat([T.ones([2, 1]), T.zeros([2, 3])], -1).shape, [2, 4]);
    const st = T.stack([T.tensor([1, 2]), T.tensor([3, 4])], 1);
    assert.deepEqual(st.shape, [2, 2]);
    assert.deepEqual(arr(st), [1, 3, 2, 4]);
    const parts = T.arange(7).split(3);
    assert.deepEqual(parts.map((t) => arr(t)), [[0, 1, 2], [3, 4, 5], [6]]);
    const ch = T.arange(6).reshape([2, 3]).chunk(3, 1);
    assert.equal(ch.length, 3);
    assert.deepEqual(ch.map((t) => arr(t)), [[0, 3], [1, 4], [2, 5]]);
    const e = T.tensor([[1], [2]]).expand([2, 3]);
    assert.deepEqual(arr(e), [1, 1, 1, 2, 2, 2]);
    assert.deepEqual(T.tensor([1, 2]).expand([4, -1]).shape, [4, 2]);
    assert.deepEqual(T.ones([3, 1]).expandAs(T.zeros([3, 5])).shape, [3, 5]);
    assert.deepEqual(arr(T.tensor([1, 2]).repeat([2, 2])), [1, 2, 1, 2, 1, 2, 1, 2]);
    assert.deepEqual(arr(T.tensor([1, 2]).repeatInterleave(2, 0)), [1, 1, 2, 2]);
    const mf = T.tensor([1, 2, 3]).maskedFill(T.tensor([0, 1, 0], { dtype: 'bool' }), -1);
    assert.deepEqual(arr(mf), [1, -1, 3]);
    assert.deepEqual(arr(T.tensor([[1, 2], [3, 4]]).maskedFill(T.tensor([1, 0], { dtype: 'bool' }), 0)), [0, 2, 0, 4]); // broadcast mask
    assert.deepEqual(arr(T.tensor([1, 2, 3]).maskedSelect(T.tensor([1, 0, 1], { dtype: 'bool' }))), [1, 3]);
    // index with a bool tensor and an int tensor (dim 0)
    const rows = T.tensor([[1, 2], [3, 4], [5, 6]]);
    assert.deepEqual(arr(rows.index(T.tensor([1, 0, 1], { dtype: 'bool' }))), [1, 2, 5, 6]);
    assert.deepEqual(arr(rows.index(T.tensor([2, -3], { dtype: 'int64' }))), [5, 6, 1, 2]);
    assert.deepEqual(rows.index(T.tensor([2, 0], { dtype: 'int64' })).shape, [2, 2]);
    assert.deepEqual(arr(T.tensor([0, 3, 0, 4]).nonzero()), [1, 3]);
    assert.deepEqual(arr(T.tensor([1, 2, 3]).flip([0])), [3, 2, 1]);
    assert.deepEqual(arr(T.tensor([1, 2, 3]).roll([1], [0])), [3, 1, 2]);
    assert.deepEqual(arr(T.tensor([2, 0], { dtype: 'int64' }).oneHot(3)), [0, 0, 1, 1, 0, 0]);
    assert.deepEqual(arr(T.tensor([[1, 2]]).pad([1, 0], 9)), [9, 1, 2]);
    assert.deepEqual(T.tensor([[1, 2]]).pad([1, 1, 2, 0]).shape, [3, 4]);
  });
});

test('in-place ops mutate and return this', () => {
  T.tidy(() => {
    const x = T.tensor([1, 2, 3]);
    assert.equal(x.add_(1), x);
    assert.deepEqual(arr(x), [2, 3, 4]);
    x.add_(T.tensor([1, 1, 1]), 2);
    assert.deepEqual(arr(x), [4, 5, 6]);
    x.sub_(T.tensor([1, 1, 1])).mul_(2).div_(T.tensor([2, 2, 4]));
    assert.deepEqual(arr(x), [3, 4, 2.5]);
    x.addcmul_(T.tensor([1, 2, 3]), T.tensor([1, 1, 2]), 0.5);
    assert.deepEqual(arr(x), [3.5, 5, 5.5]);
    x.addcdiv_(T.tensor([1, 1, 1]), T.tensor([2, 4, 1]), 2);
    assert.deepEqual(arr(x), [4.5, 5.5, 7.5]);
    x.lerp_(T.tensor([0, 0, 0]), 0.5);
    assert.deepEqual(arr(x), [2.25, 2.75, 3.75]);
    x.clamp_(2.5, 3.5);
    assert.deepEqual(arr(x), [2.5, 2.75, 3.5]);
    x.copy_(T.tensor([4, 9, 16]));
    x.sqrt_();
    assert.deepEqual(arr(x), [2, 3, 4]);
    x.maskedFill_(T.tensor([1, 0, 0], { dtype: 'bool' }), 0);
    assert.deepEqual(arr(x), [0, 3, 4]);
    x.fill_(7);
    assert.deepEqual(arr(x), [7, 7, 7]);
    x.zero_();
    assert.deepEqual(arr(x), [0, 0, 0]);
    // copy_ broadcasts and converts dtype
    const y = T.zeros([2, 2], { dtype: 'int64' });
    y.copy_(T.tensor([1.9, 2.1]));
    assert.deepEqual(arr(y), [1, 2, 1, 2]);
    // in-place on a leaf that requires grad is refused outside noGrad, allowed inside
    const w = T.ones([2], { requiresGrad: true });
    assert.throws(() => w.add_(1), /add_.*leaf Variable that requires grad/s);
    T.noGrad(() => w.add_(1));
    assert.deepEqual(arr(w), [2, 2]);
    assert.ok(w.requiresGrad);
    // uniform_/normal_ fill in place with a seeded generator
    const u = T.zeros([1000]).uniform_(2, 3, new T.Generator(0));
    assert.ok(u.min().item() >= 2 && u.max().item() < 3);
    const nrm = T.zeros([4000]).normal_(5, 2, new T.Generator(0));
    assert.ok(Math.abs(nrm.mean().item() - 5) < 0.15);
    assert.ok(Math.abs(nrm.std().item() - 2) < 0.15);
  });
});

test('autograd: backward, grad, detach, noGrad, requiresGrad_, grad reset', () => {
  T.tidy(() => {
    const x = T.tensor([1, 2, 3], { requiresGrad: true });
    assert.ok(x.requiresGrad && x.isLeaf);
    assert.equal(x.grad, undefined);
    const y = x.mul(x).sum(); // d/dx = 2x
    assert.ok(y.requiresGrad && !y.isLeaf);
    y.backward();
    assert.deepEqual(arr(x.grad!), [2, 4, 6]);
    // gradients accumulate
    x.mul(3).sum().backward();
    assert.deepEqual(arr(x.grad!), [5, 7, 9]);
    // grad is a view of the accumulated buffer: zeroing it in place is seen by the next read
    x.grad!.zero_();
    assert.deepEqual(arr(x.grad!), [0, 0, 0]);
    // setting grad undefined clears it; the next backward starts from scratch
    x.grad = undefined;
    assert.equal(x.grad, undefined);
    x.sum().backward();
    assert.deepEqual(arr(x.grad!), [1, 1, 1]);
    x.grad = T.full([3], 0.5);
    assert.deepEqual(arr(x.grad!), [0.5, 0.5, 0.5]);
    assert.throws(() => { x.grad = T.zeros([2]); }, /setGrad.*different size/);
    // backward with an explicit gradient for a non-scalar output, and retainGraph
    x.grad = undefined;
    const z = x.mul(T.tensor([1, 10, 100]));
    z.backward(T.tensor([1, 1, 2]), true);
    assert.deepEqual(arr(x.grad!), [1, 10, 200]);
    z.backward(T.tensor([1, 0, 0]));
    assert.deepEqual(arr(x.grad!), [2, 10, 200]);
    assert.throws(() => z.backward(T.tensor([1, 0, 0])), /backward/); // graph freed
    assert.throws(() => x.mul(2).backward(), /backward.*grad can be implicitly created only for scalar outputs/);
    // detach cuts the graph but shares data
    const d = x.detach();
    assert.ok(!d.requiresGrad && d.isLeaf);
    assert.deepEqual(arr(d), [1, 2, 3]);
    // noGrad: nothing is recorded; enableGrad re-enables inside
    assert.ok(T.isGradEnabled());
    const n = T.noGrad(() => {
      assert.ok(!T.isGradEnabled());
      const inner = T.enableGrad(() => x.mul(2));
      assert.ok(inner.requiresGrad);
      return x.mul(2);
    });
    assert.ok(T.isGradEnabled());
    assert.ok(!n.requiresGrad);
    // noGrad restores the mode even when fn throws
    assert.throws(() => T.noGrad(() => { throw new Error('boom'); }), /boom/);
    assert.ok(T.isGradEnabled());
    // requiresGrad_ on and off
    const w = T.tensor([2, 3]);
    assert.ok(!w.requiresGrad);
    w.requiresGrad_();
    assert.ok(w.requiresGrad);
    w.mul(w).sum().backward();
    assert.deepEqual(arr(w.grad!), [4, 6]);
    w.requiresGrad_(false);
    assert.ok(!w.mul(w).requiresGrad);
    assert.throws(() => T.tensor([1]).requiresGrad_(true).to('int64').requiresGrad_(true), /requiresGrad_.*floating point/);
    // chain rule through a few ops: f = sum(sigmoid(a @ b)), check against hand derivative
    const a = T.tensor([[0.5, -1]], { requiresGrad: true });
    const b = T.tensor([[2], [1]], { requiresGrad: true });
    a.matmul(b).sigmoid().sum().backward();
    const s = 1 / (1 + Math.exp(-(0.5 * 2 - 1)));
    close(arr(a.grad!), [s * (1 - s) * 2, s * (1 - s) * 1]);
    close(arr(b.grad!), [s * (1 - s) * 0.5, s * (1 - s) * -1]);
  });
});

test('seeded generators: determinism, getState/setState, global manualSeed, parity with torch', () => {
  T.tidy(() => {
    const g1 = new T.Generator(42), g2 = new T.Generator(42);
    const a = T.randn([5], { generator: g1 }), b = T.randn([5], { generator: g2 });
    assert.deepEqual(arr(a), arr(b));
    assert.notDeepEqual(arr(T.randn([5], { generator: new T.Generator(43) })), arr(a));
    // getState / setState replays the stream
    const g = new T.Generator(7);
    T.rand([3], { generator: g });
    const state = g.getState();
    assert.equal(state.dtype, 'uint8');
    const r1 = arr(T.randn([4], { generator: g }));
    const i1 = arr(T.randint(0, 100, [6], { generator: g }));
    const p1 = arr(T.randperm(8, { generator: g }));
    g.setState(state);
    assert.deepEqual(arr(T.randn([4], { generator: g })), r1);
    assert.deepEqual(arr(T.randint(0, 100, [6], { generator: g })), i1);
    assert.deepEqual(arr(T.randperm(8, { generator: g })), p1);
    assert.deepEqual([...p1].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.ok(i1.every((v) => Number.isInteger(v) && v >= 0 && v < 100));
    // global seed (creators without a generator, dropout)
    T.manualSeed(123);
    const ga = arr(T.rand([4]));
    const da = arr(T.F.dropout(T.ones([64]), 0.5, true));
    T.manualSeed(123);
    assert.deepEqual(arr(T.rand([4])), ga);
    assert.deepEqual(arr(T.F.dropout(T.ones([64]), 0.5, true)), da);
    assert.ok(da.every((v) => v === 0 || v === 2));
    assert.deepEqual(arr(T.F.dropout(T.ones([4]), 0.5, false)), [1, 1, 1, 1]);
    const dg = T.Generator.default();
    T.manualSeed(5);
    const viaDefault = arr(T.randn([3], { generator: dg }));
    T.manualSeed(5);
    assert.deepEqual(arr(T.randn([3])), viaDefault);

    // same streams as PyTorch (same libtorch): torch.Generator().manual_seed(s)
    const ours = {
      randn: T.randn([3, 7], { generator: new T.Generator(1) }),
      rand: T.rand([20], { generator: new T.Generator(2) }),
      randint: T.randint(0, 10, [12], { generator: new T.Generator(3) }),
      randperm: T.randperm(10, { generator: new T.Generator(4) }),
    };
    const ref = runTorch(`
def G(s):
    return torch.Generator().manual_seed(s)
out['randn'] = torch.randn(3, 7, generator=G(1))
out['rand'] = torch.rand(20, generator=G(2))
out['randint'] = torch.randint(0, 10, (12,), generator=G(3))
out['randperm'] = torch.randperm(10, generator=G(4))
`, {});
    for (const [k, t] of Object.entries(ours)) {
      assert.deepEqual(t.shape, ref[k]!.shape, k);
      assert.equal(maxAbsDiff(t, ref[k]!), 0, `${k} differs from torch`);
      ref[k]!.dispose();
    }
  });
});

test('thread control: setNumThreads / getNumThreads', () => {
  const before = T.getNumThreads();
  assert.ok(Number.isInteger(before) && before >= 1);
  try {
    T.setNumThreads(1);
    assert.equal(T.getNumThreads(), 1);
    assert.match(T.parallelInfo(), /get_num_threads\(\) : 1/);
    T.setNumThreads(3);
    assert.equal(T.getNumThreads(), 3);
    // results do not depend on the thread count
    const x = T.randn([300, 200], { generator: new T.Generator(0) });
    const y3 = x.matmul(x.t()).sum(1);
    T.setNumThreads(1);
    const y1 = x.matmul(x.t()).sum(1);
    assert.ok(maxAbsDiff(y1, y3) < 1e-3);
    for (const t of [x, y1, y3]) t.dispose();
    assert.throws(() => T.setNumThreads(0), RangeError);
    assert.throws(() => T.setNumThreads(1.5), RangeError);
    assert.throws(() => T.setNumThreads(1e6), /setNumThreads.*thread count/);
  } finally {
    T.setNumThreads(before);
  }
  assert.equal(T.getNumThreads(), before);
});

test('safetensors round trip: float32, int64, bfloat16 (and more)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cjepa-ops-'));
  try {
    T.tidy(() => {
      const f32 = T.randn([3, 4], { generator: new T.Generator(9) });
      const i64 = T.tensor(new BigInt64Array([-(2n ** 62n), 0n, 9007199254740993n]));
      const bf16 = T.tensor([1.5, -2.25, 3.140625, 1e-3]).to('bfloat16');
      const f64 = T.tensor([Math.PI], { dtype: 'float64' });
      const u8 = T.tensor([0, 255, 7], { dtype: 'uint8' });
      const bl = T.tensor([1, 0, 1], { dtype: 'bool' });
      const scalar = T.tensor(2.5);
      const emptyT = T.zeros([0, 3]);
      const path = join(dir, 'x.safetensors');
      saveTensors(path, { f32, i64, bf16, f64, u8, bl, scalar, emptyT }, { note: 'hello' });
      const { tensors, metadata } = loadTensors(path);
      assert.deepEqual(metadata, { note: 'hello' });
      const check = (name: string, orig: T.Tensor) => {
        const got = tensors[name]!;
        assert.equal(got.dtype, orig.dtype, name);
        assert.deepEqual(got.shape, orig.shape, name);
        assert.deepEqual(Array.from(got.data<T.DType>() as ArrayLike<unknown>), Array.from(orig.data<T.DType>() as ArrayLike<unknown>), name);
      };
      check('f32', f32); check('i64', i64); check('bf16', bf16); check('f64', f64);
      check('u8', u8); check('bl', bl); check('scalar', scalar); check('emptyT', emptyT);
      assert.equal((tensors['i64']!.data<'int64'>())[2], 9007199254740993n);
      assert.deepEqual(arr(tensors['bf16']!), [1.5, -2.25, 3.140625, 0.00099945068359375]);
      for (const t of Object.values(tensors)) t.dispose();
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('values agree with PyTorch on a batch of ops', () => {
  T.tidy(() => {
    const g = new T.Generator(11);
    const x = T.randn([4, 5], { generator: g });
    const y = T.randn([5], { generator: g });
    const idx = T.tensor([[0, 4, 1], [2, 2, 3], [1, 0, 0], [3, 4, 2]], { dtype: 'int64' });
    const ours: Record<string, T.Tensor> = {
      bcast: x.mul(y).sub(y.unsqueeze(0).div(3)),
      var1: x.var(1), std0: x.std(0, { correction: 0 }), lse: x.logsumexp([0, 1]),
      gather: x.gather(1, idx), cumsum: x.cumsum(0), norm3: x.norm(3, 1),
      permuted: x.reshape([2, 2, 5]).permute([2, 0, 1]).contiguous(),
      sliced: x.slice(1, 1, 5, 2), interp: T.F.interpolate(x.reshape([1, 1, 4, 5]), [7, 3]),
      bicubic: T.F.interpolate(x.reshape([1, 1, 4, 5]), [6, 6], 'bicubic', true),
      pool: T.F.avgPool2d(x.reshape([1, 1, 4, 5]), [2, 2]), apool: T.F.adaptiveAvgPool2d(x.reshape([1, 1, 4, 5]), [3, 2]),
      l1: T.F.l1Loss(x, y.expand([4, 5])), nll: T.F.nllLoss(T.F.logSoftmax(x, 1), T.tensor([0, 4, 2, 1], { dtype: 'int64' })),
      bn: T.F.batchNorm(x, null, null, { training: true }),
    };
    const ref = runTorch(`
F = torch.nn.functional
x, y, idx = inp['x'], inp['y'], inp['idx']
out['bcast'] = x * y - y.unsqueeze(0) / 3
out['var1'] = x.var(1)
out['std0'] = x.std(0, unbiased=False)
out['lse'] = torch.logsumexp(x, (0, 1))
out['gather'] = x.gather(1, idx)
out['cumsum'] = x.cumsum(0)
out['norm3'] = torch.linalg.vector_norm(x, 3, dim=1)
out['permuted'] = x.reshape(2, 2, 5).permute(2, 0, 1).contiguous()
out['sliced'] = x[:, 1:5:2]
out['interp'] = F.interpolate(x.reshape(1, 1, 4, 5), size=(7, 3), mode='bilinear', align_corners=False)
out['bicubic'] = F.interpolate(x.reshape(1, 1, 4, 5), size=(6, 6), mode='bicubic', align_corners=True)
out['pool'] = F.avg_pool2d(x.reshape(1, 1, 4, 5), 2)
out['apool'] = F.adaptive_avg_pool2d(x.reshape(1, 1, 4, 5), (3, 2))
out['l1'] = F.l1_loss(x, y.expand(4, 5))
out['nll'] = F.nll_loss(F.log_softmax(x, 1), torch.tensor([0, 4, 2, 1]))
out['bn'] = F.batch_norm(x, None, None, training=True)
${KEEP_0D}
`, { x, y, idx });
    for (const [k, t] of Object.entries(ours)) {
      assert.deepEqual(t.shape.length ? t.shape : [1], ref[k]!.shape, k);
      assert.ok(maxAbsDiff(t, ref[k]!) < 1e-5, `${k}: max abs diff ${maxAbsDiff(t, ref[k]!)}`);
      ref[k]!.dispose();
    }
  });
});
