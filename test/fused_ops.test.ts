// The fused kernels of native/fused.cc against the stock libtorch ops and PyTorch: GELU and scaled
// softmax forward and backward (fp32 within 1e-6 absolute, bf16 within one bf16 rounding step), AdamW and EMA over
// parameter lists (within 2^-22 relative, one float rounding, of the op sequence they replace: ATen's scalar tail loop
// contracts v + c g g into an FMA where its vector body does not). Numeric only, no timing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { F } from '../src/tensor/index.js';
import { runTorch, maxAbsDiff } from './util/pytorch.js';
import { native } from '../src/tensor/native.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const gen = () => new T.Generator(7);
// a wide range (tails where erf saturates, the region around 0) and a size that is not a multiple of the vector width
const input = (dtype: 'float32' | 'bfloat16') => T.randn([37, 129], { generator: gen() }).mul(4).to(dtype);

/** GELU value and input gradient for upstream gradient g, by `fn`. */
function geluAndGrad(fn: (x: T.Tensor) => T.Tensor, x0: T.Tensor, g: T.Tensor): [T.Tensor, T.Tensor] {
  const x = x0.detach().requiresGrad_(true);
  const y = fn(x);
  y.backward(g);
  return [y.detach(), x.grad!];
}

test('fused GELU (fp32): forward and backward within 1e-6 of libtorch gelu and of PyTorch nn.GELU()', () => {
  const x = input('float32');
  const g = T.randn([37, 129], { generator: new T.Generator(8) });
  const [y, dx] = geluAndGrad((t) => F.fusedGelu(t), x, g);
  const [ys, dxs] = geluAndGrad((t) => t.gelu(), x, g);
  assert.ok(maxAbsDiff(y, ys) < 1e-6, `forward ${maxAbsDiff(y, ys)}`);
  assert.ok(maxAbsDiff(dx, dxs) < 2e-6, `backward ${maxAbsDiff(dx, dxs)}`);  // |g| up to ~4
  const ref = runTorch([
    'x = inp["x"].clone().requires_grad_(True)',
    'y = torch.nn.GELU()(x)',
    'y.backward(inp["g"])',
    'out["y"] = y.detach(); out["dx"] = x.grad',
  ].join('\n'), { x, g });
  assert.ok(maxAbsDiff(y, ref['y']!) < 1e-6, `forward vs PyTorch ${maxAbsDiff(y, ref['y']!)}`);
  assert.ok(maxAbsDiff(dx, ref['dx']!) < 2e-6, `backward vs PyTorch ${maxAbsDiff(dx, ref['dx']!)}`);
});

test('bf16 GELU by table: the forward is libtorch fp32 gelu rounded once, bit for bit; the backward rounds the same fp32 product', () => {
  // 200,000 values over the whole useful range, tails and the region around 0 included
  const x = T.randn([200_000], { generator: new T.Generator(11) }).mul(6).to('bfloat16');
  const g = T.randn([200_000], { generator: new T.Generator(12) }).to('bfloat16');
  const [y, dx] = geluAndGrad((t) => F.fusedGelu(t), x, g);
  // The references compute in fp32 and round once, not libtorch's bf16 kernels: on CPUs without AVX-512 those work
  // in bf16: the forward is 0 for gelu(-3.1) = -0.0029, the backward flips sign near x = -0.75 (measured on a Zen 3).
  const yRef = x.float().gelu().to('bfloat16');
  assert.equal(maxAbsDiff(y.float(), yRef.float()), 0, 'forward: a lookup in at::gelu fp32 outputs, rounded once');
  // the table holds ATen's fp32 derivative: g * derivative in fp32, rounded once, as gelu_backward in fp32 computes it
  const [, dx32] = geluAndGrad((t) => t.gelu(), x.float(), g.float());
  const ref = dx32.to('bfloat16');
  const differs = T.tidy(() => dx.float().ne(ref.float()).float().sum().item());
  assert.ok(differs <= 200, `backward: ${differs} of 200,000 elements differ from fp32 gelu_backward rounded to bf16`);
  const relStep = T.tidy(() => dx.float().sub(ref.float()).abs().div(ref.float().abs().add(1e-3)).max().item());
  assert.ok(relStep <= 2 ** -8 + 1e-6, `backward within one bf16 step: ${relStep}`);
});

