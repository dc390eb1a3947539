// One training step of each method against an idiomatic PyTorch reference (test/py/ref_jepa.py, the
// official I-JEPA / VICReg model code's structure and parameter names). Same initial weights (our state
// dicts, loaded into PyTorch with strict=True, which also proves the names are the official ones), same
// images, same masks: every loss term, every parameter gradient, every parameter after one AdamW step
// and every target-encoder parameter after the EMA update agree to 1e-4 relative (max|a-b| / max|b|).
//
// The AdamW step is taken on the reference's gradients (after ours were compared with them): Adam divides
// every gradient element by its own magnitude, so elements that are zero up to float rounding (attention
// key biases under softmax's shift invariance, Linear biases in front of a training-mode BatchNorm, tiny
// entries near eps) would make both sides step +-lr on rounding noise. With identical gradients the
// optimizer and EMA arithmetic is compared exactly; the gradients themselves are compared to 1e-4.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, Generator, randn, noGrad, setPrecision, cpuHasBf16 } from '../src/tensor/index.js';
import { VisionTransformer, type ViTConfig } from '../src/nn/vit.js';
import { Predictor, type PredictorConfig } from '../src/nn/predictor.js';
import { Expander } from '../src/nn/expander.js';
import { MultiBlockMaskSampler, type MultiBlockMaskConfig } from '../src/method/masks.js';
import { jepaForward, jepaTargets, maskTensors, vicregForward } from '../src/method/step.js';
import { ijepaLoss, VICREG_WEIGHTS, type CjepaOptions, type CjepaPlacement, type Decorrelation } from '../src/method/losses.js';
import { AdamW, ijepaParamGroups } from '../src/method/optim.js';
import { emaUpdate } from '../src/method/ema.js';
import { runTorch, maxAbsDiff } from './util/pytorch.js';

const TOL = 1e-4;
// bf16 autocast: the same kernels on both sides, but bf16 rounding (8 bits of mantissa) of any op whose
// order differs is ~4e-3 relative and reaches the gradients amplified (measured worst: 1.2e-2, a LayerNorm bias).
// On CPUs without AVX512-BF16 / AMX, libtorch 1.13 emulates bf16 and its bf16 mm / bmm accumulate in bf16 on both
// sides (measured on a Zen 3: 3-12 % of the product's max for K = 192-768, against 0.2 % with fp32 accumulation),
// so the first block's small bias gradients drift further apart (measured worst there: 3.0e-2); `auto` never picks
// bf16 on such CPUs, and `pretrain` warns when it is forced there.
const BF16_TOL = cpuHasBf16() ? 2e-2 : 6e-2;
const tolOf = (caseName: string) => caseName.endsWith('_bf16') ? BF16_TOL : TOL;
const LR = 1e-3, WD = 0.04, MOMENTUM = 0.996;
const B = 4, IMG = 16, PATCH = 4, GRID: [number, number] = [4, 4];
const ENC: ViTConfig = { imgSize: IMG, patchSize: PATCH, inChans: 3, embedDim: 32, depth: 2, numHeads: 2, seed: 7 };
const PRED: PredictorConfig = { grid: GRID, embedDim: 32, predictorEmbedDim: 16, depth: 1, numHeads: 2, seed: 7 };
const EXPANDER = [32, 64, 64, 64];
// A multi-block config that fits a 4x4 grid: 4 targets of 2 patches, a 3x3 context minus the targets.
const MASKS: MultiBlockMaskConfig = {
  gridSize: GRID, nTargets: 4, targetScale: [0.125, 0.125], targetAspect: [0.5, 2], contextScale: [0.85, 1.0],
  contextAspect: [1, 1], minKeep: 1, allowOverlap: false, mode: 'unbiased',
};

