// Unit checks of the method's pieces against PyTorch / the official formulas: the VICReg loss (values and
// gradients, collapse case), the EMA update, AdamW (two steps, decay and no-decay groups) and gradient
// clipping against torch.optim / torch.nn.utils, the 2-D sin-cos position embedding against a numpy
// reimplementation of the official function, truncated-normal statistics, and the encoder's parameters
// (count, names, shapes) against the PyTorch reference model. One Python process for all of it.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, Generator, randn, zeros, empty, noGrad, F } from '../src/tensor/index.js';
import { vicregLoss, VICREG_WEIGHTS, type VicregWeights } from '../src/method/losses.js';
import { emaUpdate } from '../src/method/ema.js';
import { AdamW, clipGradNorm, ijepaParamGroups, type ParamGroup } from '../src/method/optim.js';
import { sincos2dPosEmbed } from '../src/nn/pos_embed.js';
import { truncNormal_ } from '../src/nn/init.js';
import { VisionTransformer, VIT_SIZES, vitConfig } from '../src/nn/vit.js';
import { Predictor } from '../src/nn/predictor.js';
import { runTorch, maxAbsDiff, maxRelDiff } from './util/pytorch.js';

const gen = new Generator(99);
const VIC_B = 8, VIC_D = 16;
const CUSTOM_W: VicregWeights = { inv: 2, var: 3, cov: 5 };
const vx = randn([VIC_B, VIC_D], { generator: gen }).mul(0.6);
const vy = vx.mul(0.8).add(randn([VIC_B, VIC_D], { generator: gen }).mul(0.4));

// AdamW: a weight (decay), a bias (no decay) and a parameter without gradient; two steps with new lr / wd.
const ADAM = { lr: [1e-2, 5e-3], wd: [0.1, 0.2] };
const w0 = randn([3, 4], { generator: gen }), b0 = randn([4], { generator: gen }), c0 = randn([2, 2], { generator: gen });
const gW = [randn([3, 4], { generator: gen }), randn([3, 4], { generator: gen }).mul(1e-3)];
const gB = [randn([4], { generator: gen }).mul(0.1), randn([4], { generator: gen })];

// clipping: three gradients, global norm well above 1
const clipGrads = [randn([5, 3], { generator: gen }), randn([7], { generator: gen }), randn([2, 2, 2], { generator: gen })];

const POS = [[4, 32], [4, 192], [14, 32], [14, 192]] as const;
const TINY_PRED = { predictorEmbedDim: 96, depth: 2, numHeads: 3 };

let ref: Record<string, Tensor> = {};