/** g * GELU'(x) computed in float64 (libtorch's float64 gelu backward), for bf16 inputs. */
function float64GeluGrad(x: T.Tensor, g: T.Tensor): T.Tensor {
  const [, dx] = geluAndGrad((t) => t.gelu(), x.to('float64'), g.to('float64'));
  return dx;
}

test('fused GELU (bf16): forward and backward within one bf16 rounding of the float64 GELU, dtype kept', () => {
  const x = input('bfloat16');
  const g = T.randn([37, 129], { generator: new T.Generator(8) }).to('bfloat16');
  const [y, dx] = geluAndGrad((t) => F.fusedGelu(t), x, g);
  assert.equal(y.dtype, 'bfloat16');
  assert.equal(dx.dtype, 'bfloat16');
  // ours computes in fp32 and rounds once to bf16: at most one bf16 step (2^-8 relative) from the exact values
  const relStep = (a: T.Tensor, b: T.Tensor) => T.tidy(() => a.float().sub(b.float()).abs().div(b.float().abs().add(1e-3)).max().item());
  const yRef = x.to('float64').gelu();
  assert.ok(relStep(y, yRef) <= 2 ** -8 + 1e-6, `forward ${relStep(y, yRef)}`);
  const dxRef = float64GeluGrad(x, g);
  assert.ok(relStep(dx, dxRef) <= 2 ** -8 + 1e-6, `backward ${relStep(dx, dxRef)}`);
});

test('fused GELU: non-contiguous input, empty input, other dtypes fall back to libtorch', () => {
  const x = input('float32');
  assert.ok(maxAbsDiff(F.fusedGelu(x.t()), x.t().gelu()) < 1e-6);
  assert.deepEqual(F.fusedGelu(T.zeros([0, 3])).shape, [0, 3]);
  const d = x.to('float64');
  assert.equal(maxAbsDiff(F.fusedGelu(d), d.gelu()), 0);
  assert.equal(F.gelu(x, 'tanh').sub(x.gelu('tanh')).abs().max().item(), 0);
});

test('scaled softmax (fp32): forward and backward within 1e-6 of softmax(x * scale) and of PyTorch, odd row lengths', () => {
  for (const L of [64, 34, 20, 7, 1]) {
    const x = T.randn([3, 5, L], { generator: gen() }).mul(6);
    const g = T.randn([3, 5, L], { generator: new T.Generator(9) });
    const [y, dx] = geluAndGrad((t) => F.scaledSoftmax(t, 0.125), x, g);
    const [ys, dxs] = geluAndGrad((t) => F.softmax(t.mul(0.125), -1), x, g);
    assert.ok(maxAbsDiff(y, ys) < 1e-6, `L ${L} forward ${maxAbsDiff(y, ys)}`);
    assert.ok(maxAbsDiff(dx, dxs) < 1e-6, `L ${L} backward ${maxAbsDiff(dx, dxs)}`);
    if (L === 34) {
      const ref = runTorch('x = inp["x"].clone().requires_grad_(True)\ny = ((x * 0.125).softmax(dim=-1))\ny.backward(inp["g"])\nout["y"] = y.detach(); out["dx"] = x.grad', { x, g });
      assert.ok(maxAbsDiff(y, ref['y']!) < 1e-6 && maxAbsDiff(dx, ref['dx']!) < 1e-6, 'vs PyTorch');
    }
  }
});

test('scaled softmax (bf16): within one bf16 rounding of the fp32 softmax of the same bf16 scores, dtype kept', () => {
  const x = T.randn([4, 6, 34], { generator: gen() }).mul(6).to('bfloat16');
  const g = T.randn([4, 6, 34], { generator: new T.Generator(9) }).to('bfloat16');
  const [y, dx] = geluAndGrad((t) => F.scaledSoftmax(t, 0.125), x, g);
  assert.equal(y.dtype, 'bfloat16');
  assert.equal(dx.dtype, 'bfloat16');
  // reference: the same bf16 inputs, computed in fp32 (the stock bf16 path rounds x * scale to bf16 first, so it is further off)
  const [yr, dxr] = geluAndGrad((t) => F.softmax(t.mul(0.125), -1), x.float(), g.float());
  const rel = (a: T.Tensor, b: T.Tensor, floor: number) => T.tidy(() => a.float().sub(b).abs().div(b.abs().add(floor)).max().item());
  assert.ok(rel(y, yr, 1e-6) <= 2 ** -8 + 1e-6, `forward ${rel(y, yr, 1e-6)}`);
  // dx = scale y (g - <g, y>): g and y enter as bf16, so allow a few bf16 roundings against the largest term
  const scaleDx = dxr.abs().max().item();
  assert.ok(maxAbsDiff(dx.float(), dxr) <= 3 * 2 ** -8 * scaleDx, `backward ${maxAbsDiff(dx.float(), dxr)} vs max ${scaleDx}`);
});