interface JepaCase { kind: 'jepa'; name: string; beta: number; placement: CjepaPlacement; projector?: boolean; bf16?: boolean; fullView?: boolean; teacherView?: boolean; decorrelate?: Decorrelation; stdTarget?: number }
interface VicregCase { kind: 'vicreg'; name: string }
type Case = JepaCase | VicregCase;
const CASES: Case[] = [
  { kind: 'jepa', name: 'ijepa', beta: 0, placement: 'block-pair' },
  { kind: 'jepa', name: 'cjepa', beta: 0.1, placement: 'block-pair' },
  { kind: 'jepa', name: 'cjepa_patch', beta: 0.1, placement: 'patch' },
  { kind: 'jepa', name: 'cjepa_context', beta: 0.1, placement: 'context' },
  // the scale-free decorrelation term (cjepa.decorrelate: correlation)
  { kind: 'jepa', name: 'cjepa_context_corr', beta: 0.1, placement: 'context', decorrelate: 'correlation' },
  // VICReg between the pooled context tokens and the EMA teacher's pooled view of the whole image
  { kind: 'jepa', name: 'cjepa_target', beta: 0.1, placement: 'target' },
  // cjepa.stdTarget: the variance hinge asks each pooled dimension for a std of 0.5 instead of 1
  { kind: 'jepa', name: 'cjepa_target_std', beta: 0.1, placement: 'target', stdTarget: 0.5 },
  { kind: 'jepa', name: 'cjepa_target_proj', beta: 0.1, placement: 'target', projector: true },
  // cjepa.teacherView 'augmented': the teacher pools a second view of each image (view2 here)
  { kind: 'jepa', name: 'cjepa_target_view', beta: 0.1, placement: 'target', teacherView: true },
  // two views: the batch of 4 is read as view 1 of images {0, 1} then view 2 of the same images
  { kind: 'jepa', name: 'cjepa_views', beta: 0.1, placement: 'views', projector: true },
  // bf16 autocast on both sides (torch.autocast in the reference): compared at BF16_TOL
  { kind: 'jepa', name: 'cjepa_views_bf16', beta: 0.1, placement: 'views', projector: true, bf16: true },
  // views with cjepa.viewInput 'full': VICReg on a full (unmasked) pass of the online encoder
  { kind: 'jepa', name: 'cjepa_views_full', beta: 0.1, placement: 'views', projector: true, fullView: true },
  { kind: 'vicreg', name: 'vicreg' },
];

/** Everything one step produces, by the names the Python side uses ('terms.loss', 'grad.encoder.x', ...). */
type StepResult = Record<string, Tensor>;

let images: Tensor, view1: Tensor, view2: Tensor;
let ctxMasks: Tensor[], tgtMasks: Tensor[];
let initEncoder: Record<string, Tensor>, initPredictor: Record<string, Tensor>, initExpander: Record<string, Tensor>;
const ours: Record<string, StepResult> = {};
let ref: Record<string, Tensor> = {};

function cloneDict(d: Record<string, Tensor>): Record<string, Tensor> {
  return noGrad(() => Object.fromEntries(Object.entries(d).map(([k, t]) => [k, t.detach().clone()])));
}
function prefixed(prefix: string, d: Record<string, Tensor>): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(d).map(([k, t]) => [prefix + k, t]));
}
function record(out: StepResult, what: 'grad' | 'param', mods: [string, { namedParameters(): [string, Tensor][] }][]): void {
  noGrad(() => {
    for (const [modName, m] of mods) {
      for (const [n, p] of m.namedParameters()) {
        if (what === 'grad') {
          const g = p.grad;
          if (g !== undefined) out[`grad.${modName}.${n}`] = g.clone();
        } else out[`param.${modName}.${n}`] = p.detach().clone();
      }
    }
  });
}

