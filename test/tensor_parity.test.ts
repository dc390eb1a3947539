// Parity with PyTorch (same libtorch family, torch 1.13 from Debian) on the same weights and inputs:
// forward values AND gradients, max abs difference <= 1e-5 in float32.
//  - a pre-norm ViT transformer block built from the functional ops, vs torch.nn modules;
//  - a conv patch embedding;
//  - the functional ops the methods use (layer_norm, gelu, softmax, losses, normalize, var/std, ...).
// Every case is "out = f(inputs); loss = sum(out * R)" with R random, so the gradient check sees a
// non-trivial upstream gradient. All TS results are computed first; one python run gives the references.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { runTorch, maxAbsDiff } from './util/pytorch.js';

const TOL = 1e-5;
const gen = new T.Generator(20240611);
const randn = (shape: number[], scale = 1): T.Tensor => T.noGrad(() => {
  const r = T.randn(shape, { generator: gen });
  const s = r.mul(scale);
  r.dispose();
  return s;
});

const inputs: Record<string, T.Tensor> = {};
const ours: Record<string, T.Tensor> = {};
const expected = new Map<string, string[]>(); // case -> names of the tensors it produces
let ref: Record<string, T.Tensor> = {};
const owned: T.Tensor[] = [];

/**
 * Registers a case: `ins` become inputs `<name>.<key>` (those in `grads` are leaves requiring grad),
 * `fn` runs, R is drawn with the output's shape, sum(out * R) is backpropagated, and `<name>.out`
 * plus `<name>.grad.<key>` are recorded.
 */
function runCase(name: string, ins: Record<string, T.Tensor>, grads: string[], fn: (d: Record<string, T.Tensor>) => T.Tensor): void {
  const leaves: Record<string, T.Tensor> = {};
  for (const [k, v] of Object.entries(ins)) {
    inputs[`${name}.${k}`] = v;
    leaves[k] = grads.includes(k) ? v.detach().requiresGrad_(true) : v;
    if (grads.includes(k)) owned.push(leaves[k]!);
  }
  T.tidy(() => {
    const out = fn(leaves);
    const R = randn(out.shape);
    inputs[`${name}.R`] = T.keep(R);
    out.mul(R).sum().backward();
    ours[`${name}.out`] = T.keep(out.detach());
  });
  const names = [`${name}.out`];
  for (const g of grads) {
    const gr = leaves[g]!.grad;
    assert.ok(gr, `${name}: no gradient for ${g}`);
    ours[`${name}.grad.${g}`] = T.keep(gr);
    names.push(`${name}.grad.${g}`);
  }
  expected.set(name, names);
}

// ------------------------------------------------------------------ the TS models

const B = 2, N = 7, C = 24, HEADS = 4, HIDDEN = 96;

function block(d: Record<string, T.Tensor>): T.Tensor {
  const x = d['x']!;
  const hd = C / HEADS;
  const h = T.F.layerNorm(x, [C], d['norm1.weight'], d['norm1.bias'], 1e-6);
  const qkv = T.F.linear(h, d['attn.qkv.weight']!, d['attn.qkv.bias']).reshape([B, N, 3, HEADS, hd]).permute([2, 0, 3, 1, 4]);
  const [q, k, v] = [qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2)];
  const attn = T.F.softmax(q.matmul(k.transpose(-2, -1)).mul(hd ** -0.5), -1);
  const a = attn.matmul(v).transpose(1, 2).reshape([B, N, C]);
  const x1 = x.add(T.F.linear(a, d['attn.proj.weight']!, d['attn.proj.bias']));
  const h2 = T.F.layerNorm(x1, [C], d['norm2.weight'], d['norm2.bias'], 1e-6);
  const m = T.F.linear(T.F.gelu(T.F.linear(h2, d['mlp.fc1.weight']!, d['mlp.fc1.bias'])), d['mlp.fc2.weight']!, d['mlp.fc2.bias']);
  return x1.add(m);
}
const BLOCK_PARAMS: Record<string, number[]> = {
  'norm1.weight': [C], 'norm1.bias': [C], 'attn.qkv.weight': [3 * C, C], 'attn.qkv.bias': [3 * C],
  'attn.proj.weight': [C, C], 'attn.proj.bias': [C], 'norm2.weight': [C], 'norm2.bias': [C],
  'mlp.fc1.weight': [HIDDEN, C], 'mlp.fc1.bias': [HIDDEN], 'mlp.fc2.weight': [C, HIDDEN], 'mlp.fc2.bias': [C],
};

