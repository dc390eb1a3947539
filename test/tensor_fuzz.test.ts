// Robustness of the binding: wrong shapes, wrong dtypes, NaN/Infinity, empty tensors, huge sizes,
// negative and out-of-range dims, non-tensor arguments and disposed tensors, fed to many ops.
// Every case must either throw a JS Error whose message names the op, or return a Tensor; the
// process must never abort. The cases run in a child process (so a libtorch abort, a C++ terminate
// or an OOM kill shows up as a failed test instead of killing the runner); the child reports each
// case as it starts (stderr) and prints a JSON summary (stdout).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ENGINE = new URL('../src/tensor/index.js', import.meta.url).href;
const NATIVE = new URL('../src/tensor/native.js', import.meta.url).href;

// The child script. Each case: [op, label, fn, expect, names?]
//   op: the op under test (coverage is counted per op);
//   expect: 'throw' (must throw), 'tensor' (must return a Tensor) or 'any' (either);
//   names: the strings of which one must appear in the error message (default [op]).
const CHILD = String.raw`
import * as T from '${ENGINE}';
import { native } from '${NATIVE}';

const f = (shape, o) => T.ones(shape, o);
const r = (shape) => T.randn(shape, { generator: new T.Generator(0) });
const i64 = (a) => T.tensor(a, { dtype: 'int64' });
const bool = (a) => T.tensor(a, { dtype: 'bool' });
const dead = () => { const t = T.ones([2, 2]); t.dispose(); return t; };
const nan = (shape) => T.full(shape, NaN);
const inf = (shape) => T.full(shape, Infinity);
const svdvals = (t) => t.svdvals();
const gen = new T.Generator(1);

const cases = [
  // ---- matmul / mm / bmm
  ['matmul', 'inner dims differ', () => f([2, 3]).matmul(f([4, 5])), 'throw'],
  ['matmul', '0-d operand', () => T.tensor(1).matmul(f([2])), 'throw'],
  ['matmul', 'int64 x float32', () => f([2, 2], { dtype: 'int64' }).matmul(f([2, 2])), 'throw'],
  ['matmul', 'disposed operand', () => f([2, 2]).matmul(dead()), 'throw'],
  ['matmul', 'number instead of tensor', () => f([2, 2]).matmul(5), 'throw'],
  ['matmul', 'string instead of tensor', () => f([2, 2]).matmul('x'), 'throw'],
  ['matmul', 'plain object instead of tensor', () => f([2, 2]).matmul({ h: {} }), 'throw'],
  ['matmul', 'Generator instead of tensor', () => f([2, 2]).matmul(gen), 'throw'],
  ['matmul', 'null instead of tensor', () => f([2, 2]).matmul(null), 'throw'],
  ['matmul', 'empty [0,3]@[3,0]', () => f([0, 3]).matmul(f([3, 0])), 'tensor'],
  ['matmul', 'empty inner dim', () => f([2, 0]).matmul(f([0, 2])), 'tensor'],
  ['matmul', 'NaN/Inf values', () => nan([2, 2]).matmul(inf([2, 2])), 'tensor'],
  ['mm', '3-d operand', () => f([2, 2, 2]).mm(f([2, 2])), 'throw'],
  ['bmm', '2-d operands', () => f([2, 2]).bmm(f([2, 2])), 'throw'],
  ['bmm', 'batch sizes differ', () => f([2, 2, 3]).bmm(f([3, 3, 2])), 'throw'],
  ['bmm', 'empty batch', () => f([0, 2, 3]).bmm(f([0, 3, 2])), 'tensor'],
  // ---- linear / conv2d / norms
  ['linear', 'weight in-features differ', () => T.F.linear(f([4, 3]), f([5, 7])), 'throw'],
  ['linear', 'bias size differs', () => T.F.linear(f([4, 3]), f([5, 3]), f([4])), 'throw'],
  ['linear', 'int64 input', () => T.F.linear(f([4, 3], { dtype: 'int64' }), f([5, 3])), 'throw'],
  ['linear', 'disposed weight', () => T.F.linear(f([4, 3]), dead()), 'throw'],
  ['linear', 'empty batch', () => T.F.linear(f([0, 3]), f([5, 3]), f([5])), 'tensor'],
  ['conv2d', 'channels differ', () => T.F.conv2d(f([1, 3, 8, 8]), f([4, 2, 3, 3])), 'throw'],
  ['conv2d', 'kernel larger than input', () => T.F.conv2d(f([1, 3, 2, 2]), f([4, 3, 3, 3])), 'throw'],
  ['conv2d', 'stride 0', () => T.F.conv2d(f([1, 3, 8, 8]), f([4, 3, 3, 3]), null, { stride: 0 }), 'throw'],
  ['conv2d', 'negative padding', () => T.F.conv2d(f([1, 3, 8, 8]), f([4, 3, 3, 3]), null, { padding: -1 }), 'throw'],
  ['conv2d', 'groups 0', () => T.F.conv2d(f([1, 3, 8, 8]), f([4, 3, 3, 3]), null, { groups: 0 }), 'throw'],
  ['conv2d', 'groups do not divide channels', () => T.F.conv2d(f([1, 3, 8, 8]), f([4, 1, 3, 3]), null, { groups: 2 }), 'throw'],
  ['conv2d', '2-d input', () => T.F.conv2d(f([8, 8]), f([4, 3, 3, 3])), 'throw'],
  ['conv2d', 'int64 input', () => T.F.conv2d(f([1, 3, 8, 8], { dtype: 'int64' }), f([4, 3, 3, 3])), 'throw'],
  ['conv2d', 'empty batch', () => T.F.conv2d(f([0, 3, 8, 8]), f([4, 3, 3, 3])), 'any'],
  ['conv2d', 'non-integer stride', () => T.F.conv2d(f([1, 3, 8, 8]), f([4, 3, 3, 3]), null, { stride: 1.5 }), 'throw'],
  ['layerNorm', 'normalized shape differs', () => T.F.layerNorm(f([2, 5]), [4]), 'throw'],
  ['layerNorm', 'weight size differs', () => T.F.layerNorm(f([2, 5]), [5], f([4])), 'throw'],
  ['layerNorm', 'int64 input', () => T.F.layerNorm(f([2, 5], { dtype: 'int64' }), [5]), 'throw'],
  ['layerNorm', 'empty batch', () => T.F.layerNorm(f([0, 5]), [5]), 'tensor'],
  ['layerNorm', 'NaN input', () => T.F.layerNorm(nan([2, 5]), [5]), 'tensor'],
  // (PyTorch checks this one in Python, F.batch_norm; ATen returns a tensor)
  ['batchNorm', 'one value per channel in training', () => T.F.batchNorm(f([1, 3]), null, null, { training: true }), 'any'],
  ['batchNorm', 'int64 input', () => T.F.batchNorm(f([4, 3], { dtype: 'int64' }), null, null, { training: true }), 'throw'],
  ['batchNorm', 'running stats size differs', () => T.F.batchNorm(f([4, 3]), f([2]), f([2])), 'throw'],
  ['batchNorm', 'disposed running mean', () => T.F.batchNorm(f([4, 3]), dead(), f([3])), 'throw'],
  // ---- softmax family and losses
  ['softmax', 'dim out of range', () => T.F.softmax(f([2, 3]), 5), 'throw'],
  ['softmax', 'negative dim out of range', () => T.F.softmax(f([2, 3]), -3), 'throw'],
  ['softmax', 'non-integer dim', () => T.F.softmax(f([2, 3]), 0.5), 'throw'],
  ['softmax', 'int64 input', () => T.F.softmax(f([2, 3], { dtype: 'int64' }), 1), 'throw'],
  ['softmax', 'empty tensor', () => T.F.softmax(f([0, 3]), 1), 'tensor'],
  ['softmax', 'Inf input', () => T.F.softmax(inf([2, 3]), 1), 'tensor'],
  ['logSoftmax', 'dim out of range', () => T.F.logSoftmax(f([2, 3]), 2), 'throw'],
  ['crossEntropy', 'target class out of range', () => T.F.crossEntropy(f([3, 4]), i64([0, 1, 4])), 'throw'],
  ['crossEntropy', 'negative target', () => T.F.crossEntropy(f([3, 4]), i64([0, -5, 1])), 'throw'],
  ['crossEntropy', 'batch sizes differ', () => T.F.crossEntropy(f([3, 4]), i64([0, 1])), 'throw'],
  ['crossEntropy', 'float target of wrong shape', () => T.F.crossEntropy(f([3, 4]), f([3])), 'throw'],
  ['crossEntropy', 'label smoothing > 1', () => T.F.crossEntropy(f([3, 4]), i64([0, 1, 2]), 'mean', 2), 'any'],
  ['crossEntropy', 'unknown reduction', () => T.F.crossEntropy(f([3, 4]), i64([0, 1, 2]), 'avg'), 'throw'],
  ['nllLoss', 'target out of range', () => T.F.nllLoss(f([3, 4]), i64([9, 1, 2])), 'throw'],
  ['smoothL1Loss', 'shapes not broadcastable', () => T.F.smoothL1Loss(f([3, 4]), f([5])), 'throw'],
  ['smoothL1Loss', 'negative beta', () => T.F.smoothL1Loss(f([3]), f([3]), 'mean', -1), 'throw'],
  ['smoothL1Loss', 'unknown reduction', () => T.F.smoothL1Loss(f([3]), f([3]), 'avg'), 'throw'],
  ['smoothL1Loss', 'NaN input', () => T.F.smoothL1Loss(nan([3]), f([3])), 'tensor'],
  ['smoothL1Loss', 'empty input', () => T.F.smoothL1Loss(f([0]), f([0])), 'tensor'],
  ['mseLoss', 'shapes not broadcastable', () => T.F.mseLoss(f([3, 4]), f([2, 4])), 'throw'],
  ['mseLoss', 'non-tensor target', () => T.F.mseLoss(f([3]), 3), 'throw'],
  ['dropout', 'p outside [0, 1]', () => T.F.dropout(f([3]), 1.5, true), 'throw'],
  ['dropout', 'p NaN', () => T.F.dropout(f([3]), NaN, true), 'throw'],
  ['interpolate', 'output size 0', () => T.F.interpolate(f([1, 1, 4, 4]), [0, 0]), 'throw', ['interpolateBilinear']],
  ['avgPool2d', 'kernel larger than input', () => T.F.avgPool2d(f([1, 1, 2, 2]), [3, 3]), 'throw'],
  // ---- indexing
  ['gather', 'index out of range', () => f([2, 3]).gather(1, i64([[0, 3], [1, 1]])), 'throw'],
  ['gather', 'float index', () => f([2, 3]).gather(1, f([2, 2])), 'throw'],
  ['gather', 'dim out of range', () => f([2, 3]).gather(2, i64([[0]])), 'throw'],
  ['gather', 'index rank differs', () => f([2, 3]).gather(1, i64([0, 1])), 'throw'],
  ['indexSelect', 'index out of range', () => f([4]).indexSelect(0, i64([4])), 'throw'],
  ['indexSelect', 'negative index', () => f([4]).indexSelect(0, i64([-1])), 'throw'],
  ['indexSelect', 'float index', () => f([4]).indexSelect(0, f([1])), 'throw'],
  ['indexSelect', '2-d index', () => f([4]).indexSelect(0, i64([[0]])), 'throw'],
  ['indexSelect', 'empty index', () => f([4]).indexSelect(0, T.zeros([0], { dtype: 'int64' })), 'tensor'],
  ['scatter', 'index out of range', () => f([2, 3]).scatter(1, i64([[5]]), f([1, 1])), 'throw'],
  ['scatter', 'src dtype differs', () => f([2, 3]).scatter(1, i64([[0]]), f([1, 1], { dtype: 'float64' })), 'throw'],
  ['scatter', 'float index', () => f([2, 3]).scatter(1, f([1, 1]), f([1, 1])), 'throw'],
  ['scatterAdd', 'index rank differs', () => f([2, 3]).scatterAdd(1, i64([0]), f([1, 1])), 'throw'],
  ['indexAdd', 'source shape differs', () => f([3]).indexAdd(0, i64([0, 1]), f([3])), 'throw'],
  ['index', 'int index out of range', () => f([3, 2]).index(i64([3])), 'throw', ['tensorIndex']],
  ['index', 'float index tensor', () => f([3, 2]).index(f([1])), 'throw', ['tensorIndex']],
  ['index', 'bool mask of wrong size', () => f([3, 2]).index(bool([1, 0])), 'throw', ['tensorIndex']],
  ['maskedFill', 'float mask', () => f([3]).maskedFill(f([3]), 0), 'throw'],
  ['maskedFill_', 'int64 mask', () => f([3]).maskedFill_(i64([1, 0, 1]), 0), 'throw'],
  ['maskedFill', 'mask not broadcastable', () => f([3]).maskedFill(bool([1, 0]), 0), 'throw'],
  ['maskedFill', 'non-0-d value tensor', () => f([3]).maskedFill(bool([1, 0, 1]), f([3])), 'throw'],
  ['maskedSelect', 'int mask', () => f([3]).maskedSelect(i64([1, 0, 1])), 'throw'],
  ['where', 'float condition', () => T.where(f([3]), f([3]), 0), 'throw'],
  ['where', 'shapes not broadcastable', () => T.where(bool([1, 0, 1]), f([2]), 0), 'throw'],
  ['oneHot', 'float input', () => f([3]).oneHot(4), 'throw'],
  ['oneHot', 'class >= numClasses', () => i64([0, 5]).oneHot(3), 'throw'],
  // ---- shape ops
  ['cat', 'empty list', () => T.cat([]), 'throw'],
  ['cat', 'shapes differ', () => T.cat([f([2, 3]), f([2, 4])]), 'throw'],
  ['cat', 'dim out of range', () => T.cat([f([2]), f([2])], 3), 'throw'],
  ['cat', 'disposed member', () => T.cat([f([2]), dead()]), 'throw'],
  ['cat', 'number in list', () => T.cat([f([2]), 3]), 'throw'],
  ['cat', 'mixed dtypes promote', () => T.cat([f([2]), f([2], { dtype: 'int64' })]), 'tensor'],
  ['stack', 'shapes differ', () => T.stack([f([2]), f([3])]), 'throw'],
  ['stack', 'empty list', () => T.stack([]), 'throw'],
  ['stack', 'dim out of range', () => T.stack([f([2]), f([2])], 3), 'throw'],
  ['reshape', 'numel differs', () => f([2, 3]).reshape([4]), 'throw'],
  ['reshape', 'two -1', () => f([2, 3]).reshape([-1, -1]), 'throw'],
  ['reshape', 'negative size', () => f([2, 3]).reshape([-2, -3]), 'throw'],
  ['reshape', 'huge size', () => f([2, 3]).reshape([1e12, 6]), 'throw'],
  ['reshape', 'non-integer size', () => f([2, 3]).reshape([2.5, 2]), 'throw'],
  ['reshape', 'NaN size', () => f([2, 3]).reshape([NaN]), 'throw'],
  ['reshape', 'Infinity size', () => f([2, 3]).reshape([Infinity]), 'throw'],
  ['reshape', 'string size', () => f([2, 3]).reshape(['6']), 'throw'],
  ['reshape', 'shape not an array', () => f([2, 3]).reshape(6), 'throw'],
  ['reshape', 'empty to [0, -1]', () => f([0, 3]).reshape([0, -1]), 'throw'],
  ['view', 'non-contiguous', () => f([2, 3]).t().view([6]), 'throw'],
  ['view', 'numel differs', () => f([2, 3]).view([7]), 'throw'],
  ['permute', 'too few dims', () => f([2, 3, 4]).permute([0, 1]), 'throw'],
  ['permute', 'repeated dim', () => f([2, 3]).permute([0, 0]), 'throw'],
  ['permute', 'dim out of range', () => f([2, 3]).permute([0, 2]), 'throw'],
  ['transpose', 'dim out of range', () => f([2, 3]).transpose(0, 2), 'throw'],
  ['transpose', 'negative dim out of range', () => f([2, 3]).transpose(-3, 0), 'throw'],
  ['slice', 'step 0', () => f([5]).slice(0, 0, 5, 0), 'throw'],
  ['slice', 'negative step', () => f([5]).slice(0, 4, 0, -1), 'throw'],
  ['slice', 'dim out of range', () => f([5]).slice(1, 0, 2), 'throw'],
  ['slice', 'start after end (empty)', () => f([5]).slice(0, 4, 1), 'tensor'],
  ['slice', 'bounds far out of range clamp', () => f([5]).slice(0, -1e15, 1e15), 'tensor'],
  ['narrow', 'start + length past the end', () => f([5]).narrow(0, 3, 4), 'throw'],
  ['narrow', 'negative length', () => f([5]).narrow(0, 0, -1), 'throw'],
  ['select', 'index out of range', () => f([2, 3]).select(1, 3), 'throw'],
  ['select', 'dim out of range', () => f([2, 3]).select(2, 0), 'throw'],
  ['select', '0-d tensor', () => T.tensor(1).select(0, 0), 'throw'],
  ['unsqueeze', 'dim out of range', () => f([2]).unsqueeze(3), 'throw'],
  ['squeeze', 'dim out of range', () => f([2]).squeeze(4), 'throw'],
  ['flatten', 'start after end', () => f([2, 3, 4]).flatten(2, 1), 'throw'],
  ['expand', 'incompatible size', () => f([2, 3]).expand([2, 4]), 'throw'],
  ['expand', 'fewer dims than the tensor', () => f([2, 3]).expand([3]), 'throw'],
  ['expand', '-1 in a new leading dim', () => f([3]).expand([-1, 3]), 'throw'],
  ['expand', 'huge (a view, no memory)', () => f([1]).expand([1e12]), 'tensor'],
  ['contiguous', 'huge expanded view', () => f([1]).expand([1e12]).contiguous(), 'throw'],
  ['repeat', 'fewer repeats than dims', () => f([2, 3]).repeat([2]), 'throw'],
  ['repeat', 'negative repeat', () => f([2]).repeat([-1]), 'throw'],
  ['repeat', 'huge result', () => f([2, 3]).repeat([1e6, 1e6]), 'throw'],
  ['repeatInterleave', 'negative repeats', () => f([2]).repeatInterleave(-1, 0), 'throw'],
  ['split', 'split size 0', () => f([4]).split(0), 'throw'],
  ['chunk', 'zero chunks', () => f([4]).chunk(0), 'throw'],
  ['flip', 'repeated dim', () => f([2, 3]).flip([0, 0]), 'throw'],
  ['roll', 'shifts and dims differ in length', () => f([2, 3]).roll([1, 1], [0]), 'throw'],
  ['pad', 'padding removes more than the size', () => f([2, 3]).pad([-4, 0]), 'throw'],
  ['pad', 'odd padding length', () => f([2, 3]).pad([1]), 'throw'],
  ['diag', '3-d input', () => f([2, 2, 2]).diag(), 'throw'],
  ['diagonal', 'same dim twice', () => f([2, 2]).diagonal(0, 0, 0), 'throw'],
  // ---- reductions and sorting
  ['sum', 'dim out of range', () => f([2, 3]).sum(2), 'throw'],
  ['sum', 'repeated dim', () => f([2, 3]).sum([0, 0]), 'throw'],
  ['sum', 'non-integer dim', () => f([2, 3]).sum(0.5), 'throw'],
  ['sum', 'empty tensor', () => f([0, 3]).sum(0), 'tensor'],
  ['mean', 'int64 input', () => f([3], { dtype: 'int64' }).mean(), 'throw'],
  ['var', 'dim out of range', () => f([2, 3]).var(3), 'throw'],
  ['var', 'int64 input', () => f([3], { dtype: 'int64' }).var(), 'throw'],
  ['var', 'single element (NaN)', () => f([1]).var(), 'tensor'],
  ['std', 'dim out of range', () => f([2, 3]).std(-3), 'throw'],
  ['logsumexp', 'dim out of range', () => f([2, 3]).logsumexp(2), 'throw'],
  ['norm', 'dim out of range', () => f([2, 3]).norm(2, 5), 'throw', ['vectorNorm']],
  ['max', 'empty tensor', () => f([0]).max(), 'throw', ['maxAll']],
  ['maxDim', 'dim out of range', () => f([2]).maxDim(1), 'throw'],
  ['argmax', 'empty tensor', () => f([0]).argmax(), 'throw'],
  ['topk', 'k larger than the dim', () => f([3]).topk(4), 'throw'],
  ['topk', 'negative k', () => f([3]).topk(-1), 'throw'],
  ['topk', 'dim out of range', () => f([3]).topk(1, 1), 'throw'],
  ['sort', 'dim out of range', () => f([3]).sort(1), 'throw'],
  ['sort', 'empty tensor', () => f([0]).sort(), 'any'],
  ['sort', 'NaN values', () => T.tensor([NaN, 1, -Infinity]).sort(), 'any'],
  ['cumsum', 'dim out of range', () => f([3]).cumsum(1), 'throw'],
  ['svdvals', 'int64 input', () => svdvals(f([3, 3], { dtype: 'int64' })), 'throw'],
  ['svdvals', '1-d input', () => svdvals(f([3])), 'throw'],
  ['svdvals', 'NaN matrix', () => svdvals(nan([3, 3])), 'any'],
  ['svdvals', 'Inf matrix', () => svdvals(inf([3, 3])), 'any'],
  ['svdvals', 'empty matrix', () => svdvals(f([0, 3])), 'tensor'],
  ['eigvalsh', 'non-square', () => f([2, 3]).eigvalsh(), 'throw'],
  ['eigh', 'non-square', () => f([2, 3]).eigh().values, 'throw'],
  // ---- elementwise with bad dtypes / values
  ['add', 'shapes not broadcastable', () => f([2, 3]).add(f([4])), 'throw'],
  ['add', 'bool + bool, fractional alpha', () => bool([1]).add(bool([1]), 0.5), 'throw', ['addScaled']],
  ['sub', 'bool operands', () => bool([1]).sub(bool([0])), 'throw'],
  ['pow', 'int to a negative int power', () => i64([2]).pow(-1), 'throw'],
  ['remainder', 'int by zero', () => i64([5]).remainder(0), 'throw'],
  ['div', 'float by zero (Infinity)', () => f([2]).div(0), 'tensor'],
  ['sqrt', 'negative input (NaN)', () => f([2]).neg().sqrt(), 'tensor'],
  ['log', 'empty tensor', () => f([0]).log(), 'tensor'],
  ['exp', 'disposed', () => dead().exp(), 'throw'],
  ['gelu', 'unknown approximation', () => f([2]).gelu('fast'), 'throw'],
  ['gelu', 'int64 input', () => f([2], { dtype: 'int64' }).gelu(), 'throw'],
  ['clamp', 'NaN bounds', () => f([2]).clamp(NaN, NaN), 'any'],
  // ---- in place
  ['add_', 'result shape would change', () => f([3]).add_(f([2, 3])), 'throw'],
  ['add_', 'float into int64', () => f([3], { dtype: 'int64' }).add_(f([3])), 'throw'],
  ['mul_', 'leaf that requires grad', () => f([3], { requiresGrad: true }).mul_(2), 'throw'],
  ['copy_', 'shapes not broadcastable', () => f([3]).copy_(f([4])), 'throw'],
  ['copy_', 'into an expanded view', () => f([1]).expand([3]).copy_(f([3])), 'throw'],
  ['uniform_', 'from > to', () => f([3]).uniform_(1, 0), 'throw'],
  ['normal_', 'negative std', () => f([3]).normal_(0, -1), 'throw'],
  ['foreachLerp_', 'lists differ in length', () => { T.F.foreachLerp_([f([2])], [], 0.5); return f([1]); }, 'throw'],
  // ---- creation
  ['zeros', 'huge size 1e12', () => T.zeros([1e12]), 'throw'],
  ['zeros', 'size product overflows int64', () => T.zeros([2 ** 40, 2 ** 40]), 'throw'],
  ['zeros', 'negative size', () => T.zeros([-1]), 'throw'],
  ['zeros', 'NaN size', () => T.zeros([NaN]), 'throw'],
  ['zeros', 'shape not an array', () => T.zeros(3), 'throw'],
  ['zeros', 'unknown dtype', () => T.zeros([2], { dtype: 'float8' }), 'throw', ['dtype']],
  ['zeros', 'unknown device', () => T.zeros([2], { device: 'tpu' }), 'throw'],
  ['zeros', 'cuda without CUDA', () => T.zeros([2], { device: 'cuda' }), 'any'],
  ['empty', 'huge size 1e12', () => T.empty([1e12]), 'throw'],
  ['ones', 'size product overflows', () => T.ones([1e10, 1e10]), 'throw'],
  ['full', 'huge size', () => T.full([1e6, 1e6], 1), 'throw'],
  ['randn', 'huge size', () => T.randn([1e12]), 'throw'],
  ['randn', 'tensor as generator', () => T.randn([2], { generator: f([2]) }), 'throw'],
  ['rand', 'product overflows', () => T.rand([2 ** 62, 4]), 'throw'],
  ['randint', 'low >= high', () => T.randint(5, 5, [3]), 'throw'],
  ['randperm', 'negative n', () => T.randperm(-1), 'throw'],
  ['randperm', 'huge n', () => T.randperm(1e12), 'throw'],
  ['arange', 'step 0', () => T.arange(0, 5, 0), 'throw'],
  ['arange', 'NaN end', () => T.arange(0, NaN), 'throw'],
  ['arange', 'wrong-sign step', () => T.arange(0, 5, -1), 'throw'],
  ['arange', 'huge length', () => T.arange(0, 1e13), 'throw'],
  ['linspace', 'negative steps', () => T.linspace(0, 1, -1), 'throw'],
  ['linspace', 'huge steps', () => T.linspace(0, 1, 1e12), 'throw'],
  ['eye', 'negative n', () => T.eye(-2), 'throw'],
  ['eye', 'huge n', () => T.eye(1e7), 'throw'],
  ['tensor', 'data length differs from shape', () => T.tensor([1, 2, 3], [2, 2]), 'throw', ['tensor', 'fromBuffer']],
  ['tensor', 'negative size in shape', () => T.tensor([1, 2], [-2]), 'throw'],
  ['tensor', 'ragged nested array', () => T.tensor([[1, 2], [3]]), 'throw', ['tensor', 'fromBuffer']],
  ['tensor', 'huge shape for small data', () => T.tensor([1], [1e12]), 'throw', ['tensor', 'fromBuffer']],
  ['tensor', 'bfloat16 from numbers', () => T.tensor([1], { dtype: 'bfloat16' }), 'throw'],
  ['tensor', 'non-numeric entries (NaN tensor)', () => T.tensor(['a', {}]), 'tensor'],
  ['tensor', 'empty array', () => T.tensor([]), 'tensor'],
  // ---- conversion, data out, autograd
  ['to', 'unknown dtype', () => f([2]).to('complex32'), 'throw', ['dtype']],
  ['to', 'unknown device', () => f([2]).to(null, 'tpu:0'), 'throw'],
  ['to', 'NaN to int64', () => nan([2]).to('int64'), 'tensor'],
  ['item', 'multi-element tensor', () => f([2]).item(), 'throw'],
  ['item', 'empty tensor', () => f([0]).item(), 'throw'],
  ['item', 'disposed', () => dead().item(), 'throw'],
  ['toArray', 'disposed', () => dead().toArray(), 'throw', ['disposed']],
  ['shape', 'disposed', () => dead().shape, 'throw'],
  ['backward', 'non-scalar output', () => { const x = f([3], { requiresGrad: true }); x.mul(2).backward(); return x; }, 'throw'],
  ['backward', 'no graph', () => { const x = f([1]); x.backward(); return x; }, 'throw'],
  ['backward', 'gradient shape differs', () => { const x = f([3], { requiresGrad: true }); x.mul(2).backward(f([2])); return x; }, 'throw'],
  ['backward', 'twice without retainGraph', () => { const x = f([3], { requiresGrad: true }); const y = x.exp().sum(); y.backward(); y.backward(); return x; }, 'throw'],
  ['requiresGrad_', 'int64 tensor', () => f([2], { dtype: 'int64' }).requiresGrad_(true), 'throw'],
  ['setGrad', 'gradient of another shape', () => { const x = f([3], { requiresGrad: true }); x.grad = f([2, 3]); return x; }, 'throw'],
  ['setGrad', 'gradient of another dtype', () => { const x = f([3], { requiresGrad: true }); x.grad = f([3], { dtype: 'float64' }); return x; }, 'throw'],
  ['generatorSetState', 'state of the wrong type', () => { gen.setState(f([3])); return f([1]); }, 'throw'],
  ['generatorSetState', 'tensor as generator', () => { T.Generator.prototype.setState.call({ h: f([1]).h }, gen.getState()); return f([1]); }, 'throw'],
  ['setNumThreads', 'zero threads', () => { T.setNumThreads(0); return f([1]); }, 'throw', ['threads']],
  ['setNumThreads', 'a million threads', () => { native.setNumThreads(1e6); return f([1]); }, 'throw'],
];

const summary = { total: cases.length, ops: [], throws: 0, tensors: 0, failures: [], maxMs: 0, slowest: '' };
const ops = new Set();
const isTensor = (v) => v instanceof T.Tensor || (Array.isArray(v) && v.length > 0 && v.every(isTensor)) ||
  (v !== null && typeof v === 'object' && v.values instanceof T.Tensor && v.indices instanceof T.Tensor);
const disposeAll = (v) => { if (v instanceof T.Tensor) v.dispose(); else if (Array.isArray(v)) v.forEach(disposeAll); else if (v && typeof v === 'object') Object.values(v).forEach(disposeAll); };
cases.forEach(([op, label, fn, expect, names], k) => {
  process.stderr.write('>> ' + k + ' ' + op + ': ' + label + '\n');
  ops.add(op);
  const t0 = performance.now();
  let outcome, detail = '';
  try {
    const v = T.tidy(() => { const res = fn(); return isTensor(res) ? res : { notATensor: res }; });
    if (isTensor(v)) { outcome = 'tensor'; disposeAll(v); }
    else { outcome = 'other'; detail = 'returned ' + String(v.notATensor); }
  } catch (e) {
    outcome = 'throw';
    const msg = e instanceof Error ? e.message : String(e);
    const top = e instanceof Error ? String(e.stack).split('\n').slice(1, 3).join(' ') : '';
    const wanted = names ?? [op];
    if (!(e instanceof Error)) detail = 'threw a non-Error: ' + msg;
    else if (!wanted.some((n) => msg.includes(n))) {
      // a JS TypeError raised before the native call (e.g. null.h) names the op in its top frame
      if (e instanceof TypeError && wanted.some((n) => top.includes('.' + n + ' ') || top.includes(' ' + n + ' '))) summary.namedInStack = (summary.namedInStack ?? 0) + 1;
      else detail = 'message does not name ' + wanted.join('/') + ': ' + msg.slice(0, 300);
    }
  }
  const ms = performance.now() - t0;
  if (ms > summary.maxMs) { summary.maxMs = ms; summary.slowest = op + ': ' + label; }
  if (outcome === 'throw') summary.throws++; else if (outcome === 'tensor') summary.tensors++;
  if (outcome === 'other') detail ||= 'neither threw nor returned a Tensor';
  else if (expect !== 'any' && outcome !== expect) detail ||= 'expected ' + expect + ', got ' + outcome;
  if (detail) summary.failures.push(op + ' [' + label + ']: ' + detail);
});
summary.ops = [...ops];
summary.liveAtEnd = T.liveTensors();
summary.scopeDepth = T.scopeDepth();
process.stdout.write(JSON.stringify(summary) + '\n');
`;