function jepaNets(): { encoder: VisionTransformer; predictor: Predictor; targetEncoder: VisionTransformer } {
  const encoder = new VisionTransformer(ENC);
  encoder.loadStateDict(initEncoder);
  const predictor = new Predictor(PRED);
  predictor.loadStateDict(initPredictor);
  // the target encoder is a copy of the encoder (official: copy.deepcopy)
  const targetEncoder = new VisionTransformer(ENC);
  targetEncoder.loadStateDict(encoder.stateDict());
  for (const p of targetEncoder.parameters()) p.requiresGrad_(false);
  return { encoder, predictor, targetEncoder };
}

function cjepaOptions(beta: number, placement: CjepaPlacement, decorrelate: Decorrelation = 'covariance', stdTarget = 1): CjepaOptions {
  return { betaVicreg: beta, weights: { ...VICREG_WEIGHTS, decorrelate, stdTarget }, placement, distance: 'smooth_l1' };
}

/** Replaces every gradient with the reference's (see the header), checking both have the same set. */
function useReferenceGrads(caseName: string, mods: [string, { namedParameters(): [string, Tensor][] }][]): void {
  noGrad(() => {
    for (const [modName, m] of mods) {
      for (const [n, p] of m.namedParameters()) {
        const g = ref[`${caseName}/grad.${modName}.${n}`];
        assert.equal(g !== undefined, p.requiresGrad, `${caseName}: reference gradient of ${modName}.${n}`);
        if (g !== undefined) p.grad = g.clone();
      }
    }
  });
}

function runJepa(c: JepaCase): StepResult {
  const out: StepResult = {};
  const nets = jepaNets();
  const projector = c.projector ? new Expander(EXPANDER, 7) : null;
  projector?.loadStateDict(initExpander);
  const mods: [string, VisionTransformer | Predictor | Expander][] = [['encoder', nets.encoder], ['predictor', nets.predictor], ...(projector ? [['projector', projector] as [string, Expander]] : [])];
  const opt = new AdamW(ijepaParamGroups(mods.flatMap(([, m]) => m.namedParameters())));
  if (c.bf16) setPrecision('bf16');
  const terms = jepaForward(nets, images, ctxMasks, tgtMasks, cjepaOptions(c.beta, c.placement, c.decorrelate, c.stdTarget), undefined, projector ? (x) => projector.forward(x) : undefined, { fullView: c.fullView ?? false, ...(c.teacherView ? { teacherImages: view2 } : {}) });
  setPrecision('fp32');
  const keys = c.beta === 0 ? (['loss', 'jepa'] as const) : (['loss', 'jepa', 'vicreg', 'inv', 'var', 'cov'] as const);
  for (const k of keys) out[`terms.${k}`] = terms[k].detach().reshape([1]);
  if (c.beta === 0) for (const k of ['vicreg', 'inv', 'var', 'cov'] as const) assert.equal(terms[k].item(), 0, `I-JEPA: ${k} is 0`);
  terms.loss.backward();
  record(out, 'grad', mods);
  useReferenceGrads(c.name, mods);
  opt.update(LR, WD);
  record(out, 'param', mods);
  emaUpdate(nets.targetEncoder.parameters(), nets.encoder.parameters(), MOMENTUM);
  record(out, 'param', [['target', nets.targetEncoder]]);
  for (const t of Object.values(terms)) t.dispose();
  opt.dispose();
  projector?.dispose();
  nets.encoder.dispose(); nets.predictor.dispose(); nets.targetEncoder.dispose();
  return out;
}

function runVicreg(): StepResult {
  const out: StepResult = {};
  const encoder = new VisionTransformer(ENC);
  encoder.loadStateDict(initEncoder);
  const expander = new Expander(EXPANDER, 7);
  expander.loadStateDict(initExpander);
  const opt = new AdamW(ijepaParamGroups([...encoder.namedParameters(), ...expander.namedParameters()]));
  const terms = vicregForward(encoder, expander, view1, view2, VICREG_WEIGHTS);
  for (const k of ['loss', 'inv', 'var', 'cov'] as const) out[`terms.${k}`] = terms[k].detach().reshape([1]);
  terms.loss.backward();
  const mods: [string, VisionTransformer | Expander][] = [['encoder', encoder], ['expander', expander]];
  record(out, 'grad', mods);
  useReferenceGrads('vicreg', mods);
  opt.update(LR, WD);
  record(out, 'param', mods);
  noGrad(() => { for (const [n, b] of expander.namedBuffers()) out[`buffer.expander.${n}`] = b.to('float32').reshape([-1]); });
  opt.dispose(); encoder.dispose(); expander.dispose();
  return out;
}