test('residual add (fp32 stream + bf16 branch): exact against libtorch add, gradients as libtorch gives them', () => {
  const x = T.randn([3, 5, 7], { generator: gen() });
  const y = T.randn([3, 5, 7], { generator: new T.Generator(9) }).to('bfloat16');
  const g = T.randn([3, 5, 7], { generator: new T.Generator(10) });
  const run = (fn: (a: T.Tensor, b: T.Tensor) => T.Tensor) => {
    const a = x.detach().requiresGrad_(true), b = y.detach().requiresGrad_(true);
    const out = fn(a, b);
    out.backward(g);
    return [out.detach(), a.grad!, b.grad!] as const;
  };
  const [o1, ga1, gb1] = run((a, b) => F.residualAdd(a, b));
  const [o2, ga2, gb2] = run((a, b) => a.add(b));
  assert.equal(o1.dtype, 'float32');
  assert.equal(gb1.dtype, 'bfloat16');
  assert.equal(maxAbsDiff(o1, o2), 0);
  assert.equal(maxAbsDiff(ga1, ga2), 0);
  assert.equal(maxAbsDiff(gb1, gb2), 0);
  assert.equal(maxAbsDiff(F.residualAdd(x, x), x.add(x)), 0);  // same dtypes: the stock add
});

test('LayerNorm into a Linear: bf16 out under autocast within one bf16 rounding of LayerNorm + cast, same gradients; libtorch layer_norm with the fp32 kernel off', () => {
  const x = T.randn([6, 10, 192], { generator: gen() }).mul(2).add(0.5);
  const w = T.randn([192], { generator: new T.Generator(11) }).mul(0.1).add(1), b = T.randn([192], { generator: new T.Generator(12) }).mul(0.1);
  const g = T.randn([6, 10, 192], { generator: new T.Generator(13) }).to('bfloat16');
  const run = (fn: (a: T.Tensor, ww: T.Tensor, bb: T.Tensor) => T.Tensor) => {
    const a = x.detach().requiresGrad_(true), ww = w.detach().requiresGrad_(true), bb = b.detach().requiresGrad_(true);
    const out = fn(a, ww, bb);
    out.backward(g.to(out.dtype));
    return [out.detach(), a.grad!, ww.grad!, bb.grad!] as const;
  };
  const prev = T.runtime.precision;
  T.setPrecision('bf16');
  try {
    const [y1, gx1, gw1, gb1] = run((a, ww, bb) => T.autocast(() => F.layerNormToLinear(a, ww, bb, 1e-6)));
    const [y2, gx2, gw2, gb2] = run((a, ww, bb) => T.autocast(() => F.layerNorm(a, [192], ww, bb, 1e-6)).to('bfloat16'));
    assert.equal(y1.dtype, 'bfloat16');
    const rel = (a: T.Tensor, c: T.Tensor) => T.tidy(() => a.float().sub(c.float()).abs().max().item() / c.float().abs().max().item());
    assert.ok(rel(y1, y2) <= 2 ** -8, `forward ${rel(y1, y2)}`);
    for (const [n, a, c] of [['x', gx1, gx2], ['weight', gw1, gw2], ['bias', gb1, gb2]] as const) assert.ok(rel(a, c) < 1e-5, `grad ${n} ${rel(a, c)}`);
  } finally {
    T.setPrecision(prev);
  }
  const was = native.setFusedLayerNormF32(false);
  try {
    const [y3] = run((a, ww, bb) => F.layerNormToLinear(a, ww, bb, 1e-6));  // no autocast, fp32 kernel off: libtorch's layer_norm
    assert.equal(y3.dtype, 'float32');
    assert.equal(maxAbsDiff(y3, F.layerNorm(x, [192], w, b, 1e-6)), 0);
  } finally {
    native.setFusedLayerNormF32(was);
  }
});

