// Evaluation: k-NN (exactness on separable clusters, DINO's vote weighting by hand and against PyTorch),
// the linear probe (separable -> 100%, random labels -> chance, optimiser reaches the L-BFGS optimum,
// train-only standardisation), pooling against the PyTorch reference ViT, RankMe / spectrum known
// answers, layer-wise lr decay, and eval / embed / fine-tuning on checkpoints from tiny pretraining runs.
import { writeQuadrantIdx } from './util/synthetic.js';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Tensor, Generator, randn, tensor, eye, F, noGrad, tidy, setNumThreads, getNumThreads, cat, liveTensors, gcReleasedTensors } from '../src/tensor/index.js';
import { encodeIdx, openDataset, SubsetDataset } from '../src/data/index.js';
import { resolveConfig, type PretrainConfig } from '../src/config.js';
import { pretrain } from '../src/method/trainer.js';
import { resolveCheckpointDir } from '../src/method/checkpoint.js';
import { loadTensors, saveTensors } from '../src/io/tensors.js';
import { VisionTransformer } from '../src/nn/vit.js';
import {
  knnClassify, linearProbe, trainLinear, linearObjective, predictLinear, accuracy, poolFeatures, extractFeatures,
  loadEncoderFromCheckpoint, evaluateCheckpoint, embedDataset, finetune, rankMe, covarianceSpectrum, normalisedStd, layerScales, layerId,
  collapseStats, collapseVerdict, healthyStd, splitSeed, TokenRankMe,
} from '../src/eval/index.js';
import { runTorch, maxAbsDiff } from './util/pytorch.js';
import { makeFolder } from './fixtures/data_fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'cjepa-eval-'));
process.env['CJEPA_DATA'] = join(dir, 'data-cache'); // folder file lists: not into ~/.cache
const prevThreads = getNumThreads();
setNumThreads(1); // tiny ops: one thread is several times faster on a loaded 2-core machine
after(() => { setNumThreads(prevThreads); rmSync(dir, { recursive: true, force: true }); });

const gen = new Generator(7);
const labelsOf = (t: Tensor) => t.to('int32').data<'int32'>();

/** n points per class around C well-separated random centres in D dims. */
function clusters(C: number, n: number, D: number, spread: number, g: Generator): { x: Tensor; y: Int32Array } {
  const centres = randn([C, D], { generator: g }).mul(5);
  const y = Int32Array.from({ length: C * n }, (_, i) => i % C);
  const x = tidy(() => centres.index(tensor(y, [y.length]).long()).add(randn([C * n, D], { generator: g }).mul(spread)));
  centres.dispose();
  return { x, y };
}

// ---------------------------------------------------------------- inputs of the PyTorch references
const knnTrain = randn([30, 8], { generator: gen }), knnTest = randn([10, 8], { generator: gen });
const knnTrainY = Int32Array.from({ length: 30 }, (_, i) => (i * 7) % 3), knnTestY = Int32Array.from({ length: 10 }, (_, i) => i % 3);
const lp = (() => {
  const x = randn([300, 12], { generator: gen }); // unit scale, as the probe's standardised features
  const w = randn([4, 12], { generator: gen });
  const y = labelsOf(F.linear(x, w).add(randn([300, 4], { generator: gen }).mul(2)).argmax(1));
  return { x, y, l2: 1e-2 };
})();
const vit = new VisionTransformer({ imgSize: 16, patchSize: 4, inChans: 1, embedDim: 32, depth: 5, numHeads: 2, seed: 5 });
// make the blocks' outputs differ from their inputs enough for the test to mean something
noGrad(() => { for (const [, p] of vit.namedParameters()) if (p.ndim >= 2 && p.requiresGrad) p.mul_(5); });
const images = randn([3, 1, 16, 16], { generator: gen });
let ref: Record<string, Tensor> = {};