const PY_CFG = {
  encoder: { img_size: IMG, patch_size: PATCH, in_chans: 3, embed_dim: ENC.embedDim, depth: ENC.depth, num_heads: ENC.numHeads },
  predictor: { num_patches: GRID[0] * GRID[1], embed_dim: PRED.embedDim, predictor_embed_dim: PRED.predictorEmbedDim, depth: PRED.depth, num_heads: PRED.numHeads },
  expander: EXPANDER,
  weights: VICREG_WEIGHTS,
  lr: LR, wd: WD, momentum: MOMENTUM,
};

before(() => {
  const gen = new Generator(1234);
  images = randn([B, 3, IMG, IMG], { generator: gen });
  view1 = randn([B, 3, IMG, IMG], { generator: gen });
  view2 = view1.mul(0.7).add(randn([B, 3, IMG, IMG], { generator: gen }).mul(0.5));
  const m = new MultiBlockMaskSampler(MASKS, 3).sample(B);
  assert.ok(m.targetLength >= 2 && m.contextLength >= 3, `masks: Lt ${m.targetLength}, Lc ${m.contextLength}`);
  ({ ctx: ctxMasks, tgt: tgtMasks } = maskTensors(m));
  const enc = new VisionTransformer(ENC), pred = new Predictor(PRED), exp = new Expander(EXPANDER, 7);
  initEncoder = cloneDict(enc.stateDict());
  initPredictor = cloneDict(pred.stateDict());
  initExpander = cloneDict(exp.stateDict());
  enc.dispose(); pred.dispose(); exp.dispose();

  // One Python process for all cases (importing torch is the slow part).
  const calls = CASES.map((c) => c.kind === 'jepa'
    ? `ref_jepa.jepa_step(inp, out, '${c.name}/', dict(cfg, beta_vicreg=${c.beta}, placement='${c.placement}', projector=${c.projector ? 'True' : 'False'}, bf16=${c.bf16 ? 'True' : 'False'}, full_view=${c.fullView ? 'True' : 'False'}, teacher_view=${c.teacherView ? 'True' : 'False'}, weights=dict(cfg['weights'], decorrelate='${c.decorrelate ?? 'covariance'}', std_target=${c.stdTarget ?? 1})))`
    : `ref_jepa.vicreg_step(inp, out, '${c.name}/', cfg)`);
  ref = runTorch([
    'import json, ref_jepa',
    `cfg = json.loads(${JSON.stringify(JSON.stringify(PY_CFG))})`,
    ...calls,
  ].join('\n'), {
    images, view1, view2,
    ...prefixed('masks_enc.', Object.fromEntries(ctxMasks.map((t, i) => [String(i), t]))),
    ...prefixed('masks_pred.', Object.fromEntries(tgtMasks.map((t, i) => [String(i), t]))),
    ...prefixed('encoder.', initEncoder),
    ...prefixed('predictor.', initPredictor),
    ...prefixed('expander.', initExpander),
  });

  for (const c of CASES) ours[c.name] = c.kind === 'jepa' ? runJepa(c) : runVicreg();
});

/**
 * Gradients that are zero in exact arithmetic, so their max|ref| is rounding noise and a relative error
 * means nothing: VICReg's expander Linear biases feed a training-mode BatchNorm (which removes any
 * constant shift), and the encoder's final-norm bias shifts every token alike, which survives mean
 * pooling and the first expander Linear as a constant and is removed by that BatchNorm. For these both
 * sides must be ~0: below 1e-4 of the largest gradient of the model.
 */