const PY = String.raw`
import torch.nn as nn
F = torch.nn.functional

def case(name, grads, fn):
    d = {k[len(name) + 1:]: v.clone() for k, v in inp.items() if k.startswith(name + '.')}
    for g in grads:
        d[g].requires_grad_(True)
    o = fn(d)
    out[name + '.out'] = o.detach()
    (o * d['R']).sum().backward()
    for g in grads:
        out[name + '.grad.' + g] = d[g].grad

B, N, C, HEADS, HIDDEN = ${B}, ${N}, ${C}, ${HEADS}, ${HIDDEN}

class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.num_heads = HEADS
        self.scale = (C // HEADS) ** -0.5
        self.qkv = nn.Linear(C, 3 * C, bias=True)
        self.proj = nn.Linear(C, C)
    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)

class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(C, HIDDEN)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(HIDDEN, C)
    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(C, eps=1e-6)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(C, eps=1e-6)
        self.mlp = Mlp()
    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

def block_case():
    name = 'block'
    blk = Block()
    with torch.no_grad():
        for k, p in blk.named_parameters():
            p.copy_(inp[name + '.' + k])
    x = inp[name + '.x'].clone().requires_grad_(True)
    o = blk(x)
    out[name + '.out'] = o.detach()
    (o * inp[name + '.R']).sum().backward()
    out[name + '.grad.x'] = x.grad
    for k, p in blk.named_parameters():
        out[name + '.grad.' + k] = p.grad
block_case()

def patch_case():
    name = 'patch'
    conv = nn.Conv2d(3, 16, kernel_size=4, stride=4)
    with torch.no_grad():
        conv.weight.copy_(inp[name + '.weight'])
        conv.bias.copy_(inp[name + '.bias'])
    x = inp[name + '.x'].clone().requires_grad_(True)
    o = conv(x).flatten(2).transpose(1, 2)
    out[name + '.out'] = o.detach()
    (o * inp[name + '.R']).sum().backward()
    out[name + '.grad.x'] = x.grad
    out[name + '.grad.weight'] = conv.weight.grad
    out[name + '.grad.bias'] = conv.bias.grad
patch_case()

case('layer_norm', ['x', 'w', 'b'], lambda d: F.layer_norm(d['x'], (12,), d['w'], d['b'], 1e-6))
case('layer_norm_noaffine', ['x'], lambda d: F.layer_norm(d['x'], (3, 12), eps=1e-5))
case('gelu', ['x'], lambda d: F.gelu(d['x']))
case('gelu_tanh', ['x'], lambda d: F.gelu(d['x'], approximate='tanh'))
case('softmax', ['x'], lambda d: F.softmax(d['x'], -1))
case('softmax_d0', ['x'], lambda d: F.softmax(d['x'], 0))
case('log_softmax', ['x'], lambda d: F.log_softmax(d['x'], -1))
for beta in ('1', '0.5'):
    for red in ('mean', 'sum'):
        case('smooth_l1_%s_%s' % (beta, red), ['x', 'y'], lambda d, beta=beta, red=red: F.smooth_l1_loss(d['x'], d['y'], reduction=red, beta=float(beta)))
case('smooth_l1_none', ['x', 'y'], lambda d: F.smooth_l1_loss(d['x'], d['y'], reduction='none', beta=0.5))
case('mse', ['x', 'y'], lambda d: F.mse_loss(d['x'], d['y']))
case('mse_sum', ['x', 'y'], lambda d: F.mse_loss(d['x'], d['y'], reduction='sum'))
case('cross_entropy', ['x'], lambda d: F.cross_entropy(d['x'], d['t']))
case('cross_entropy_ls', ['x'], lambda d: F.cross_entropy(d['x'], d['t'], label_smoothing=0.1))
case('cross_entropy_ls_sum', ['x'], lambda d: F.cross_entropy(d['x'], d['t'], reduction='sum', label_smoothing=0.25))
case('normalize', ['x'], lambda d: F.normalize(d['x'], dim=-1))
case('normalize_d0', ['x'], lambda d: F.normalize(d['x'], p=2, dim=0))
case('var0', ['x'], lambda d: d['x'].var(0, unbiased=False))
case('var1', ['x'], lambda d: d['x'].var(1, unbiased=True))
case('var_all', ['x'], lambda d: d['x'].var())
case('std0', ['x'], lambda d: d['x'].std(1, unbiased=False, keepdim=True))
case('std1', ['x'], lambda d: d['x'].std(0))
case('logsumexp', ['x'], lambda d: torch.logsumexp(d['x'], -1))
case('logsumexp_all', ['x'], lambda d: torch.logsumexp(d['x'], (0, 1)))

for _k in list(out):
    if out[_k].dim() == 0:
        out[_k] = out[_k].reshape(1)  # test/py/st.py cannot write 0-d tensors
`;