test('LayerNorm into a Linear (fp32, no autocast): the one-pass kernel within 1e-6 (relative) of libtorch layer_norm and of PyTorch nn.LayerNorm, forward and all three gradients', () => {
  const rel = (a: T.Tensor, c: T.Tensor) => T.tidy(() => a.sub(c).abs().max().item() / c.abs().max().item());
  // the preset's width, a width that is not a multiple of 16, a single row, a shifted and scaled input (mean far from 0)
  for (const [shape, seed] of [[[4, 33, 192], 21], [[5, 7, 37], 22], [[1, 768], 23], [[128, 96], 24]] as const) {
    const D = shape[shape.length - 1]!;
    const g0 = new T.Generator(seed);
    const x = T.randn([...shape], { generator: g0 }).mul(3).add(2.5);
    const w = T.randn([D], { generator: g0 }).mul(0.2).add(1), b = T.randn([D], { generator: g0 }).mul(0.2);
    const up = T.randn([...shape], { generator: g0 });
    const run = (fused: boolean) => {
      const was = native.setFusedLayerNormF32(fused);
      try {
        const a = x.detach().requiresGrad_(true), ww = w.detach().requiresGrad_(true), bb = b.detach().requiresGrad_(true);
        const y = F.layerNormToLinear(a, ww, bb, 1e-6);
        y.backward(up);
        return [y.detach(), a.grad!, ww.grad!, bb.grad!];
      } finally {
        native.setFusedLayerNormF32(was);
      }
    };
    const mine = run(true), stock = run(false);
    assert.equal(mine[0]!.dtype, 'float32');
    const ref = runTorch([
      'ln = torch.nn.LayerNorm(inp["x"].shape[-1], eps=1e-6)',
      'ln.weight.data.copy_(inp["w"]); ln.bias.data.copy_(inp["b"])',
      'x = inp["x"].clone().requires_grad_(True)',
      'y = ln(x); y.backward(inp["g"])',
      'out["y"] = y.detach(); out["dx"] = x.grad; out["dw"] = ln.weight.grad; out["db"] = ln.bias.grad',
    ].join('\n'), { x, w, b, g: up });
    const names = ['y', 'dx', 'dw', 'db'];
    names.forEach((n, i) => {
      assert.ok(rel(mine[i]!, stock[i]!) < 1e-6, `${shape}: ${n} vs libtorch ${rel(mine[i]!, stock[i]!)}`);
      assert.ok(rel(mine[i]!, ref[n]!) < 1e-6, `${shape}: ${n} vs PyTorch ${rel(mine[i]!, ref[n]!)}`);
    });
  }
});

