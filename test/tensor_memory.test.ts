// Deterministic memory: a 200-step training loop keeps the number of live native tensors flat, and
// the scope rules of tidy / keep / dispose / `using` hold.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';

test('200 training steps of an MLP inside tidy: live tensors stay flat and the loss decreases', () => {
  const gen = new T.Generator(3);
  const D = 8, H = 32, NS = 64;
  const init = (shape: number[], scale: number) => T.noGrad(() => T.tidy(() => T.randn(shape, { generator: gen }).mul(scale))).requiresGrad_(true);
  const params = [init([H, D], D ** -0.5), init([H], 0.1), init([1, H], H ** -0.5), init([1], 0.1)];
  const [w1, b1, w2, b2] = params as [T.Tensor, T.Tensor, T.Tensor, T.Tensor];
  // AdamW state, persistent like the parameters
  const m = params.map((p) => T.zerosLike(p));
  const v = params.map((p) => T.zerosLike(p));
  // data: y = sin(x . u) + 0.1 x0
  const X = T.randn([NS, D], { generator: gen });
  const Y = T.tidy(() => X.matmul(T.randn([D, 1], { generator: gen })).sin().add(X.slice(1, 0, 1).mul(0.1)));
  const lr = 1e-2, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, wd = 0.01;

  const baseline = T.liveTensors();
  const live: number[] = [];
  const losses: number[] = [];
  for (let step = 1; step <= 200; step++) {
    const loss = T.tidy(() => {
      const h = T.F.gelu(T.F.linear(X, w1, b1));
      const out = T.F.linear(h, w2, b2);
      const l = T.F.mseLoss(out, Y);
      l.backward();
      T.noGrad(() => {
        const bc1 = 1 - beta1 ** step, bc2 = 1 - beta2 ** step;
        params.forEach((p, i) => {
          const g = p.grad!;
          m[i]!.mul_(beta1).add_(g, 1 - beta1);
          v[i]!.mul_(beta2).addcmul_(g, g, 1 - beta2);
          const denom = v[i]!.div(bc2).sqrt().add(eps);
          p.mul_(1 - lr * wd);
          p.sub_(m[i]!.div(bc1).div(denom).mul(lr));
          p.grad = undefined;
        });
      });
      return l.item();
    });
    losses.push(loss);
    live.push(T.liveTensors());
  }
  assert.equal(T.scopeDepth(), 0);
  assert.ok(live.every((n) => n === live[0]), `live tensors not flat: first ${live[0]}, max ${Math.max(...live)}, last ${live[live.length - 1]}`);
  assert.equal(live[0], baseline, 'a training step left tensors behind');
  assert.ok(losses.every(Number.isFinite));
  assert.ok(losses[199]! < 0.5 * losses[0]!, `loss did not decrease enough: ${losses[0]} -> ${losses[199]}`);
  assert.ok(params.every((p) => p.grad === undefined));

  for (const t of [...params, ...m, ...v, X, Y]) t.dispose();
  assert.equal(T.liveTensors(), baseline - (3 * params.length + 2));
});

test('liveTensors counts creation and disposal', () => {
  const before = T.liveTensors();
  const a = T.ones([3]);
  const [p, q] = a.split(2);
  assert.equal(T.liveTensors(), before + 3);
  a.dispose();
  a.dispose(); // idempotent
  assert.equal(T.liveTensors(), before + 2);
  p!.dispose(); q!.dispose();
  assert.equal(T.liveTensors(), before);
});

test('tidy: returned tensors survive, the rest are disposed; nested tidy hands results to the parent', () => {
  const before = T.liveTensors();
  let tmp!: T.Tensor, innerKept!: T.Tensor, innerDropped!: T.Tensor, innerTmp!: T.Tensor;
  const result = T.tidy(() => {
    tmp = T.ones([2]);
    innerKept = T.tidy(() => {
      innerTmp = T.zeros([2]);
      return innerTmp.add(1);
    });
    assert.ok(innerTmp.disposed, 'inner temporary disposed at inner exit');
    assert.ok(!innerKept.disposed, 'inner result alive after inner exit');
    innerDropped = T.tidy(() => T.full([1], 5));
    assert.ok(!innerDropped.disposed);
    return tmp.add(innerKept);
  });
  assert.deepEqual(result.toArray(), [2, 2]);
  assert.ok(tmp.disposed);
  assert.ok(innerKept.disposed, 'inner result was handed to the parent scope, which disposed it');
  assert.ok(innerDropped.disposed);
  assert.ok(!result.disposed);
  assert.equal(T.liveTensors(), before + 1);
  result.dispose();
  assert.equal(T.liveTensors(), before);

  // results inside arrays, plain objects and Maps survive; non-tensor results pass through
  const r = T.tidy(() => ({ a: [T.ones([1]), { b: T.zeros([1]) }], m: new Map([['c', T.full([1], 3)]]), n: 42 }));
  assert.ok(!(r.a[0] as T.Tensor).disposed);
  assert.ok(!(r.a[1] as { b: T.Tensor }).b.disposed);
  assert.equal(r.m.get('c')!.item(), 3);
  assert.equal(r.n, 42);
  (r.a[0] as T.Tensor).dispose(); (r.a[1] as { b: T.Tensor }).b.dispose(); r.m.get('c')!.dispose();
  assert.equal(T.liveTensors(), before);
  assert.equal(T.tidy(() => T.ones([2]).sum().item()), 2);
  assert.equal(T.liveTensors(), before);
});