before(() => {
  const inputs: Record<string, Tensor> = {
    knn_train: knnTrain, knn_test: knnTest, knn_train_y: tensor(knnTrainY, [30]).long(), knn_test_y: tensor(knnTestY, [10]).long(),
    lp_x: lp.x, lp_y: tensor(lp.y, [lp.y.length]).long(), images,
  };
  for (const [k, v] of Object.entries(vit.stateDict())) inputs[`vit.${k}`] = v;
  ref = runTorch(`
import ref_jepa
import torch.nn.functional as F

# DINO eval_knn.py knn_classifier (weighted votes), returning the vote matrix
def knn_classifier(train_features, train_labels, test_features, k, T, num_classes):
    train_features = train_features.t()
    n = test_features.shape[0]
    retrieval_one_hot = torch.zeros(k, num_classes)
    all_probs = []
    for idx in range(0, n, 4):
        features = test_features[idx: min(idx + 4, n), :]
        batch_size = features.shape[0]
        similarity = torch.mm(features, train_features)
        distances, indices = similarity.topk(k, largest=True, sorted=True)
        candidates = train_labels.view(1, -1).expand(batch_size, -1)
        retrieved_neighbors = torch.gather(candidates, 1, indices)
        retrieval_one_hot.resize_(batch_size * k, num_classes).zero_()
        retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
        distances_transform = distances.clone().div_(T).exp_()
        probs = torch.sum(torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes), distances_transform.view(batch_size, -1, 1)), 1)
        all_probs.append(probs)
    return torch.cat(all_probs)

trf = F.normalize(inp['knn_train'], dim=1)
tef = F.normalize(inp['knn_test'], dim=1)
for k in (5, 30):
    out[f'knn.{k}'] = knn_classifier(trf, inp['knn_train_y'], tef, k, 0.07, 3)

# L2-regularised multinomial logistic regression optimum (float64 L-BFGS)
x, y = inp['lp_x'].double(), inp['lp_y']
W = torch.zeros(4, x.shape[1], dtype=torch.float64, requires_grad=True)
b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
opt = torch.optim.LBFGS([W, b], lr=1, max_iter=1000, tolerance_grad=1e-12, tolerance_change=1e-15, history_size=50, line_search_fn='strong_wolfe')
def closure():
    opt.zero_grad()
    l = F.cross_entropy(x @ W.t() + b, y) + ${lp.l2} / 2 * (W ** 2).sum()
    l.backward()
    return l
opt.step(closure)
out['lp.objective'] = closure().detach().reshape(1)

# pooled features as DINO / I-JEPA eval compute them (final norm applied to every intermediate output)
m = ref_jepa.VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=5, num_heads=2)
m.load_state_dict({k[4:]: v for k, v in inp.items() if k.startswith('vit.')})
with torch.no_grad():
    h = m.patch_embed(inp['images']) + m.pos_embed
    outs = []
    for blk in m.blocks:
        h = blk(h)
        outs.append(m.norm(h))
    out['pool.mean'] = outs[-1].mean(1)
    out['pool.last4'] = torch.cat([o.mean(1) for o in outs[-4:]], dim=1)
`, inputs);
});

// ---------------------------------------------------------------- k-NN
test('k-NN is exact on separable clusters, for k = 20 and k = 200 > N_train, chunked or not', () => {
  const all = clusters(3, 55, 16, 0.5, gen); // rows alternate classes: the first 120 train, the last 45 test
  const a = { x: all.x.narrow(0, 0, 120), y: all.y.slice(0, 120) };
  const testX = all.x.narrow(0, 120, 45), testY = all.y.slice(120);
  const r = knnClassify(a.x, a.y, testX, testY, { ks: [20, 200] });
  assert.deepEqual(r.top1, { 20: 1, 200: 1 });
  assert.deepEqual(r.kUsed, { 20: 20, 200: 120 });
  const chunked = knnClassify(a.x, a.y, testX, testY, { ks: [20, 200], chunkSize: 7 });
  assert.deepEqual(chunked.predictions, r.predictions);
  // labels permuted at random: no longer 100% (the test can fail)
  const shuffled = Int32Array.from(a.y, (_, i) => a.y[(i * 17 + 5) % a.y.length]!);
  const bad = knnClassify(a.x, shuffled, testX, testY, { ks: [20] });
  assert.ok(bad.top1['20']! < 0.8, `shuffled labels give ${bad.top1['20']}`);
  for (const t of [all.x, a.x, testX]) t.dispose();
});

test('k-NN votes are exp(cos / T) summed per class: a hand-computed example', () => {
  // train: (1,0) class 0, (0,1) class 1, (1,1) class 1, (-1,0) class 2; test: (1, 0.2)
  const train = tensor([[1, 0], [0, 1], [1, 1], [-1, 0]]), test = tensor([[1, 0.2]]);
  const y = Int32Array.from([0, 1, 1, 2]);
  const T = 0.07;
  const r = knnClassify(train, y, test, Int32Array.from([0]), { ks: [1, 2, 4], temperature: T, returnScores: true });
  const n = Math.hypot(1, 0.2);
  const cos = [1 / n, 0.2 / n, 1.2 / (n * Math.SQRT2), -1 / n];
  // k = 2 takes (1,0) [cos .981] and (1,1) [cos .832]
  const hand2 = [Math.exp(cos[0]! / T), Math.exp(cos[2]! / T), 0];
  const hand4 = [Math.exp(cos[0]! / T), Math.exp(cos[1]! / T) + Math.exp(cos[2]! / T), Math.exp(cos[3]! / T)];
  const s2 = r.scores!['2']!.toArray(), s4 = r.scores!['4']!.toArray();
  for (let c = 0; c < 3; c++) {
    assert.ok(Math.abs(s2[c]! - hand2[c]!) <= 1e-5 * hand2[0]!, `k=2 class ${c}: ${s2[c]} vs ${hand2[c]}`);
    assert.ok(Math.abs(s4[c]! - hand4[c]!) <= 1e-5 * hand4[0]!, `k=4 class ${c}: ${s4[c]} vs ${hand4[c]}`);
  }
  assert.deepEqual(Array.from(r.predictions['1']!), [0]);
  // a high temperature flattens the weights: with k = 4 class 1 (two neighbours) now wins
  const hot = knnClassify(train, y, test, null, { ks: [4], temperature: 100 });
  assert.deepEqual(Array.from(hot.predictions['4']!), [1]);
  assert.deepEqual(hot.top1, {});
});