test('F.linear with a bias: bf16 (oneDNN, bias in the GEMM) within one bf16 step of libtorch linear, gradients bit-identical; fp32 (rows split over threads) within 2^-20; 2-D / 3-D / strided inputs', () => {
  // this build calls oneDNN directly (libdnnl-dev is in the setup), so the comparison below is not at::linear with itself
  assert.equal(native.onednnLinear, true, 'the addon was built without the oneDNN headers (apt-get install -y libdnnl-dev; npm run build:native)');
  const setup = readFileSync(fileURLToPath(new URL('../../scripts/setup-debian.sh', import.meta.url)), 'utf8');
  assert.match(setup, /USER_PKGS="[^"]*libdnnl-dev/);
  assert.equal(native.linearSplit, true, 'fp32 Linear is not on the split OpenBLAS path (libtorch on Debian links OpenBLAS as libblas.so.3)');
  const K = 300;  // long enough for the GEMMs' summation orders to differ
  const w = T.randn([48, K], { generator: new T.Generator(21) }).mul(0.1), b = T.randn([48], { generator: new T.Generator(22) });
  const inputs: Array<[string, () => T.Tensor]> = [
    ['2-D', () => T.randn([37, K], { generator: new T.Generator(23) })],
    ['3-D', () => T.randn([5, 7, K], { generator: new T.Generator(24) })],
    ['3-D transposed (not contiguous: at::linear itself)', () => T.randn([7, 5, K], { generator: new T.Generator(25) }).transpose(0, 1)],
    ['2-D transposed', () => T.randn([K, 37], { generator: new T.Generator(26) }).transpose(0, 1)],
    // fp32: large enough for Linear32 to split every product's rows over the threads (forward, grad x, grad weight)
    ['3-D, rows split over threads', () => T.randn([9, 230, K], { generator: new T.Generator(28) })],
    ['2-D transposed, rows split over threads', () => T.randn([K, 1500], { generator: new T.Generator(29) }).transpose(0, 1)],
  ];
  const run = (fn: typeof F.linear, x0: T.Tensor, bf16: boolean) => {
    const x = x0.detach().requiresGrad_(true), ww = w.detach().requiresGrad_(true), bb = b.detach().requiresGrad_(true);
    const y = bf16 ? T.autocast(() => fn(x, ww, bb)) : fn(x, ww, bb);
    y.backward(T.randn(y.shape, { generator: new T.Generator(27) }).to(y.dtype));
    return [y.detach(), x.grad!, ww.grad!, bb.grad!];
  };
  const prev = T.runtime.precision;
  try {
    for (const bf16 of [false, true]) {
      T.setPrecision(bf16 ? 'bf16' : 'fp32');
      for (const [name, mk] of inputs) {
        const x = mk();
        const ours = run(F.linear, x, bf16), stock = run(F.atenLinear, x, bf16);
        const tag = `${bf16 ? 'bf16' : 'fp32'} ${name}`;
        assert.equal(ours[0]!.dtype, bf16 ? 'bfloat16' : 'float32', `${tag}: output dtype`);
        ['y', 'grad x', 'grad weight', 'grad bias'].forEach((what, i) => {
          assert.equal(ours[i]!.dtype, stock[i]!.dtype, `${tag} ${what} dtype`);
          assert.deepEqual(ours[i]!.shape, stock[i]!.shape, `${tag} ${what} shape`);
        });
        if (bf16) {
          // bf16: oneDNN's sum, rounded once, within one bf16 step of each value; the gradients are libtorch's own
          // ops on the same upstream gradient, bit for bit
          const [y, ys] = [ours[0]!.float(), stock[0]!.float()];
          const err = T.tidy(() => y.sub(ys).abs().div(ys.abs().add(1e-2)).max().item());
          assert.ok(err <= 2 ** -8, `${tag}: output (${err})`);
          for (const i of [1, 2, 3]) assert.equal(maxAbsDiff(ours[i]!, stock[i]!), 0, `${tag}: ${['', 'grad x', 'grad weight', 'grad bias'][i]}`);
        } else {
          // fp32: the same sgemm_ calls over blocks of rows (Linear32); OpenBLAS's kernel for a block may add a dot
          // product in another order than for the whole matrix: float rounding, 2^-20 of the tensor's largest value
          ['y', 'grad x', 'grad weight', 'grad bias'].forEach((what, i) => {
            const scale = T.tidy(() => stock[i]!.abs().max().item());
            assert.ok(maxAbsDiff(ours[i]!, stock[i]!) <= 2 ** -20 * scale, `${tag}: ${what} (${maxAbsDiff(ours[i]!, stock[i]!)} of ${scale})`);
          });
        }
      }
    }
  } finally {
    T.setPrecision(prev);
  }
  // no bias, and a bad shape: libtorch's own behaviour and error
  const x = T.randn([3, K], { generator: gen() });
  assert.equal(maxAbsDiff(F.linear(x, w), F.atenLinear(x, w)), 0);
  const xl = T.randn([700, K], { generator: gen() });  // split over threads, no bias: at::linear's mm
  assert.ok(maxAbsDiff(F.linear(xl, w), F.atenLinear(xl, w)) <= 2 ** -20 * T.tidy(() => F.atenLinear(xl, w).abs().max().item()));
  assert.throws(() => F.linear(T.randn([3, K + 1]), w, b), /shape|size|mat1/i);
});