before(() => {
  const py = `
import ref_jepa, numpy as np
import torch.nn.functional as F
W = ${JSON.stringify(CUSTOM_W)}

# VICReg loss, default and custom coefficients, with gradients
for tag, w in (('default', dict(inv=25.0, var=25.0, cov=1.0)), ('custom', W)):
    x = inp['vx'].clone().requires_grad_(True)
    y = inp['vy'].clone().requires_grad_(True)
    t = ref_jepa.vicreg_loss(x, y, w['inv'], w['var'], w['cov'])
    t['loss'].backward()
    for k, v in t.items():
        out[f'vic.{tag}.{k}'] = v.detach().reshape(1)
    out[f'vic.{tag}.gx'] = x.grad
    out[f'vic.{tag}.gy'] = y.grad

# AdamW, two steps, official grouping (decay on >= 2-D weights, none on biases); c gets no gradient
W_, b_, c_ = (torch.nn.Parameter(inp[k].clone()) for k in ('w0', 'b0', 'c0'))
opt = torch.optim.AdamW([dict(params=[W_, c_], weight_decay=${ADAM.wd[0]}), dict(params=[b_], weight_decay=0.0)], lr=${ADAM.lr[0]})
for step, (lr, wd) in enumerate(zip(${JSON.stringify(ADAM.lr)}, ${JSON.stringify(ADAM.wd)})):
    opt.param_groups[0]['lr'] = opt.param_groups[1]['lr'] = lr
    opt.param_groups[0]['weight_decay'] = wd
    W_.grad, b_.grad = inp[f'gW{step}'].clone(), inp[f'gB{step}'].clone()
    opt.step()
    for k, p in (('w', W_), ('b', b_), ('c', c_)):
        out[f'adam.{step}.{k}'] = p.detach().clone()
    out[f'adam.{step}.exp_avg.w'] = opt.state[W_]['exp_avg'].clone()
    out[f'adam.{step}.exp_avg_sq.b'] = opt.state[b_]['exp_avg_sq'].clone()

# gradient clipping (clipped, and a max_norm above the norm)
for tag, max_norm in (('clip', 1.0), ('noclip', 1000.0)):
    ps = [torch.zeros_like(inp[f'cg{i}'], requires_grad=True) for i in range(3)]
    for p, i in zip(ps, range(3)):
        p.grad = inp[f'cg{i}'].clone()
    n = torch.nn.utils.clip_grad_norm_(ps, max_norm)
    out[f'{tag}.norm'] = n.reshape(1).double()
    for i, p in enumerate(ps):
        out[f'{tag}.g{i}'] = p.grad

# sin-cos position embeddings, float64, numpy following the official function
for g, d in ${JSON.stringify(POS)}:
    out[f'pos.{g}.{d}'] = torch.from_numpy(ref_jepa.get_2d_sincos_pos_embed(d, g))

# parameters of the reference encoder / predictor: counts, names (as keys) and shapes
def describe(tag, m):
    named = list(m.named_parameters())
    out[f'count.{tag}.all'] = torch.tensor([sum(p.numel() for _, p in named)])
    out[f'count.{tag}.trainable'] = torch.tensor([sum(p.numel() for _, p in named if p.requires_grad)])
    for n, p in named:
        out[f'shape.{tag}.{n}'] = torch.tensor(list(p.shape))
    groups = ref_jepa.param_groups(m, weight_decay=0.1)
    ids = {id(p) for p in groups[0]['params']}
    for n, p in named:
        if p.requires_grad:
            out[f'decay.{tag}.{n}'] = torch.tensor([1 if id(p) in ids else 0])

describe('vit_tiny', ref_jepa.vit('vit_tiny', img_size=224, patch_size=16))
describe('predictor', ref_jepa.VisionTransformerPredictor(196, embed_dim=192, predictor_embed_dim=${TINY_PRED.predictorEmbedDim},
                                                          depth=${TINY_PRED.depth}, num_heads=${TINY_PRED.numHeads}))
# every named size: width, depth, heads, MLP ratio; vit_giant (MLP ratio 48/11) built one block deep
for name, size in ref_jepa.VIT_SIZES.items():
    out[f'size.{name}'] = torch.tensor([size['embed_dim'], size['depth'], size['num_heads'], size.get('mlp_ratio', 4.0)], dtype=torch.float64)
m = ref_jepa.vit('vit_giant', img_size=16, patch_size=16, depth=1)
out['count.giant1'] = torch.tensor([sum(p.numel() for p in m.parameters())])
out['hidden.giant1'] = torch.tensor([m.blocks[0].mlp.fc1.out_features])
`;
  ref = runTorch(py, {
    vx, vy, w0, b0, c0, gW0: gW[0]!, gW1: gW[1]!, gB0: gB[0]!, gB1: gB[1]!,
    cg0: clipGrads[0]!, cg1: clipGrads[1]!, cg2: clipGrads[2]!,
  });
});

function close(a: Tensor, b: Tensor, tol: number, what: string): void {
  const r = maxRelDiff(a, b);
  assert.ok(r <= tol, `${what}: max rel diff ${r.toExponential(2)} > ${tol}`);
}

test('vicregLoss matches the official formula in PyTorch: terms and gradients', () => {
  for (const [tag, w] of [['default', VICREG_WEIGHTS], ['custom', CUSTOM_W]] as const) {
    const x = vx.clone().requiresGrad_(true), y = vy.clone().requiresGrad_(true);
    const t = vicregLoss(x, y, w);
    t.loss.backward();
    for (const k of ['loss', 'inv', 'var', 'cov'] as const) close(t[k].reshape([1]), ref[`vic.${tag}.${k}`]!, 1e-5, `${tag} ${k}`);
    close(x.grad!, ref[`vic.${tag}.gx`]!, 1e-5, `${tag} dL/dx`);
    close(y.grad!, ref[`vic.${tag}.gy`]!, 1e-5, `${tag} dL/dy`);
    // all three terms matter here, so a mis-weighted term would show
    assert.ok(t.inv.item() > 0.01 && t.var.item() > 0.01 && t.cov.item() > 0.01);
  }
});