before(() => {
  // transformer block
  const bp: Record<string, T.Tensor> = { x: randn([B, N, C]) };
  for (const [k, shape] of Object.entries(BLOCK_PARAMS)) {
    bp[k] = k.startsWith('norm') && k.endsWith('weight') ? T.noGrad(() => { const r = randn(shape, 0.1); const o = r.add(1); r.dispose(); return o; })
      : randn(shape, k.endsWith('bias') ? 0.1 : 0.2);
  }
  runCase('block', bp, Object.keys(bp), block);

  // conv patch embedding: conv2d(kernel = stride = patch), flatten(2).transpose(1, 2)
  runCase('patch', { x: randn([2, 3, 16, 16]), weight: randn([16, 3, 4, 4], 0.2), bias: randn([16], 0.1) }, ['x', 'weight', 'bias'],
    (d) => T.F.conv2d(d['x']!, d['weight']!, d['bias'], { stride: 4 }).flatten(2).transpose(1, 2));

  // functional ops
  runCase('layer_norm', { x: randn([4, 5, 12], 2), w: randn([12]), b: randn([12]) }, ['x', 'w', 'b'],
    (d) => T.F.layerNorm(d['x']!, [12], d['w'], d['b'], 1e-6));
  runCase('layer_norm_noaffine', { x: randn([2, 3, 12]) }, ['x'], (d) => T.F.layerNorm(d['x']!, [3, 12], null, null, 1e-5));
  runCase('gelu', { x: randn([6, 10], 2) }, ['x'], (d) => T.F.gelu(d['x']!));
  runCase('gelu_tanh', { x: randn([6, 10], 2) }, ['x'], (d) => T.F.gelu(d['x']!, 'tanh'));
  runCase('softmax', { x: randn([5, 9], 3) }, ['x'], (d) => T.F.softmax(d['x']!, -1));
  runCase('softmax_d0', { x: randn([5, 9], 3) }, ['x'], (d) => T.F.softmax(d['x']!, 0));
  runCase('log_softmax', { x: randn([5, 9], 3) }, ['x'], (d) => T.F.logSoftmax(d['x']!, -1));
  for (const beta of [1, 0.5]) {
    for (const red of ['mean', 'sum'] as const) {
      // differences spread over both sides of beta
      runCase(`smooth_l1_${beta}_${red}`, { x: randn([6, 8], 1.5), y: randn([6, 8]) }, ['x', 'y'],
        (d) => T.F.smoothL1Loss(d['x']!, d['y']!, red, beta));
    }
  }
  runCase('smooth_l1_none', { x: randn([6, 8], 1.5), y: randn([6, 8]) }, ['x', 'y'], (d) => T.F.smoothL1Loss(d['x']!, d['y']!, 'none', 0.5));
  runCase('mse', { x: randn([6, 8]), y: randn([6, 8]) }, ['x', 'y'], (d) => T.F.mseLoss(d['x']!, d['y']!));
  runCase('mse_sum', { x: randn([6, 8]), y: randn([6, 8]) }, ['x', 'y'], (d) => T.F.mseLoss(d['x']!, d['y']!, 'sum'));
  const targets = () => T.tensor([0, 3, 9, 2, 2, 7], { dtype: 'int64' });
  runCase('cross_entropy', { x: randn([6, 10], 2), t: targets() }, ['x'], (d) => T.F.crossEntropy(d['x']!, d['t']!));
  runCase('cross_entropy_ls', { x: randn([6, 10], 2), t: targets() }, ['x'], (d) => T.F.crossEntropy(d['x']!, d['t']!, 'mean', 0.1));
  runCase('cross_entropy_ls_sum', { x: randn([6, 10], 2), t: targets() }, ['x'], (d) => T.F.crossEntropy(d['x']!, d['t']!, 'sum', 0.25));
  runCase('normalize', { x: randn([5, 8]) }, ['x'], (d) => T.F.normalize(d['x']!));
  runCase('normalize_d0', { x: randn([5, 8]) }, ['x'], (d) => T.F.normalize(d['x']!, 2, 0));
  runCase('var0', { x: randn([7, 5]) }, ['x'], (d) => d['x']!.var(0, { correction: 0 }));
  runCase('var1', { x: randn([7, 5]) }, ['x'], (d) => d['x']!.var(1, { correction: 1 }));
  runCase('var_all', { x: randn([7, 5]) }, ['x'], (d) => d['x']!.var());
  runCase('std0', { x: randn([7, 5]) }, ['x'], (d) => d['x']!.std(1, { correction: 0, keepdim: true }));
  runCase('std1', { x: randn([7, 5]) }, ['x'], (d) => d['x']!.std(0));
  runCase('logsumexp', { x: randn([4, 6], 3) }, ['x'], (d) => d['x']!.logsumexp(-1));
  runCase('logsumexp_all', { x: randn([4, 6], 3) }, ['x'], (d) => d['x']!.logsumexp([0, 1]));

  ref = runTorch(PY, inputs);
});