test('F.batchedMatmul (fp32): values and both gradients bit-identical to libtorch matmul and to PyTorch; bf16 and bad shapes fall back', () => {
  assert.equal(native.batchedMatmulThreaded, true, 'the addon was built without the system BLAS (libtorch on Debian links libblas.so.3)');
  const g = (s: number) => ({ generator: new T.Generator(s) });
  // attention's shapes and layouts (q permuted, k^T contiguous, probabilities @ v permuted), a larger item
  // (over 2^18 multiply-adds: one call at a time), transposed items, and one below libtorch's 400 cut-off
  const cases: Array<[string, () => [T.Tensor, T.Tensor]]> = [
    ['scores (B, H, N, d) @ (B, H, d, N)', () => [T.randn([6, 12, 3, 16], g(31)).permute([0, 2, 1, 3]), T.randn([6, 12, 3, 16], g(32)).permute([0, 2, 3, 1]).contiguous()]],
    ['probs @ v', () => [F.softmax(T.randn([6, 3, 12, 12], g(33)), -1), T.randn([6, 12, 3, 16], g(34)).permute([0, 2, 1, 3])]],
    ['large items', () => [T.randn([3, 70, 80], g(35)), T.randn([3, 80, 90], g(36))]],
    ['transposed items', () => [T.randn([4, 40, 30], g(37)).transpose(1, 2), T.randn([4, 20, 40], g(38)).transpose(1, 2)]],
    ['tiny items (libtorch naive kernel)', () => [T.randn([5, 3, 4], g(39)), T.randn([5, 4, 6], g(40))]],
  ];
  const run = (fn: (a: T.Tensor, b: T.Tensor) => T.Tensor, a0: T.Tensor, b0: T.Tensor, up: T.Tensor) => {
    const a = a0.detach().requiresGrad_(true), b = b0.detach().requiresGrad_(true);
    const y = fn(a, b);
    y.backward(up);
    return [y.detach(), a.grad!, b.grad!];
  };
  for (const [name, mk] of cases) {
    const [a, b] = mk();
    const up = T.randn([...a.shape.slice(0, -1), b.shape[b.shape.length - 1]!], g(41));
    const ours = run(F.batchedMatmul, a, b, up), stock = run((x, y) => x.matmul(y), a, b, up);
    ['y', 'grad a', 'grad b'].forEach((what, i) => {
      assert.deepEqual(ours[i]!.shape, stock[i]!.shape, `${name}: ${what} shape`);
      assert.equal(maxAbsDiff(ours[i]!, stock[i]!), 0, `${name}: ${what}`);
    });
    const ref = runTorch([
      'a = inp["a"].clone().requires_grad_(True); b = inp["b"].clone().requires_grad_(True)',
      'y = a @ b', 'y.backward(inp["up"])', 'out["y"] = y.detach(); out["ga"] = a.grad; out["gb"] = b.grad',
    ].join('\n'), { a: a.contiguous(), b: b.contiguous(), up });
    assert.ok(maxAbsDiff(ours[0]!, ref['y']!) < 1e-5 && maxAbsDiff(ours[1]!, ref['ga']!) < 1e-5 && maxAbsDiff(ours[2]!, ref['gb']!) < 1e-5, `${name}: vs PyTorch`);
  }
  // under bf16 autocast it is libtorch's matmul (cast to bf16); mismatched shapes: libtorch's error
  const [a, b] = [T.randn([2, 3, 8, 16], g(42)), T.randn([2, 3, 16, 8], g(43))];
  const prev = T.runtime.precision;
  try {
    T.setPrecision('bf16');
    const [y, ys] = T.autocast(() => [F.batchedMatmul(a, b), a.matmul(b)]);
    assert.equal(y!.dtype, 'bfloat16');
    assert.equal(maxAbsDiff(y!, ys!), 0);
  } finally {
    T.setPrecision(prev);
  }
  assert.throws(() => F.batchedMatmul(a, T.randn([2, 3, 15, 8])), /shape|size|mat/i);
});