test('vicregLoss on collapsed embeddings: variance hinge 1 - sqrt(1e-4) per side, covariance 0', () => {
  const row = randn([1, VIC_D], { generator: gen });
  const x = row.expand([VIC_B, VIC_D]).contiguous();
  const y = row.add(0.5).expand([VIC_B, VIC_D]).contiguous();
  const t = vicregLoss(x, y);
  const hinge = 1 - Math.sqrt(1e-4);
  // var = hinge_x / 2 + hinge_y / 2 with each side's hinge at 1 - sqrt(0 + 1e-4)
  assert.ok(Math.abs(t.var.item() - hinge) < 1e-6, `var ${t.var.item()}`);
  assert.equal(t.cov.item(), 0);
  assert.ok(Math.abs(t.inv.item() - 0.25) < 1e-6, `inv ${t.inv.item()}`);
  assert.ok(Math.abs(t.loss.item() - (25 * 0.25 + 25 * hinge)) < 1e-4, `loss ${t.loss.item()}`);
  // one side collapsed only: that side's hinge is 1 - sqrt(1e-4), the half-weighted sum shows it
  const t2 = vicregLoss(x, vx);
  const hingeOther = vx.var(0).add(1e-4).sqrt().rsub(1).relu().mean().item();
  assert.ok(Math.abs(t2.var.item() - (hinge / 2 + hingeOther / 2)) < 1e-6);
});

test('emaUpdate: m = 1 keeps the target, m = 0 copies the online weights, otherwise m t + (1 - m) o', () => {
  const online = [randn([4, 5], { generator: gen }), randn([5], { generator: gen })];
  const start = [randn([4, 5], { generator: gen }), randn([5], { generator: gen })];
  const fresh = () => start.map((t) => t.clone());
  const bits = (t: Tensor) => Array.from(t.data<'float32'>());

  let target = fresh();
  emaUpdate(target, online, 1);
  target.forEach((t, i) => assert.deepEqual(bits(t), bits(start[i]!)));
  target = fresh();
  emaUpdate(target, online, 0);
  target.forEach((t, i) => assert.deepEqual(bits(t), bits(online[i]!)));
  for (const m of [0.996, 0.5]) {
    target = fresh();
    emaUpdate(target, online, m);
    target.forEach((t, i) => {
      const want = start[i]!.to('float64').mul(m).add(online[i]!.to('float64').mul(1 - m));
      assert.ok(maxAbsDiff(t, want) < 1e-6, `m ${m}: ${maxAbsDiff(t, want)}`);
    });
  }
  // leaves online untouched and stays out of autograd
  const p = randn([3], { generator: gen }).requiresGrad_(true);
  const tgt = [zeros([3])];
  emaUpdate(tgt, [p], 0.5);
  assert.equal(tgt[0]!.requiresGrad, false);
  assert.throws(() => emaUpdate([zeros([1])], [], 0.5), /1 target vs 0 online/);
  assert.throws(() => emaUpdate(tgt, [p], 1.5), RangeError);
});

test('AdamW: two steps (decay and no-decay groups, lr / wd changed between steps) match torch.optim.AdamW', () => {
  const W = w0.clone().requiresGrad_(true), b = b0.clone().requiresGrad_(true), c = c0.clone().requiresGrad_(true);
  const groups: ParamGroup[] = [{ params: [['w', W], ['c', c]], decay: true }, { params: [['b', b]], decay: false }];
  const opt = new AdamW(groups);
  for (let step = 0; step < 2; step++) {
    W.grad = gW[step]!.clone();
    b.grad = gB[step]!.clone();
    opt.update(ADAM.lr[step]!, ADAM.wd[step]!);
    close(W, ref[`adam.${step}.w`]!, 1e-6, `step ${step} weight`);
    close(b, ref[`adam.${step}.b`]!, 1e-6, `step ${step} bias`);
    close(opt.expAvg.get('w')!, ref[`adam.${step}.exp_avg.w`]!, 1e-6, `step ${step} exp_avg`);
    close(opt.expAvgSq.get('b')!, ref[`adam.${step}.exp_avg_sq.b`]!, 1e-6, `step ${step} exp_avg_sq`);
    // no gradient: neither stepped nor decayed
    assert.deepEqual(c.toArray(), ref[`adam.${step}.c`]!.toArray());
    assert.deepEqual(c.toArray(), c0.toArray());
  }
  assert.equal(opt.step, 2);
  // the bias really is undecayed: decaying it too would move it by lr * wd * b, far above the tolerance
  const decayed = noGrad(() => b.sub(b0.mul(ADAM.lr[0]! * ADAM.wd[0]!)));
  assert.ok(maxRelDiff(decayed, ref['adam.1.b']!) > 1e-4);
});