const STRUCTURAL_ZERO_GRADS: Record<string, string[]> = {
  vicreg: ['grad.expander.0.bias', 'grad.expander.3.bias', 'grad.encoder.norm.bias'],
  cjepa_views: ['grad.projector.0.bias', 'grad.projector.3.bias'],
  cjepa_views_bf16: ['grad.projector.0.bias', 'grad.projector.3.bias'],
  cjepa_views_full: ['grad.projector.0.bias', 'grad.projector.3.bias'],
  cjepa_target_proj: ['grad.projector.0.bias', 'grad.projector.3.bias'],
};

/**
 * Gradients that are sums of nearly cancelling parts, so a relative error is rounding noise: with two
 * views, the encoder's final-norm bias gets nothing from VICReg (the projector's BatchNorm removes a
 * shared shift) and a tiny remainder from the JEPA term. Compared in absolute terms: |ours - ref| below
 * TOL times the largest gradient of the model.
 */
const CANCELLING_GRADS: Record<string, string[]> = {
  cjepa_views: ['grad.encoder.norm.bias'],
  cjepa_target_proj: ['grad.encoder.norm.bias'],
  cjepa_views_bf16: ['grad.encoder.norm.bias'],
  cjepa_views_full: ['grad.encoder.norm.bias'],
};

function maxAbs(t: Tensor): number {
  return Math.max(...t.to('float64').toArray().map(Math.abs));
}

/** Initial value of a 'param.<module>.<name>' entry (the target encoder starts as the encoder). */
function initialValue(key: string): Tensor | undefined {
  const [, mod, ...rest] = key.split('.');
  const name = rest.join('.');
  const dict = { encoder: initEncoder, target: initEncoder, predictor: initPredictor, expander: initExpander, projector: initExpander }[mod!];
  return dict?.[name];
}

function relDiff(a: Tensor, b: Tensor): { rel: number; scale: number } {
  const scale = maxAbs(b);
  return { rel: maxAbsDiff(a, b) / (scale || 1e-30), scale };
}

/**
 * Every tensor: max |a - b| / max |b| <= TOL. Trained parameters are also compared on their update
 * (after - before), which is what the optimizer decides (a weight-decay slip on a LayerNorm weight of
 * 1 is 4e-5 of the weight but 4% of its update). Returns failures and the worst error per kind.
 */
function compare(caseName: string): { failures: string[]; worst: Record<string, string>; counts: Record<string, number> } {
  const mine = ours[caseName]!;
  const tol = tolOf(caseName);
  const theirs = Object.fromEntries(Object.entries(ref).filter(([k]) => k.startsWith(`${caseName}/`)).map(([k, v]) => [k.slice(caseName.length + 1), v]));
  assert.deepEqual(Object.keys(mine).sort(), Object.keys(theirs).sort(), `${caseName}: the same tensors on both sides`);
  const failures: string[] = [];
  const worst: Record<string, string> = {}, worstRel: Record<string, number> = {};
  const counts: Record<string, number> = {};
  const zeros = STRUCTURAL_ZERO_GRADS[caseName] ?? [];
  for (const z of zeros) assert.ok(z in theirs, `${caseName}: ${z} exists`);
  const gradScale = Math.max(...Object.entries(theirs).filter(([k]) => k.startsWith('grad.')).map(([, t]) => maxAbs(t)));
  const check = (kind: string, k: string, a: Tensor, b: Tensor) => {
    assert.deepEqual(a.shape, b.shape, `${caseName} ${k}: shape`);
    const { rel, scale } = relDiff(a, b);
    const line = `${k}: rel ${rel.toExponential(2)} (max|ref| ${scale.toExponential(2)})`;
    if (!(rel <= tol)) failures.push(line);
    if (!(rel <= (worstRel[kind] ?? -1))) { worstRel[kind] = rel; worst[kind] = line; }
    counts[kind] = (counts[kind] ?? 0) + 1;
  };
  for (const [k, b] of Object.entries(theirs)) {
    const a = mine[k]!;
    if (zeros.includes(k)) {
      const line = `${k}: zero in exact arithmetic, max|ours| ${maxAbs(a).toExponential(2)}, max|ref| ${maxAbs(b).toExponential(2)}, largest gradient ${gradScale.toExponential(2)}`;
      if (!(Math.max(maxAbs(a), maxAbs(b)) <= 1e-4 * gradScale)) failures.push(line);
      counts.grad = (counts.grad ?? 0) + 1;
      continue;
    }
    if ((CANCELLING_GRADS[caseName] ?? []).includes(k)) {
      const d = maxAbsDiff(a, b);
      if (!(d <= tol * gradScale)) failures.push(`${k}: |ours - ref| ${d.toExponential(2)} > ${tol} x largest gradient ${gradScale.toExponential(2)}`);
      counts.grad = (counts.grad ?? 0) + 1;
      continue;
    }
    const kind = k.startsWith('param.target.') ? 'target' : k.split('.')[0]!;
    check(kind, k, a, b);
    const init = kind === 'param' ? initialValue(k) : undefined;
    if (init) {
      // float64 differences of the float32 values: exact, so only the steps' own rounding remains
      const i64 = init.to('float64');
      check('update', k.replace(/^param/, 'update'), a.to('float64').sub(i64), b.to('float64').sub(i64));
    }
  }
  return { failures, worst, counts };
}