test("k-NN vote matrices equal DINO's knn_classifier (PyTorch)", () => {
  const r = knnClassify(knnTrain, knnTrainY, knnTest, knnTestY, { ks: [5, 30], temperature: 0.07, numClasses: 3, chunkSize: 3, returnScores: true });
  for (const k of ['5', '30']) {
    const ours = r.scores![k]!, theirs = ref[`knn.${k}`]!;
    assert.deepEqual(ours.shape, theirs.shape);
    const scale = theirs.abs().max().item();
    assert.ok(maxAbsDiff(ours, theirs) <= 2e-5 * scale, `k=${k}: max diff ${maxAbsDiff(ours, theirs)} (scale ${scale})`);
    assert.deepEqual(Array.from(r.predictions[k]!), Array.from(labelsOf(theirs.argmax(1))));
  }
});

// ---------------------------------------------------------------- linear probe
test('linear probe: ~100% on linearly separable features, chance on random labels', () => {
  const g = new Generator(21);
  const all = clusters(4, 60, 24, 1.0, g);
  const perm = Int32Array.from({ length: 240 }, (_, i) => (i * 101) % 240);
  const xs = tidy(() => all.x.index(tensor(perm, [240]).long()));
  const ys = Int32Array.from(perm, (i) => all.y[i]!);
  const trX = xs.narrow(0, 0, 160), teX = xs.narrow(0, 160, 80);
  const r = linearProbe(trX, ys.slice(0, 160), teX, ys.slice(160));
  assert.equal(r.top1, 1, `separable: ${r.top1}`);
  assert.equal(r.trainTop1, 1);
  assert.ok(r.sweep.length >= 5);
  assert.equal(r.nFit + r.nVal, 160);
  assert.ok(r.sweep.some((s) => s.l2 === r.l2));

  const rnd = randn([600, 32], { generator: g });
  const yr = Int32Array.from({ length: 600 }, (_, i) => (i * 2654435761) % 7 % 4);
  const c = linearProbe(rnd.narrow(0, 0, 400), yr.slice(0, 400), rnd.narrow(0, 400, 200), yr.slice(400));
  assert.ok(Math.abs(c.top1 - 0.25) < 0.1, `random labels: ${c.top1} (chance 0.25)`);
  for (const t of [all.x, xs, trX, teX, rnd]) t.dispose();
});

test('linear probe optimiser reaches the L-BFGS optimum of the regularised objective (PyTorch, float64)', () => {
  const m = trainLinear(lp.x, lp.y, 4, { l2: lp.l2 });
  const ours = linearObjective(m, lp.x, lp.y, lp.l2), best = ref['lp.objective']!.item();
  assert.ok(Math.abs(ours - best) < 1e-7 * best, `objective ${ours} vs optimum ${best}`);
  assert.ok(Math.abs(m.loss - ours) < 1e-9 * best && m.iterations > 0);
  // and a short run is measurably worse (the comparison can fail)
  const short = trainLinear(lp.x, lp.y, 4, { l2: lp.l2, maxIter: 2 });
  assert.ok(linearObjective(short, lp.x, lp.y, lp.l2) - best > 1e-2);
  assert.ok(accuracy(predictLinear(m, lp.x), lp.y) > 0.5);
});

test('linear probe standardises with train statistics only', () => {
  const g = new Generator(33);
  const base = clusters(3, 50, 10, 0.8, g);
  const scale = tensor(Float32Array.from({ length: 10 }, (_, i) => 0.1 + i), [10]);
  const trX = tidy(() => base.x.narrow(0, 0, 120).mul(scale).add(3));
  const teX = tidy(() => base.x.narrow(0, 120, 30).mul(scale).add(3));
  const trY = base.y.slice(0, 120), teY = base.y.slice(120);
  const r = linearProbe(trX, trY, teX, teY, { l2Grid: [1e-3] });
  // the reported statistics are the train features' (population std)
  const rows = trX.toArray(), D = 10, N = 120;
  for (let d = 0; d < D; d++) {
    let s = 0, s2 = 0;
    for (let i = 0; i < N; i++) { s += rows[i * D + d]!; s2 += rows[i * D + d]! ** 2; }
    const mean = s / N, std = Math.sqrt(s2 / N - mean * mean);
    assert.ok(Math.abs(r.mean[d]! - mean) < 1e-4 * (1 + Math.abs(mean)), `mean[${d}]`);
    assert.ok(Math.abs(r.std[d]! - std) < 1e-3 * std, `std[${d}]`);
  }
  assert.equal(r.top1, 1);
  // a shift of the test set alone must hurt: test-set statistics would have hidden it
  const shifted = tidy(() => teX.add(scale.mul(40)));
  const s = linearProbe(trX, trY, shifted, teY, { l2Grid: [1e-3] });
  assert.ok(s.top1 < 0.7, `shifted test set still scores ${s.top1}`);
  for (const t of [base.x, scale, trX, teX, shifted]) t.dispose();
});