after(() => {
  for (const t of [...Object.values(inputs), ...Object.values(ours), ...Object.values(ref), ...owned]) t.dispose();
});

function compare(name: string): number {
  const names = expected.get(name);
  assert.ok(names, `no case ${name}`);
  let worst = 0;
  for (const k of names) {
    const a = ours[k]!, b = ref[k];
    assert.ok(b, `PyTorch produced no ${k}`);
    assert.deepEqual(a.shape.length ? a.shape : [1], b.shape, `${k}: shape`);
    assert.equal(a.dtype, b.dtype, `${k}: dtype`);
    const d = maxAbsDiff(a, b);
    assert.ok(d <= TOL, `${k}: max abs diff ${d.toExponential(2)} > ${TOL}`);
    // a gradient that is all zeros would make the check vacuous
    if (k.includes('.grad.')) assert.ok(a.abs().max().item() > 1e-4, `${k} is (nearly) zero`);
    worst = Math.max(worst, d);
  }
  return worst;
}

test('pre-norm transformer block: forward, input gradient and every parameter gradient', () => {
  const names = expected.get('block')!;
  assert.equal(names.length, 1 + 1 + Object.keys(BLOCK_PARAMS).length); // out, x, 12 parameters
  const worst = compare('block');
  assert.ok(ours['block.out']!.abs().max().item() > 0.5);
  console.log(`# block: ${names.length} tensors, worst max abs diff ${worst.toExponential(2)}`);
});

test('conv patch embedding: forward and gradients', () => {
  assert.deepEqual(ours['patch.out']!.shape, [2, 16, 16]);
  compare('patch');
});

test('layer_norm (affine and not): values and gradients', () => { compare('layer_norm'); compare('layer_norm_noaffine'); });
test('gelu exact and tanh: values and gradients', () => {
  compare('gelu'); compare('gelu_tanh');
  assert.ok(maxAbsDiff(ours['gelu.out']!, ours['gelu_tanh.out']!) > 1e-5, 'tanh approximation should differ from exact gelu');
});
test('softmax and log_softmax: values and gradients', () => { compare('softmax'); compare('softmax_d0'); compare('log_softmax'); });
test('smooth_l1 (beta 1 and 0.5, mean/sum/none): values and gradients', () => {
  for (const c of ['smooth_l1_1_mean', 'smooth_l1_1_sum', 'smooth_l1_0.5_mean', 'smooth_l1_0.5_sum', 'smooth_l1_none']) compare(c);
});
test('mse (mean and sum): values and gradients', () => { compare('mse'); compare('mse_sum'); });
test('cross_entropy (with label smoothing): values and gradients', () => {
  compare('cross_entropy'); compare('cross_entropy_ls'); compare('cross_entropy_ls_sum');
});
test('normalize: values and gradients', () => { compare('normalize'); compare('normalize_d0'); });
test('var/std with correction 0 and 1: values and gradients', () => {
  for (const c of ['var0', 'var1', 'var_all', 'std0', 'std1']) compare(c);
});
test('logsumexp: values and gradients', () => { compare('logsumexp'); compare('logsumexp_all'); });
test('every registered case was compared against a PyTorch output', () => {
  for (const names of expected.values()) for (const k of names) assert.ok(ref[k], `missing reference ${k}`);
  assert.equal(Object.keys(ref).length, Object.keys(ours).length);
});