interface Expected { grads: number; params: number; target?: number; buffers?: number; terms: number }

function checkCase(t: { diagnostic(msg: string): void }, name: string, expect: Expected): void {
  const { failures, worst, counts } = compare(name);
  for (const [kind, line] of Object.entries(worst)) t.diagnostic(`worst ${kind}: ${line}`);
  assert.deepEqual(failures, [], `${name}: tensors beyond ${tolOf(name)} relative:\n${failures.join('\n')}`);
  assert.equal(counts.terms, expect.terms, `${name}: loss terms compared`);
  assert.equal(counts.grad, expect.grads, `${name}: gradients compared`);
  assert.equal(counts.param, expect.params, `${name}: parameters compared`);
  assert.equal(counts.update, expect.params, `${name}: updates compared`);
  assert.equal(counts.target ?? 0, expect.target ?? 0, `${name}: target-encoder parameters compared`);
  assert.equal(counts.buffer ?? 0, expect.buffers ?? 0, `${name}: buffers compared`);
}

function nParams(m: { namedParameters(): [string, Tensor][] }, trainableOnly: boolean): number {
  return m.namedParameters().filter(([, p]) => !trainableOnly || p.requiresGrad).length;
}

function jepaCounts(terms: number): Expected {
  const enc = new VisionTransformer(ENC), pred = new Predictor(PRED);
  const r = {
    terms,
    grads: nParams(enc, true) + nParams(pred, true),
    params: nParams(enc, false) + nParams(pred, false),
    target: nParams(enc, false),
  };
  enc.dispose(); pred.dispose();
  return r;
}

test('I-JEPA step matches the PyTorch reference: loss, gradients, AdamW step, EMA', (t) => {
  checkCase(t, 'ijepa', jepaCounts(2));
});

test('C-JEPA step (block-pair VICReg, beta 0.1) matches the PyTorch reference', (t) => {
  checkCase(t, 'cjepa', jepaCounts(6));
  // the regulariser matters: its weighted value is a sizeable part of the loss and changes the gradients
  const c = ours.cjepa!, i = ours.ijepa!;
  assert.ok(c['terms.vicreg']!.item() * 0.1 > 0.1 * c['terms.jepa']!.item(), 'beta * vicreg is not negligible');
  const g = 'grad.predictor.predictor_proj.weight';
  assert.ok(maxAbsDiff(c[g]!, i[g]!) > 1e-2 * maxAbsDiff(i[g]!, i[g]!.mul(0)), 'the VICReg term changes the gradients');
});