// ---------------------------------------------------------------- pooling and monitors
test('pooling: mean and last-4 (final norm on each) match the PyTorch reference ViT', () => {
  const mean = noGrad(() => poolFeatures(vit, images, 'mean'));
  const last4 = noGrad(() => poolFeatures(vit, images, 'last4'));
  assert.deepEqual(last4.shape, [3, 128]);
  assert.ok(maxAbsDiff(mean, ref['pool.mean']!) < 1e-4, `mean ${maxAbsDiff(mean, ref['pool.mean']!)}`);
  assert.ok(maxAbsDiff(last4, ref['pool.last4']!) < 1e-4, `last4 ${maxAbsDiff(last4, ref['pool.last4']!)}`);
  // un-normed intermediate outputs would differ
  const raw = noGrad(() => tidy(() => cat(vit.forwardLayers(images).slice(-4).map((o) => o.mean(1)), 1)));
  assert.ok(maxAbsDiff(raw, ref['pool.last4']!) > 1e-2);
});

test('RankMe of a rank-k matrix is k; the covariance spectrum has the known eigenvalues', () => {
  const k = 5, N = 200, D = 32;
  // rows e_(i mod k), then a Householder reflection (orthogonal) to hide the axes
  const onehot = tidy(() => eye(D).narrow(0, 0, k).repeat([N / k, 1]));
  const v = randn([D, 1], { generator: gen });
  const H = tidy(() => eye(D).sub(v.mm(v.t()).mul(2 / v.square().sum().item())));
  const A = onehot.mm(H);
  assert.ok(Math.abs(rankMe(A) - k) < 1e-3, `RankMe ${rankMe(A)}`);
  // covariance of k equiprobable one-hot categories: k-1 eigenvalues (1/k) N/(N-1), the rest 0
  const spec = covarianceSpectrum(A);
  for (let i = 0; i < k - 1; i++) assert.ok(Math.abs(spec[i]! - (1 / k) * N / (N - 1)) < 1e-6, `eig ${i}: ${spec[i]}`);
  for (let i = k - 1; i < D; i++) assert.ok(Math.abs(spec[i]!) < 1e-6, `eig ${i}: ${spec[i]}`);
  // a generic rank-k Gaussian matrix: RankMe a bit below k; full rank: far above
  const G = randn([N, k], { generator: gen }).mm(randn([k, D], { generator: gen }));
  const rg = rankMe(G);
  assert.ok(rg > 0.7 * k && rg <= k + 1e-3, `Gaussian rank-${k}: ${rg}`);
  assert.ok(rankMe(randn([N, D], { generator: gen })) > 25);
  // collapse: identical rows -> RankMe 1 and normalised std 0
  const collapsed = randn([1, D], { generator: gen }).repeat([N, 1]);
  assert.ok(Math.abs(rankMe(collapsed) - 1) < 1e-3);
  assert.ok(normalisedStd(collapsed) < 1e-6);
  for (const t of [onehot, v, H, A, G, collapsed]) t.dispose();
});

test('centred RankMe ignores a shared mean direction; the verdict reads centred RankMe and std', () => {
  const N = 400, D = 16;
  // isotropic Gaussian rows plus a huge common offset: uncentred RankMe sees ~1 direction, centred ~D
  const x = randn([N, D], { generator: gen });
  const shifted = tidy(() => x.add(randn([1, D], { generator: gen }).mul(100)));
  assert.ok(rankMe(shifted) < 1.5, `uncentred ${rankMe(shifted)}`);
  const c = rankMe(shifted, { centred: true });
  assert.ok(c > 0.85 * D && c <= D, `centred ${c}`);
  // exact: centred rows e_i - mean over k one-hot categories span k - 1 equal directions
  const k = 5;
  const onehot = tidy(() => eye(D).narrow(0, 0, k).repeat([N / k, 1]).add(3));
  assert.ok(Math.abs(rankMe(onehot, { centred: true }) - (k - 1)) < 1e-3);
  assert.equal(healthyStd(64), 0.125);
  assert.equal(collapseVerdict({ rankme_centred: 60, std: 0.1, dim: 192 }), 'healthy');
  assert.equal(collapseVerdict({ rankme_centred: 30, std: 0.1, dim: 192 }), 'low-rank');
  assert.equal(collapseVerdict({ rankme_centred: 60, std: 0.01, dim: 192 }), 'collapsed');
  const s = collapseStats(shifted);
  assert.ok(Math.abs(s.rankme_centred - c) < 1e-9 && s.rankme < 1.5 && s.dim === D);
  for (const t of [x, shifted, onehot]) t.dispose();
});