test('clipGradNorm matches torch.nn.utils.clip_grad_norm_ (clipped and unclipped)', () => {
  for (const [tag, maxNorm] of [['clip', 1.0], ['noclip', 1000.0]] as const) {
    const ps = clipGrads.map((g) => zeros(g.shape).requiresGrad_(true));
    ps.forEach((p, i) => { p.grad = clipGrads[i]!.clone(); });
    const n = clipGradNorm(ps, maxNorm);
    const want = ref[`${tag}.norm`]!.item();
    assert.ok(Math.abs(n - want) <= 1e-6 * want, `${tag} norm ${n} vs ${want}`);
    ps.forEach((p, i) => close(p.grad!, ref[`${tag}.g${i}`]!, 1e-6, `${tag} grad ${i}`));
  }
  assert.ok(ref['clip.norm']!.item() > 2, 'the clipped case really clips');
});

test('sincos2dPosEmbed matches the official get_2d_sincos_pos_embed (numpy) to 1e-6', () => {
  for (const [g, d] of POS) {
    const ours = sincos2dPosEmbed(d, g);
    const want = ref[`pos.${g}.${d}`]!;
    assert.deepEqual(ours.shape, [1, g * g, d]);
    const diff = maxAbsDiff(ours.reshape([g * g, d]), want);
    assert.ok(diff < 1e-6, `grid ${g} dim ${d}: max abs diff ${diff}`);
  }
});

test('truncNormal_: mean ~0, std ~0.02, within bounds; truncation acts at std 1; reproducible per generator', () => {
  const n = 200_000;
  const t = truncNormal_(empty([n]), 0.02, new Generator(5));
  const a = t.toArray();
  const mean = a.reduce((s, v) => s + v, 0) / n;
  const std = Math.sqrt(a.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1));
  assert.ok(Math.abs(mean) < 5 * 0.02 / Math.sqrt(n), `mean ${mean}`);
  assert.ok(Math.abs(std - 0.02) < 0.02 * 0.01, `std ${std}`); // bounds +-2 are 100 std away: no truncation
  assert.ok(a.every((v) => v >= -2 && v <= 2));
  // std 1 truncated to [-2, 2]: variance 1 - 2 * 2 phi(2) / (Phi(2) - Phi(-2)) = 0.7737, std 0.8796
  const u = truncNormal_(empty([n]), 1, new Generator(6)).toArray();
  assert.ok(u.every((v) => v >= -2 && v <= 2));
  const um = u.reduce((s, v) => s + v, 0) / n;
  const us = Math.sqrt(u.reduce((s, v) => s + (v - um) ** 2, 0) / (n - 1));
  assert.ok(Math.abs(us - 0.8796) < 0.01, `truncated std ${us}`);
  assert.ok(u.reduce((m, v) => Math.max(m, Math.abs(v)), 0) > 1.95, 'the tails reach the bounds');
  assert.deepEqual(truncNormal_(empty([64]), 0.02, new Generator(7)).toArray(), truncNormal_(empty([64]), 0.02, new Generator(7)).toArray());
});