test('C-JEPA step with the patch-level placement matches the PyTorch reference', (t) => {
  checkCase(t, 'cjepa_patch', jepaCounts(6));
});

test('C-JEPA step with the context placement matches the PyTorch reference', (t) => {
  checkCase(t, 'cjepa_context', jepaCounts(6));
});

test('C-JEPA step with the correlation form of the decorrelation term matches the PyTorch reference', (t) => {
  checkCase(t, 'cjepa_context_corr', jepaCounts(6));
  // the option changes what is optimised: the cov term and the gradients differ from the covariance form
  const corr = ours['cjepa_context_corr']!, cov = ours['cjepa_context']!;
  assert.ok(Math.abs(corr['terms.cov']!.item() - cov['terms.cov']!.item()) > 1e-3 * Math.abs(cov['terms.cov']!.item()), 'correlation and covariance terms differ');
});

test("C-JEPA step with the 'target' placement (context vs the teacher's whole image) matches the PyTorch reference", (t) => {
  checkCase(t, 'cjepa_target', jepaCounts(6));
  // the teacher side carries no gradient: the invariance term differs from the 'context' placement's
  const tg = ours['cjepa_target']!, ctx = ours['cjepa_context']!;
  assert.ok(Math.abs(tg['terms.inv']!.item() - ctx['terms.inv']!.item()) > 1e-3 * Math.abs(ctx['terms.inv']!.item()), 'target and context invariance terms differ');
});

test('C-JEPA step with a variance hinge at std 0.5 (cjepa.stdTarget) matches the PyTorch reference', (t) => {
  checkCase(t, 'cjepa_target_std', jepaCounts(6));
  // the same step as 'cjepa_target' but for the hinge's target: a smaller variance term, the same invariance
  const half = ours['cjepa_target_std']!, one = ours['cjepa_target']!;
  assert.ok(half['terms.var']!.item() < one['terms.var']!.item() - 1e-3, `var term at std 0.5 (${half['terms.var']!.item()}) below the one at 1 (${one['terms.var']!.item()})`);
  assert.ok(Math.abs(half['terms.inv']!.item() - one['terms.inv']!.item()) < 1e-6, 'the invariance term does not depend on the hinge');
});

/** A two-view case: the JEPA networks' counts plus the projector's parameters. */
function checkProjectorCase(t: Parameters<typeof checkCase>[0], name: string): void {
  const exp = new Expander(EXPANDER, 7);
  const base = jepaCounts(6);
  checkCase(t, name, { ...base, grads: base.grads + nParams(exp, true), params: base.params + nParams(exp, false) });
  exp.dispose();
}

test('C-JEPA step with two views (VICReg between pooled context embeddings, through a projector) matches the PyTorch reference', (t) => {
  checkProjectorCase(t, 'cjepa_views');
  // the regulariser acts on the encoder: its gradients differ from I-JEPA's
  const g = 'grad.encoder.blocks.0.attn.qkv.weight';
  assert.ok(maxAbsDiff(ours.cjepa_views![g]!, ours.ijepa![g]!) > 1e-3 * maxAbs(ours.ijepa![g]!), 'the VICReg term changes the encoder gradients');
});

test("C-JEPA 'target' placement through a projector (both sides, cjepa.projector) matches the PyTorch reference", (t) => {
  checkProjectorCase(t, 'cjepa_target_proj');
  // the projector really sits between the pooled embeddings and VICReg: the terms differ from the plain target step's
  const p = ours['cjepa_target_proj']!, plain = ours['cjepa_target']!;
  assert.ok(Math.abs(p['terms.inv']!.item() - plain['terms.inv']!.item()) > 1e-3 * Math.abs(plain['terms.inv']!.item()), 'projected and plain invariance terms differ');
  assert.ok(Math.abs(p['terms.jepa']!.item() - plain['terms.jepa']!.item()) < 1e-6, 'the JEPA term does not depend on the projector');
});