test('F.attention (fp32): the fused core within 4e-6 (relative) of the composed ops and of PyTorch (the official Attention), forward and qkv gradient; no-grad path equal; keyBias, bf16 and bad shapes handled', () => {
  assert.equal(F.setFusedAttention(true), true, 'the fused core is on by default');
  // the preset's shapes (64 tokens, 3 heads of 64; a context of 13 tokens), the predictor's width, an odd length, and a tiny one
  const shapes: Array<[number, number, number, number]> = [[4, 64, 192, 3], [5, 13, 192, 3], [3, 37, 96, 3], [2, 2, 12, 2]];
  for (const [B, N, C, H] of shapes) {
    const name = `B ${B}, N ${N}, C ${C}, H ${H}`;
    const qkv0 = T.randn([B, N, 3 * C], { generator: new T.Generator(51) }).mul(2);
    const up = T.randn([B, N, C], { generator: new T.Generator(52) });
    const scale = (C / H) ** -0.5;
    const run = (fused: boolean) => {
      F.setFusedAttention(fused);
      try {
        const qkv = qkv0.detach().requiresGrad_(true);
        const y = F.attention(qkv, H, scale);
        y.backward(up);
        return [y.detach(), qkv.grad!, T.noGrad(() => F.attention(qkv0, H, scale))];
      } finally {
        F.setFusedAttention(true);
      }
    };
    const [y, g, yNoGrad] = run(true), [ys, gs] = run(false);
    assert.deepEqual(y!.shape, [B, N, C], `${name}: output shape`);
    // relative to the largest value: the sums differ by float rounding only (other transpose flags than bmm's)
    const rel = (a: T.Tensor, b: T.Tensor) => maxAbsDiff(a, b) / T.tidy(() => b.abs().max().item());
    assert.ok(rel(y!, ys!) < 4e-6, `${name}: forward vs composed ${rel(y!, ys!)}`);
    assert.ok(rel(g!, gs!) < 4e-6, `${name}: qkv gradient vs composed ${rel(g!, gs!)}`);
    assert.equal(maxAbsDiff(yNoGrad!, y!), 0, `${name}: the no-grad path computes the same sums`);
    const ref = runTorch([
      'qkv = inp["qkv"].clone().requires_grad_(True)',
      `B, N, C, H = ${B}, ${N}, ${C}, ${H}`,
      'q, k, v = qkv.reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4)',
      `a = ((q @ k.transpose(-2, -1)) * ${scale}).softmax(dim=-1)`,
      'y = (a @ v).transpose(1, 2).reshape(B, N, C)',
      'y.backward(inp["up"])', 'out["y"] = y.detach(); out["g"] = qkv.grad',
    ].join('\n'), { qkv: qkv0, up });
    // PyTorch scales the rounded scores before its softmax: one more rounding
    assert.ok(rel(y!, ref['y']!) < 4e-6 && rel(g!, ref['g']!) < 4e-6, `${name}: vs PyTorch ${rel(y!, ref['y']!)} ${rel(g!, ref['g']!)} (relative)`);
  }
  // a key bias (padding) takes the composed path: -inf keys get weight 0, so the output ignores their values
  const [B, N, C, H] = [2, 6, 12, 2];
  const qkv = T.randn([B, N, 3 * C], { generator: new T.Generator(53) });
  const keyBias = T.tensor(Array.from({ length: B * N }, (_, i) => (i % N >= 4 ? -Infinity : 0)), [B, 1, 1, N]);
  const withBias = F.attention(qkv, H, 0.5, keyBias);
  const truncated = F.attention(qkv.narrow(1, 0, 4).contiguous(), H, 0.5);  // the same first 4 tokens, no padding
  assert.ok(maxAbsDiff(withBias.narrow(1, 0, 4), truncated) < 1e-6, 'padded keys ignored');
  // under bf16 autocast the composed ops run (bf16 out)
  const prev = T.runtime.precision;
  try {
    T.setPrecision('bf16');
    const y = T.autocast(() => F.attention(qkv.to('bfloat16'), H, 0.5));
    assert.equal(y.dtype, 'bfloat16');
  } finally {
    T.setPrecision(prev);
  }
  assert.throws(() => F.attention(T.randn([2, 5, 35]), 2, 1), /qkv must be \(B, N, 3C\).*\[2, 5, 35\]/);
  assert.throws(() => F.attention(T.randn([2, 5, 36]), 5, 1), /divisible by heads 5/);
  assert.throws(() => F.attention(T.randn([10, 36]), 2, 1), /qkv must be \(B, N, 3C\)/);
});