test('keep() exempts a tensor from every enclosing scope', () => {
  const before = T.liveTensors();
  let kept!: T.Tensor, other!: T.Tensor;
  T.tidy(() => {
    T.tidy(() => {
      kept = T.keep(T.ones([4]));
      other = T.ones([4]);
    });
  });
  assert.ok(!kept.disposed);
  assert.ok(other.disposed);
  assert.equal(kept.sum().item(), 4);
  kept.dispose();
  assert.equal(T.liveTensors(), before + 1); // the sum above, made outside any scope
});

test('an exception inside tidy still disposes the scope and restores the scope stack', () => {
  const before = T.liveTensors();
  let a!: T.Tensor, b!: T.Tensor;
  assert.throws(() => T.tidy(() => {
    a = T.ones([2]);
    T.tidy(() => {
      b = T.ones([3]);
      // a failing native op in the middle of a scope
      a.matmul(T.ones([5, 5]));
    });
  }), /matmul/);
  assert.ok(a.disposed && b.disposed);
  assert.equal(T.scopeDepth(), 0);
  assert.equal(T.liveTensors(), before);
  assert.throws(() => T.tidy(() => { T.ones([1]); throw new RangeError('user error'); }), RangeError);
  assert.equal(T.liveTensors(), before);
  assert.equal(T.scopeDepth(), 0);
  // an async function is refused (its tensors would escape), and its scope is still closed
  assert.throws(() => T.tidy((async () => T.ones([1])) as unknown as () => T.Tensor), /synchronous/);
  assert.equal(T.scopeDepth(), 0);
});

test('using a disposed tensor throws a clear "disposed" error', () => {
  const t = T.ones([2, 2]);
  t.dispose();
  assert.ok(t.disposed);
  assert.equal(String(t), 'Tensor(<disposed>)');
  assert.throws(() => t.add(1), (e: unknown) => e instanceof Error && /^add\(<disposed>.*disposed Tensor/.test(e.message));
  assert.throws(() => T.ones([2]).mul(t), /mul\(.*argument 1 is a disposed Tensor/);
  assert.throws(() => t.shape, /shape.*disposed/);
  assert.throws(() => t.toArray(), /disposed/);
  assert.throws(() => t.item(), /disposed/);
  assert.throws(() => t.backward(), /backward.*disposed/);
  assert.throws(() => T.cat([T.ones([1]), t]), /cat.*disposed/);
  assert.throws(() => T.F.linear(T.ones([2, 2]), t), /linear.*disposed/);
  // a tensor disposed by its scope is just as dead
  const escaped = T.tidy(() => { const x = T.ones([1]); return [x.add(1), x] as const; })[1];
  assert.ok(!escaped.disposed); // returned, so it survived
  escaped.dispose();
  let leaked!: T.Tensor;
  T.tidy(() => { leaked = T.ones([1]); });
  assert.throws(() => leaked.exp(), /exp.*disposed/);
});

test('`using` releases a tensor at block end ([Symbol.dispose])', () => {
  const before = T.liveTensors();
  let seen!: T.Tensor;
  {
    using t = T.ones([3]);
    seen = t;
    assert.ok(!t.disposed);
    assert.equal(T.liveTensors(), before + 1);
  }
  assert.ok(seen.disposed);
  assert.equal(T.liveTensors(), before);
  assert.equal(typeof (seen as unknown as Record<symbol, unknown>)[T.disposeSymbol], 'function');
  // also on early exit by exception
  let inner!: T.Tensor;
  assert.throws(() => {
    using u = T.zeros([2]);
    inner = u;
    throw new Error('early');
  }, /early/);
  assert.ok(inner.disposed);
  assert.equal(T.liveTensors(), before);
});