test('per-token RankMe: batches accumulated through the Gram matrix match PyTorch (svdvals of the centred tokens)', () => {
  // tokens (B, T, D) of rank 5 plus a large shared offset, in two batches of unequal size
  const B = 7, T = 9, D = 12, k = 5;
  const tok = tidy(() => randn([B * T, k], { generator: gen }).mm(randn([k, D], { generator: gen })).add(randn([1, D], { generator: gen }).mul(50)).reshape([B, T, D]));
  const acc = new TokenRankMe();
  tidy(() => { acc.add(tok.narrow(0, 0, 3)); acc.add(tok.narrow(0, 3, B - 3)); });
  assert.equal(acc.count, B * T);
  const ref = runTorch(`
x = inp['tok'].double().reshape(-1, inp['tok'].shape[-1])
s = torch.linalg.svdvals(x - x.mean(0))
p = s / (s.sum() + 1e-7) + 1e-7
out['rankme'] = torch.exp(-(p * p.log()).sum()).reshape(1)
`, { tok });
  const want = ref['rankme']!.toArray()[0]!;
  const got = acc.value();
  assert.ok(Math.abs(got - want) < 1e-5, `per-token RankMe ${got} vs PyTorch ${want}`);
  assert.ok(got > 0.7 * k && got <= k + 1e-3, `rank-${k} tokens: ${got}`);
  // the same as the pooled RankMe of the flattened tokens (centred)
  assert.ok(Math.abs(got - tidy(() => rankMe(tok.reshape([B * T, D]), { centred: true }))) < 1e-5);
  // exact: one-hot tokens of k categories -> k - 1 equal directions once centred
  const one = new TokenRankMe();
  const onehot = tidy(() => eye(D).narrow(0, 0, k).repeat([4 * k, 1]).add(3).reshape([4, k * k, D]));
  one.add(onehot);
  assert.ok(Math.abs(one.value() - (k - 1)) < 1e-3, `one-hot: ${one.value()}`); // RankMe's eps on the 8 zero directions
  assert.throws(() => new TokenRankMe().value(), /at least two tokens/);
  const wide = randn([2, 3, D + 1], { generator: gen });
  assert.throws(() => one.add(wide), /width 13 after width 12/);
  for (const t of [tok, onehot, wide, ref['rankme']!]) t.dispose();
  acc.dispose();
  one.dispose();
});