test('F.gram: x^T x and its gradient x (G + G^T) through the split fp32 Linear, within 2^-20 of matmul; bad shapes named', () => {
  for (const [n, d] of [[128, 192], [37, 20], [3, 2]] as const) {
    const x0 = T.randn([n, d], { generator: new T.Generator(61) }), up = T.randn([d, d], { generator: new T.Generator(62) });
    const run = (f: (x: T.Tensor) => T.Tensor) => {
      const x = x0.detach().requiresGrad_(true);
      const y = f(x);
      y.backward(up);
      return [y.detach(), x.grad!];
    };
    const [y, g] = run(F.gram), [ys, gs] = run((x) => x.t().matmul(x));
    const rel = (a: T.Tensor, b: T.Tensor) => maxAbsDiff(a, b) / T.tidy(() => b.abs().max().item());
    assert.deepEqual(y!.shape, [d, d]);
    assert.ok(rel(y!, ys!) <= 2 ** -20 && rel(g!, gs!) <= 2 ** -20, `(${n}, ${d}): ${rel(y!, ys!)} ${rel(g!, gs!)}`);
    // the gradient of sum(G * up) is x (up + up^T), whatever the library
    const expect = T.tidy(() => x0.matmul(up.add(up.t())));
    assert.ok(rel(g!, expect) <= 2 ** -18, `(${n}, ${d}) gradient vs x (G + G^T): ${rel(g!, expect)}`);
  }
  assert.throws(() => F.gram(T.randn([2, 3, 4])), /F.gram: expected a \(n, d\) batch, got shape \[2, 3, 4\]/);
});

test('fused AdamW and EMA: within one float rounding (2^-22 relative) of the stock op sequence (torch.optim.AdamW single-tensor arithmetic)', () => {
  const shapes = [[33, 17], [5], [3, 4, 5]];
  const mk = (seed: number) => shapes.map((s) => T.randn(s, { generator: new T.Generator(seed) }));
  const [p1, p2, m1, m2, v1, v2] = [mk(1), mk(1), mk(2).map((t) => t.mul(0.01)), mk(2).map((t) => t.mul(0.01)), mk(3).map((t) => t.square().mul(1e-4)), mk(3).map((t) => t.square().mul(1e-4))];
  const grads = mk(4);
  const [b1, b2, eps, lr, wd] = [0.9, 0.999, 1e-8, 1e-3, 0.04];
  for (let step = 1; step <= 3; step++) {
    const bc2Sqrt = Math.sqrt(1 - b2 ** step), stepSize = lr / (1 - b1 ** step);
    F.fusedAdamW_(p1!, grads, m1!, v1!, { decay: 1 - lr * wd, beta1: b1, beta2: b2, stepSize, bc2Sqrt, eps });
    T.noGrad(() => p2!.forEach((p, i) => T.tidy(() => {  // what AdamW.update did before the fusion
      const g = grads[i]!, m = m2![i]!, v = v2![i]!;
      p.mul_(1 - lr * wd);
      m.mul_(b1).add_(g, 1 - b1);
      v.mul_(b2).addcmul_(g, g, 1 - b2);
      p.addcdiv_(m, v.sqrt().div_(bc2Sqrt).add_(eps), -stepSize);
    })));
  }
  const ulps = (a: T.Tensor, b: T.Tensor) => T.tidy(() => a.sub(b).abs().div(b.abs().mul(2 ** -23).add(1e-30)).max().item());
  for (let i = 0; i < shapes.length; i++) {
    assert.ok(ulps(p1![i]!, p2![i]!) <= 2, `param ${i}: ${ulps(p1![i]!, p2![i]!)} ulp`);
    assert.ok(ulps(m1![i]!, m2![i]!) <= 2, `exp_avg ${i}`);
    assert.ok(ulps(v1![i]!, v2![i]!) <= 2, `exp_avg_sq ${i}: ${ulps(v1![i]!, v2![i]!)} ulp`);
  }
  const [t1, t2, src] = [mk(5), mk(5), mk(6)];
  F.fusedEma_(t1, src, 0.996);
  T.noGrad(() => t2.forEach((t, i) => t.mul_(0.996).add_(src[i]!, 1 - 0.996)));
  for (let i = 0; i < shapes.length; i++) assert.ok(ulps(t1[i]!, t2[i]!) <= 2, `ema ${i}`);
  assert.throws(() => F.fusedEma_(t1, src.slice(1), 0.5), /3 targets vs 2 sources/);
});