function checkModel(tag: string, named: [string, Tensor][], decayGroups: ParamGroup[]): void {
  const all = named.reduce((s, [, p]) => s + p.numel, 0);
  const trainable = named.filter(([, p]) => p.requiresGrad).reduce((s, [, p]) => s + p.numel, 0);
  assert.equal(all, ref[`count.${tag}.all`]!.item(), `${tag}: parameter count`);
  assert.equal(trainable, ref[`count.${tag}.trainable`]!.item(), `${tag}: trainable parameter count`);
  const refNames = Object.keys(ref).filter((k) => k.startsWith(`shape.${tag}.`)).map((k) => k.slice(`shape.${tag}.`.length));
  assert.deepEqual(named.map(([n]) => n), refNames, `${tag}: parameter names and order`);
  for (const [n, p] of named) assert.deepEqual(p.shape, ref[`shape.${tag}.${n}`]!.toArray(), `${tag}: shape of ${n}`);
  const decay = new Set(decayGroups.find((g) => g.decay)!.params.map(([n]) => n));
  const noDecay = new Set(decayGroups.find((g) => !g.decay)!.params.map(([n]) => n));
  for (const [n, p] of named) {
    if (!p.requiresGrad) { assert.ok(!decay.has(n) && !noDecay.has(n), `${tag}: frozen ${n} is in no group`); continue; }
    assert.equal(decay.has(n), ref[`decay.${tag}.${n}`]!.item() === 1, `${tag}: weight decay on ${n}`);
    assert.equal(noDecay.has(n), !decay.has(n));
  }
}

test('VisionTransformer vit_tiny/16 at 224 and a predictor: parameter count, names, shapes and decay groups as the reference', () => {
  const enc = new VisionTransformer(vitConfig('vit_tiny', { imgSize: 224, patchSize: 16, inChans: 3 }));
  checkModel('vit_tiny', enc.namedParameters(), ijepaParamGroups(enc.namedParameters()));
  assert.equal(enc.numParameters() - 196 * 192, ref['count.vit_tiny.trainable']!.item(), 'the frozen pos_embed is 196 x 192');
  const pred = new Predictor({ grid: [14, 14], embedDim: 192, ...TINY_PRED });
  checkModel('predictor', pred.namedParameters(), ijepaParamGroups(pred.namedParameters()));
  enc.dispose(); pred.dispose();
});

test('the patch embedding hands the blocks a contiguous (B, N, C) stream: the same values as conv -> flatten -> transpose', () => {
  const enc = new VisionTransformer(vitConfig('vit_tiny', { imgSize: 32, patchSize: 4, inChans: 3, depth: 1 }));
  const images = randn([2, 3, 32, 32], { generator: new Generator(3) });
  noGrad(() => {
    const x = enc.patchEmbed.forward(images);
    assert.deepEqual(x.shape, [2, 64, 192]);
    // a transposed view here kept its layout through every residual add, and each LayerNorm copied it first
    assert.equal(x.isContiguous(), true, 'patch embedding output contiguous');
    const w = enc.patchEmbed.proj.weight, b = enc.patchEmbed.proj.bias;
    const ref = F.conv2d(images, w, b, { stride: 4 }).flatten(2).transpose(1, 2);
    assert.equal(ref.isContiguous(), false, 'the view it replaces is not');
    assert.equal(maxAbsDiff(x, ref), 0);
  });
  enc.dispose();
});

test('every named ViT size has the reference width, depth, heads and MLP ratio; vit_giant builds as the reference', () => {
  assert.deepEqual(Object.keys(VIT_SIZES).sort(), Object.keys(ref).filter((k) => k.startsWith('size.')).map((k) => k.slice(5)).sort());
  for (const name of Object.keys(VIT_SIZES)) {
    const c = vitConfig(name, { imgSize: 224, patchSize: 16, inChans: 3 });
    assert.deepEqual([c.embedDim, c.depth, c.numHeads, c.mlpRatio ?? 4], ref[`size.${name}`]!.toArray(), name);
  }
  // one block of vit_giant: its MLP is 6144 wide (48/11 of 1408), as the official vit_giant
  const enc = new VisionTransformer(vitConfig('vit_giant', { imgSize: 16, patchSize: 16, inChans: 3, depth: 1 }));
  assert.equal(enc.blocks[0]!.mlp.fc1.outFeatures, ref['hidden.giant1']!.item());
  assert.equal(enc.numParameters(), ref['count.giant1']!.item(), 'vit_giant (depth 1): parameter count');
  enc.dispose();
});