test('C-JEPA two-view step under bf16 autocast matches PyTorch under torch.autocast (2e-2 relative)', (t) => {
  checkProjectorCase(t, 'cjepa_views_bf16');
  // bf16 really ran: the loss differs from the fp32 step's beyond fp32 rounding, and every gradient is fp32
  const lb = ours.cjepa_views_bf16!['terms.jepa']!.item(), lf = ours.cjepa_views!['terms.jepa']!.item();
  assert.ok(Math.abs(lb - lf) > 1e-5 * Math.abs(lf), `bf16 loss ${lb} vs fp32 ${lf}`);
  for (const [k, g] of Object.entries(ours.cjepa_views_bf16!)) if (k.startsWith('grad.')) assert.equal(g.dtype, 'float32', k);
});

test('C-JEPA two-view step with VICReg on a full (unmasked) encoder pass matches the PyTorch reference', (t) => {
  checkProjectorCase(t, 'cjepa_views_full');
  // the regulariser read other embeddings than the context tokens: its terms differ from 'context' input's
  const a = ours.cjepa_views_full!['terms.vicreg']!.item(), b = ours.cjepa_views!['terms.vicreg']!.item();
  assert.ok(Math.abs(a - b) > 1e-4 * Math.abs(b), `vicreg term ${a} vs ${b}`);
  assert.equal(ours.cjepa_views_full!['terms.jepa']!.item(), ours.cjepa_views!['terms.jepa']!.item(), 'same JEPA term');
});

test('VICReg step (encoder, expander with BatchNorm) matches the PyTorch reference', (t) => {
  const enc = new VisionTransformer(ENC), exp = new Expander(EXPANDER, 7);
  const expect = {
    terms: 4,
    grads: nParams(enc, true) + nParams(exp, true),
    params: nParams(enc, false) + nParams(exp, false),
    buffers: exp.namedBuffers().length,
  };
  enc.dispose(); exp.dispose();
  checkCase(t, 'vicreg', expect);
});

test('C-JEPA with beta_vicreg = 0 reproduces I-JEPA exactly (bitwise loss and gradients)', () => {
  const run = (useCjepa: boolean) => {
    const nets = jepaNets();
    let loss: Tensor;
    if (useCjepa) {
      loss = jepaForward(nets, images, ctxMasks, tgtMasks, cjepaOptions(0, 'block-pair')).loss;
    } else {
      // plain I-JEPA: target features, context encoder, predictor, smooth L1
      const h = jepaTargets(nets.targetEncoder, images, ctxMasks, tgtMasks);
      const z = nets.predictor.forward(nets.encoder.forward(images, ctxMasks), ctxMasks, tgtMasks);
      loss = ijepaLoss(z, h);
    }
    loss.backward();
    const grads: StepResult = {};
    record(grads, 'grad', [['encoder', nets.encoder], ['predictor', nets.predictor]]);
    const value = loss.item();
    nets.encoder.dispose(); nets.predictor.dispose(); nets.targetEncoder.dispose();
    return { value, grads };
  };
  const a = run(true), b = run(false);
  assert.ok(Object.is(a.value, b.value), `loss ${a.value} vs ${b.value}`);
  assert.deepEqual(Object.keys(a.grads), Object.keys(b.grads));
  assert.ok(Object.keys(a.grads).length > 0);
  for (const [k, g] of Object.entries(a.grads)) {
    const x = g.data<'float32'>(), y = b.grads[k]!.data<'float32'>();
    assert.equal(Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(y.buffer, y.byteOffset, y.byteLength)), 0, `${k}: gradients differ`);
  }
  // and both equal the reference step's loss (the I-JEPA case above)
  assert.ok(Math.abs(a.value - ref['ijepa/terms.loss']!.item()) <= TOL * Math.abs(a.value));
});