function runChild(source: string, timeoutMs: number): ReturnType<typeof spawnSync> & { stdout: string; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'cjepa-fuzz-'));
  try {
    const file = join(dir, 'child.mjs');
    writeFileSync(file, source);
    return spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 }) as ReturnType<typeof spawnSync> & { stdout: string; stderr: string };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the harness sees a native abort as a failure (signal), not as a dead runner', () => {
  const r = runChild(`import '${ENGINE}'; process.stderr.write('>> about to abort\\n'); process.abort();`, 30_000);
  assert.equal(r.signal, 'SIGABRT');
  assert.match(r.stderr, />> about to abort/);
});

test('fuzzed arguments to >= 30 ops: every case throws an Error naming the op or returns a Tensor; no abort', () => {
  const t0 = Date.now();
  const r = runChild(CHILD, 120_000);
  const lastCase = r.stderr.split('\n').filter((l) => l.startsWith('>> ')).pop() ?? '(none)';
  assert.equal(r.error, undefined, `child could not run: ${String(r.error)}`);
  assert.equal(r.signal, null, `child killed by ${r.signal} during case "${lastCase}"\n${r.stderr.slice(-2000)}`);
  assert.equal(r.status, 0, `child exited with ${r.status} during case "${lastCase}"\n${r.stderr.slice(-2000)}`);
  const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    total: number; ops: string[]; throws: number; tensors: number; failures: string[]; maxMs: number; slowest: string;
    liveAtEnd: number; scopeDepth: number; namedInStack?: number;
  };
  console.log(`# fuzz: ${summary.total} cases over ${summary.ops.length} ops, ${summary.throws} threw, ${summary.tensors} returned tensors, ` +
    `${summary.namedInStack ?? 0} named in the stack only, slowest ${summary.maxMs.toFixed(0)} ms (${summary.slowest}), child ${Date.now() - t0} ms`);
  assert.deepEqual(summary.failures, []);
  assert.ok(summary.ops.length >= 30, `only ${summary.ops.length} ops covered`);
  assert.equal(summary.throws + summary.tensors, summary.total);
  assert.ok(summary.throws >= 150, `only ${summary.throws} cases threw`);
  assert.ok(summary.maxMs < 5000, `case "${summary.slowest}" took ${summary.maxMs} ms: huge sizes must fail fast`);
  assert.equal(summary.scopeDepth, 0);
  assert.ok(summary.liveAtEnd < 10, `${summary.liveAtEnd} tensors left alive by the cases`);
});