test("eval's split seed: the run's own held-out split unless told otherwise, with a warning on a leaking one", () => {
  const run = resolveConfig(undefined, { data: 'fashion-mnist', valSplit: 0.1, seed: 1 });
  const msgs: string[] = [];
  const say = (m: string) => msgs.push(m);
  assert.equal(splitSeed(undefined, 0.1, 'fashion-mnist', run, say), 1);  // the images the run never trained on
  assert.match(msgs.pop()!, /seed 1, the pretraining run's own held-out 0.1 of fashion-mnist/);
  assert.equal(splitSeed(undefined, 0.2, 'fashion-mnist', run, say), 0);  // another fraction: another split anyway
  assert.equal(splitSeed(undefined, 0.1, 'mnist', run, say), 0);
  assert.equal(splitSeed(undefined, undefined, 'fashion-mnist', run, say), 0);  // --val-data
  assert.equal(splitSeed(undefined, 0.1, 'fashion-mnist', null, say), 0);  // a bare weights file
  assert.equal(msgs.length, 0);
  assert.equal(splitSeed(1, 0.1, 'fashion-mnist', run, say), 1);
  assert.equal(msgs.length, 0);
  assert.equal(splitSeed(0, 0.1, 'fashion-mnist', run, say), 0);  // as asked, but said
  assert.match(msgs.pop()!, /warning: .*seed 1; with seed 0 about 90 % of the test images were in its pretraining data \(pass --seed 1\)/);
  const whole = resolveConfig(undefined, { data: 'fashion-mnist', valSplit: 0 });
  assert.equal(splitSeed(undefined, 0.1, 'fashion-mnist', whole, say), 0);
  assert.match(msgs.pop()!, /pretrained on all of fashion-mnist \(no held-out split\)/);
});

test('layer-wise lr decay: BEiT / MAE layer ids and scales', () => {
  assert.deepEqual(layerScales(2, 0.5), [0.125, 0.25, 0.5, 1]);
  assert.equal(layerId('patch_embed.proj.weight', 12), 0);
  assert.equal(layerId('pos_embed', 12), 0);
  assert.equal(layerId('blocks.0.attn.qkv.weight', 12), 1);
  assert.equal(layerId('blocks.11.mlp.fc2.bias', 12), 12);
  assert.equal(layerId('norm.weight', 12), 13);
  assert.equal(layerId('head.weight', 12), 13);
  assert.deepEqual(layerScales(3, 1), [1, 1, 1, 1, 1]);
});

// ---------------------------------------------------------------- on real checkpoints
const N = 96;
const { data: DATA, unlabelled: UNLABELLED } = writeQuadrantIdx(dir, N);

function tinyConfig(method: PretrainConfig['method'], out: string): PretrainConfig {
  return resolveConfig(undefined, {
    method, data: DATA, out: join(dir, out), workers: 0, threads: 1, seed: 3,
    model: { name: 'vit_tiny', patch: 4, imgSize: 16, depth: 2, embedDim: 32, numHeads: 2 },
    predictor: { embedDim: 16, depth: 1, numHeads: 2 },
    masks: { minKeep: 1, targetScale: [0.15, 0.25], contextScale: [0.85, 1.0] },
    vicreg: { expander: [32, 32] },
    optim: { batch: 16, steps: 4, warmupEpochs: 0.2 },
    log: { every: 10, monitorEvery: 0, checkpointEvery: 100 },
  });
}
let ijepaRun = '', vicregRun = '';
const quiet = { onMessage: () => {} };

test('eval on an I-JEPA checkpoint: target encoder, k-NN + linear + fine-tune, monitors', async () => {
  ijepaRun = (await pretrain(tinyConfig('ijepa', 'ijepa'), quiet)).out;
  const msgs: string[] = [];
  const r = await evaluateCheckpoint({
    checkpoint: ijepaRun, data: DATA, protocols: ['knn', 'linear', 'finetune'], batchSize: 32,
    finetune: { epochs: 1, batchSize: 16 }, onMessage: (m) => msgs.push(m),
  });
  assert.equal(r.network, 'target_encoder');
  assert.equal(r.architecture, 'state.json');
  assert.equal(r.step, 4);
  assert.equal(r.method, 'ijepa');
  assert.equal(r.n_test, Math.round(N * 0.1));
  assert.equal(r.n_train + r.n_test, N);
  assert.equal(r.embedding_dim, 32);
  assert.equal(r.num_classes, 4);
  assert.deepEqual(Object.keys(r.knn_top1!).sort(), ['20', '200']);
  assert.equal(r.knn_k_used!['200'], r.n_train);
  for (const v of [...Object.values(r.knn_top1!), r.linear_top1!, r.finetune_top1!]) assert.ok(v >= 0 && v <= 1);
  // the bright-square position is easy: frozen features of even a barely trained encoder separate it
  assert.ok(r.knn_top1!['20']! >= 0.7, `k-NN ${JSON.stringify(r.knn_top1)}`);
  assert.ok(r.linear_top1! >= 0.7, `linear ${r.linear_top1}`);
  assert.equal(r.finetune_epoch_loss!.length, 1);
  assert.ok(r.finetune_epoch_loss!.every(Number.isFinite));
  assert.ok(r.rankme >= 1 && r.rankme <= 32 + 1e-6);
  assert.ok(r.normalised_std > 0);
  assert.equal(r.eigenspectrum.length, 32);
  assert.ok(msgs.some((m) => /k-NN/.test(m)));
});

test('eval on a VICReg checkpoint falls back to the encoder; last-4 pooling; --val-data', async () => {
  vicregRun = (await pretrain(tinyConfig('vicreg', 'vicreg'), quiet)).out;
  const r = await evaluateCheckpoint({ checkpoint: vicregRun, data: DATA, valData: DATA, protocols: ['knn'], pooling: 'last4', knn: { ks: [5] } });
  assert.equal(r.network, 'encoder');
  assert.equal(r.embedding_dim, 64); // depth 2: both blocks
  assert.equal(r.n_train, N);
  assert.equal(r.n_test, N);
  assert.equal(r.knn_top1!['5'], 1); // test = train: each sample is its own nearest neighbour
  assert.equal(r.linear_top1, undefined);
  await assert.rejects(evaluateCheckpoint({ checkpoint: vicregRun, data: DATA, which: 'target_encoder' }), /no target_encoder\.safetensors/);
});

test('eval errors: missing checkpoint, unlabelled data, unknown protocol, images too small to fit', async () => {
  await assert.rejects(evaluateCheckpoint({ checkpoint: join(dir, 'nope'), data: DATA }), /checkpoint '.*nope' does not exist/);
  await assert.rejects(evaluateCheckpoint({ checkpoint: ijepaRun, data: UNLABELLED }), /unlabelled.*needs class labels/);
  // no protocol: monitors only, labels not needed
  const m = await evaluateCheckpoint({ checkpoint: ijepaRun, data: UNLABELLED, protocols: [] });
  assert.ok(m.rankme >= 1 && m.knn_top1 === undefined);
  await assert.rejects(evaluateCheckpoint({ checkpoint: ijepaRun, data: DATA, protocols: ['svm' as 'knn'] }), /unknown protocol 'svm'/);
  const tiny = join(dir, 'tiny.idx');
  writeFileSync(tiny, encodeIdx([4, 1, 1], new Uint8Array(4)));
  await assert.rejects(evaluateCheckpoint({ checkpoint: ijepaRun, data: `idx:${tiny}`, protocols: [], valSplit: 0.25 }), /cannot fit a 16 px model/);
});

test('fine-tuning trains encoder + head in place (layer decay, flips), then restores eval mode', async () => {
  const { encoder } = loadEncoderFromCheckpoint(ijepaRun);
  const before = Object.fromEntries(Object.entries(encoder.stateDict()).map(([k, t]) => [k, t.clone()]));
  const ds = await openDataset(DATA);
  const logs: number[] = [];
  const r = await finetune(encoder, ds, ds, { epochs: 8, batchSize: 16, lr: 1e-2, layerDecay: 0.75, warmupEpochs: 1, onLog: (l) => logs.push(l.lr) });
  assert.equal(r.steps, 8 * Math.floor(N / 16));
  assert.ok(r.epochLoss.at(-1)! < 0.8 * r.epochLoss[0]!, `loss ${r.epochLoss.map((x) => x.toFixed(3)).join(' ')}`);
  assert.ok(r.top1 > 0.4, `train-set accuracy after fine-tuning ${r.top1}`);
  assert.ok(Math.max(...logs) <= 1e-2 + 1e-12 && logs[0]! < logs[6]!, 'warmup then cosine');
  const after = encoder.stateDict();
  assert.equal(maxAbsDiff(after['pos_embed']!, before['pos_embed']!), 0, 'fixed position embedding untouched');
  for (const k of ['patch_embed.proj.weight', 'blocks.0.attn.qkv.weight', 'blocks.1.mlp.fc2.weight', 'norm.weight']) {
    assert.ok(maxAbsDiff(after[k]!, before[k]!) > 0, `${k} trained`);
  }
  assert.equal(encoder.parameters().some((p) => p.requiresGrad), false);
  encoder.dispose();
  Object.values(before).forEach((t) => t.dispose());
});

test('a bare .safetensors file: architecture from shapes (with --heads) or --config, same features as the run dir', async () => {
  const ck = resolveCheckpointDir(ijepaRun);
  const bare = join(dir, 'bare');
  mkdirSync(bare);
  copyFileSync(join(ck, 'target_encoder.safetensors'), join(bare, 'te.safetensors'));
  const fromRun = loadEncoderFromCheckpoint(ijepaRun);
  const inferred = loadEncoderFromCheckpoint(join(bare, 'te.safetensors'), { heads: 2 });
  const viaConfig = loadEncoderFromCheckpoint(join(bare, 'te.safetensors'), { config: join(ck, 'state.json') });
  assert.equal(inferred.architecture, 'inferred');
  assert.equal(viaConfig.architecture, 'config');
  assert.deepEqual([inferred.imgSize, inferred.patchSize, inferred.channels, inferred.embedDim, inferred.encoder.blocks.length], [16, 4, 1, 32, 2]);
  const x = randn([2, 1, 16, 16], { generator: gen });
  const f = (e: VisionTransformer) => noGrad(() => poolFeatures(e, x));
  assert.equal(maxAbsDiff(f(inferred.encoder), f(fromRun.encoder)), 0);
  assert.equal(maxAbsDiff(f(viaConfig.encoder), f(fromRun.encoder)), 0);
  assert.equal(fromRun.encoder.parameters().some((p) => p.requiresGrad), false, 'loaded frozen');
  assert.throws(() => loadEncoderFromCheckpoint(join(ck, 'predictor.safetensors'), { heads: 2 }), /not an encoder/);
  // the head count changes no shape but does change the features: default dim/64 = 1 head is wrong here
  saveTensors(join(bare, 'vit.safetensors'), vit.stateDict());
  const two = loadEncoderFromCheckpoint(join(bare, 'vit.safetensors'), { heads: 2 });
  const one = loadEncoderFromCheckpoint(join(bare, 'vit.safetensors'));
  assert.deepEqual([two.encoder.config.numHeads, one.encoder.config.numHeads, two.encoder.blocks.length], [2, 1, 5]);
  assert.equal(maxAbsDiff(f(two.encoder), f(vit)), 0);
  assert.ok(maxAbsDiff(f(one.encoder), f(vit)) > 1e-3);
  assert.throws(() => loadEncoderFromCheckpoint(join(bare, 'vit.safetensors'), { heads: 3 }), /--heads 3 must be a positive divisor of the embedding dim 32/);
  for (const l of [fromRun, inferred, viaConfig, two, one]) l.encoder.dispose();
});

test('embed: N x D embeddings in dataset order with indices, labels and (folders) file paths', async () => {
  const out = join(dir, 'emb', 'idx.safetensors');
  const r = await embedDataset({ checkpoint: ijepaRun, data: DATA, out, batchSize: 20 });
  assert.deepEqual([r.n, r.dim, r.network, r.paths], [N, 32, 'target_encoder', false]);
  const { tensors, metadata } = loadTensors(out);
  assert.deepEqual(tensors.embeddings!.shape, [N, 32]);
  assert.equal(tensors.embeddings!.dtype, 'float32');
  assert.deepEqual(tensors.indices!.toArray(), Array.from({ length: N }, (_, i) => i));
  assert.deepEqual(tensors.labels!.toArray(), Array.from({ length: N }, (_, i) => i % 4));
  assert.equal(metadata.format, 'cjepa-embeddings/1');
  assert.equal(metadata.pooling, 'mean');
  // row order: the features of the reversed dataset are the rows reversed
  const enc = loadEncoderFromCheckpoint(ijepaRun).encoder;
  const ds = await openDataset(DATA);
  const rev = new SubsetDataset(ds, Int32Array.from({ length: N }, (_, i) => N - 1 - i));
  const fr = await extractFeatures(enc, rev, { batchSize: 7 });
  const flipped = tidy(() => fr.features.flip([0]));
  assert.ok(maxAbsDiff(flipped, tensors.embeddings!) < 1e-5);

  // a folder of 24 px RGB images for the 16 px grayscale encoder (resized and converted), with paths
  const root = join(dir, 'folder');
  await makeFolder(root, 10, 24, 3);
  const fout = join(dir, 'emb', 'folder.safetensors');
  const fr2 = await embedDataset({ checkpoint: ijepaRun, data: `folder:${root}`, out: fout, batchSize: 4 });
  assert.equal(fr2.paths, true);
  const fl = loadTensors(fout);
  const fds = await openDataset(`folder:${root}`);
  assert.deepEqual(fl.tensors.embeddings!.shape, [10, 32]);
  assert.deepEqual(JSON.parse(fl.metadata.paths!), Array.from(fl.tensors.indices!.toArray(), (i) => fds.paths![i]));
  assert.deepEqual(JSON.parse(fl.metadata.paths!), [...fds.paths!]);
  enc.dispose();
  for (const t of [fr.features, flipped, ...Object.values(tensors), ...Object.values(fl.tensors)]) t.dispose();
});

test('embed: a corrupt JPEG gets no row (rows, indices and paths agree) and is listed as skipped', async () => {
  const root = join(dir, 'corrupt-folder');
  await makeFolder(root, 20, 16, 2, ['class0/trunc.jpg'], 'jpg');
  const ds = await openDataset(`folder:${root}`);
  assert.equal(ds.length, 21);
  const badIdx = ds.paths!.indexOf(join(root, 'class0', 'trunc.jpg'));
  assert.ok(badIdx > 0 && badIdx < 20, `corrupt file at ${badIdx}: not the last row, so a replacement would show`);
  const good = Int32Array.from({ length: 21 }, (_, i) => i).filter((i) => i !== badIdx);
  const enc = loadEncoderFromCheckpoint(ijepaRun).encoder;
  const alone = await extractFeatures(enc, new SubsetDataset(ds, good), { batchSize: 5 });
  for (const workers of [0, 1]) {
    const out = join(dir, 'emb', `corrupt-${workers}.safetensors`);
    const msgs: string[] = [];
    const r = await embedDataset({ checkpoint: ijepaRun, data: `folder:${root}`, out, batchSize: 8, workers, onMessage: (m) => msgs.push(m) });
    assert.equal(r.n, 20);
    assert.deepEqual(r.skipped.map((x) => x.path), [ds.paths![badIdx]]);
    const { tensors, metadata } = loadTensors(out);
    const indices = tensors.indices!.toArray();
    assert.deepEqual(indices, Array.from(good));
    assert.deepEqual(JSON.parse(metadata.paths!), indices.map((i) => ds.paths![i]));
    assert.equal(new Set(JSON.parse(metadata.paths!)).size, 20, 'no path twice');
    assert.deepEqual(tensors.labels!.toArray(), indices.map((i) => ds.labelOf(i)));
    const skipped = JSON.parse(metadata.skipped!) as { path: string; reason: string }[];
    assert.deepEqual(skipped.map((x) => x.path), [join(root, 'class0', 'trunc.jpg')]);
    assert.ok(skipped[0]!.reason.length > 0); // libvips' wording varies (from worker threads: 'Unknown error')
    assert.ok(msgs.some((m) => m.includes('trunc.jpg') && /no row/.test(m)), msgs.join('\n'));
    // each row is the embedding of the file its index names
    assert.ok(maxAbsDiff(tensors.embeddings!, alone.features) < 1e-5);
    Object.values(tensors).forEach((t) => t.dispose());
  }
  // the same for eval's features: the corrupt sample is left out, not replaced, and reported
  const m = await evaluateCheckpoint({ checkpoint: ijepaRun, data: `folder:${root}`, valData: `folder:${root}`, protocols: [] });
  assert.deepEqual([m.n_train, m.n_test], [20, 20]);
  assert.deepEqual(m.skipped!.map((x) => x.path), [ds.paths![badIdx], ds.paths![badIdx]]);
  enc.dispose();
  alone.features.dispose();
});

test('embed --out: refuses to replace a file that is not an earlier embeddings file unless forced', async () => {
  const txt = join(dir, 'emb', 'notes.txt');
  writeFileSync(txt, 'keep me');
  await assert.rejects(embedDataset({ checkpoint: ijepaRun, data: DATA, out: txt }), /^Error: --out .*notes\.txt exists and is not an embeddings file; refusing to overwrite it \(use --force\)$/);
  assert.equal(readFileSync(txt, 'utf8'), 'keep me');
  // a checkpoint's safetensors is not an embeddings file either
  const ck = join(dir, 'emb', 'te.safetensors');
  copyFileSync(join(resolveCheckpointDir(ijepaRun), 'target_encoder.safetensors'), ck);
  await assert.rejects(embedDataset({ checkpoint: ijepaRun, data: DATA, out: ck }), /exists and is not an embeddings file/);
  await assert.rejects(embedDataset({ checkpoint: ijepaRun, data: DATA, out: join(dir, 'emb') }), /is a directory/);
  // an earlier embeddings file is replaced; --force replaces anything
  const emb = join(dir, 'emb', 'again.safetensors');
  await embedDataset({ checkpoint: ijepaRun, data: DATA, out: emb });
  await embedDataset({ checkpoint: ijepaRun, data: DATA, out: emb });
  await embedDataset({ checkpoint: ijepaRun, data: DATA, out: txt, force: true });
  const { tensors } = loadTensors(txt);
  assert.deepEqual(tensors.embeddings!.shape, [N, 32]);
  Object.values(tensors).forEach((t) => t.dispose());
});

test('eval and embed release every tensor they make, deterministically', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const settle = async () => { for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setImmediate(r)); } };
  await settle();
  const live = liveTensors(), collected = gcReleasedTensors();
  await evaluateCheckpoint({ checkpoint: ijepaRun, data: DATA, protocols: ['knn', 'linear', 'finetune'], pooling: 'last4', finetune: { epochs: 1, batchSize: 32 } });
  await embedDataset({ checkpoint: ijepaRun, data: DATA, out: join(dir, 'emb', 'leak.safetensors') });
  await settle();
  assert.equal(liveTensors(), live, 'every tensor released');
  assert.equal(gcReleasedTensors(), collected, 'none left to the garbage collector');
});
