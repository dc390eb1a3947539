import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { CosineWDSchedule, WarmupCosineSchedule, momentumAt, autoEmaStart, betaVicregAt, stepsOf, decayWindow } from '../src/method/schedulers.js';

/** Runs plain Python 3 (math module only) with a JSON input on stdin and parses the JSON it prints. */
function py(code: string, input: unknown): unknown {
  const r = spawnSync('/usr/bin/python3', ['-c', code], { input: JSON.stringify(input), encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, `python failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function close(a: number, b: number, what: string): void {
  assert.ok(Math.abs(a - b) <= 1e-12 + 1e-12 * Math.abs(b), `${what}: ${a} vs ${b}`);
}

// Independent Python reimplementation of the official schedulers (stateful step(): increment, then compute)
// and of train.py's momentum generator. Each scheduler is stepped once per iteration, as train.py does.
const PY = `
import json, math, sys

class WarmupCosine:
    def __init__(self, warmup_steps, start_lr, ref_lr, T_max, final_lr=0.):
        self.start_lr, self.ref_lr, self.final_lr = start_lr, ref_lr, final_lr
        self.warmup_steps = warmup_steps
        self.T_max = T_max - warmup_steps
        self._step = 0.
    def step(self):
        self._step += 1
        if self._step < self.warmup_steps:
            progress = float(self._step) / float(max(1, self.warmup_steps))
            return self.start_lr + progress * (self.ref_lr - self.start_lr)
        progress = float(self._step - self.warmup_steps) / float(max(1, self.T_max))
        return max(self.final_lr, self.final_lr + (self.ref_lr - self.final_lr) * 0.5 * (1. + math.cos(math.pi * progress)))

class CosineWD:
    def __init__(self, ref_wd, T_max, final_wd=0.):
        self.ref_wd, self.final_wd, self.T_max = ref_wd, final_wd, T_max
        self._step = 0.
    def step(self):
        self._step += 1
        progress = self._step / self.T_max
        wd = self.final_wd + (self.ref_wd - self.final_wd) * 0.5 * (1. + math.cos(math.pi * progress))
        return max(self.final_wd, wd) if self.final_wd <= self.ref_wd else min(self.final_wd, wd)

inp = json.load(sys.stdin)
out = {'lr': [], 'wd': [], 'mom': []}
for c in inp['lr']:
    s = WarmupCosine(c['warmup'], c['start'], c['ref'], c['T'], c['final'])
    out['lr'].append([s.step() for _ in range(c['steps'])])
for c in inp['wd']:
    s = CosineWD(c['ref'], c['T'], c['final'])
    out['wd'].append([s.step() for _ in range(c['steps'])])
for c in inp['mom']:
    ema, ipe, epochs, ipe_scale = c['ema'], c['ipe'], c['epochs'], c['ipe_scale']
    gen = (ema[0] + i*(ema[1]-ema[0])/(ipe*epochs*ipe_scale) for i in range(int(ipe*epochs*ipe_scale)+1))
    out['mom'].append(list(gen))
print(json.dumps(out))
`;

const lrCases = [
  { warmup: 40, start: 2e-4, ref: 1e-3, final: 1e-6, T: 300 }, // ViT-H/14 recipe shape (epochs as steps)
  { warmup: 15, start: 0, ref: 5e-4, final: 0, T: 157 },
  { warmup: 0, start: 1e-4, ref: 1e-3, final: 1e-5, T: 50 }, // no warmup
  { warmup: 25, start: 1e-4, ref: 1e-3, final: 1e-6, T: 25 }, // T == warmup
  { warmup: 1, start: 3e-4, ref: 1e-3, final: 2e-4, T: 2 },
  { warmup: 30, start: 1e-4, ref: 1e-3, final: 0, T: 20 }, // T < warmup (official T_max negative)
  { warmup: 5, start: 1e-3, ref: 1e-3, final: 1e-3, T: 12 }, // constant
  { warmup: 4, start: 0, ref: 1e-3, final: 1e-6, T: 1 },
].map((c) => ({ ...c, steps: c.T + 10 })); // 10 steps past T: official formula is not clamped there
const wdCases = [
  { ref: 0.04, final: 0.4, T: 300 }, // I-JEPA: increasing (min clipping)
  { ref: 0.4, final: 0.04, T: 97 }, // decreasing (max clipping)
  { ref: 0.05, final: 0.05, T: 10 },
  { ref: 1e-6, final: 1e-6, T: 1 },
  { ref: 0.04, final: 0.4, T: 1 },
].map((c) => ({ ...c, steps: c.T + 10 }));
const momCases = [
  { ema: [0.996, 1.0], ipe: 50, epochs: 6, ipe_scale: 1.0 },
  { ema: [0.996, 1.0], ipe: 37, epochs: 3, ipe_scale: 1.25 },
  { ema: [0.99, 0.999], ipe: 1, epochs: 1, ipe_scale: 1.0 },
  { ema: [0.9, 1.0], ipe: 7, epochs: 3, ipe_scale: 0.8 },
];

const ref = py(PY, { lr: lrCases, wd: wdCases, mom: momCases }) as { lr: number[][]; wd: number[][]; mom: number[][] };

test('WarmupCosineSchedule.lrAt(i) equals the official value used at iteration i (Python), incl. edge cases', () => {
  lrCases.forEach((c, k) => {
    const s = new WarmupCosineSchedule({ warmupSteps: c.warmup, startLr: c.start, refLr: c.ref, finalLr: c.final, totalSteps: c.T });
    assert.equal(ref.lr[k]!.length, c.steps);
    for (let i = 0; i < c.steps; i++) close(s.lrAt(i), ref.lr[k]![i]!, `lr case ${k} step ${i}`);
  });
});

test('WarmupCosineSchedule: convention landmarks', () => {
  const s = new WarmupCosineSchedule({ warmupSteps: 40, startLr: 2e-4, refLr: 1e-3, finalLr: 1e-6, totalSteps: 300 });
  close(s.lrAt(0), 2e-4 + (1e-3 - 2e-4) / 40, 'first step is one warmup increment above startLr');
  close(s.lrAt(39), 1e-3, 'refLr at step warmup - 1');
  close(s.lrAt(299), 1e-6, 'finalLr at the last step');
  for (let i = 1; i < 40; i++) assert.ok(s.lrAt(i) > s.lrAt(i - 1));
  for (let i = 40; i < 300; i++) assert.ok(s.lrAt(i) < s.lrAt(i - 1));
  assert.ok(s.lrAt(320) > 1e-6, 'official formula rises again past T (not clamped)');
  // warmup 0: the cosine starts at once and refLr itself is never used
  const w0 = new WarmupCosineSchedule({ warmupSteps: 0, startLr: 0, refLr: 1, finalLr: 0, totalSteps: 4 });
  assert.deepEqual([0, 1, 2, 3].map((i) => w0.lrAt(i)).map((x) => +x.toFixed(12)), [0.853553390593, 0.5, 0.146446609407, 0]);
  // T == warmup: ref at step warmup-1, then finalLr at step warmup, then back to ref (progress 2)
  const eq = new WarmupCosineSchedule({ warmupSteps: 3, startLr: 0, refLr: 1, finalLr: 0.1, totalSteps: 3 });
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => +eq.lrAt(i).toFixed(12)), [1 / 3, 2 / 3, 1, 0.1, 1].map((x) => +x.toFixed(12)));
  assert.throws(() => s.lrAt(-1), RangeError);
  assert.throws(() => s.lrAt(1.5), RangeError);
  assert.throws(() => new WarmupCosineSchedule({ warmupSteps: -1, startLr: 0, refLr: 1, finalLr: 0, totalSteps: 3 }), RangeError);
});

test('CosineWDSchedule.wdAt(i) equals the official value (Python), both clipping directions', () => {
  wdCases.forEach((c, k) => {
    const s = new CosineWDSchedule({ refWd: c.ref, finalWd: c.final, totalSteps: c.T });
    for (let i = 0; i < c.steps; i++) close(s.wdAt(i), ref.wd[k]![i]!, `wd case ${k} step ${i}`);
  });
  const s = new CosineWDSchedule({ refWd: 0.04, finalWd: 0.4, totalSteps: 300 });
  close(s.wdAt(299), 0.4, 'finalWd at the last step');
  for (let i = 1; i < 300; i++) assert.ok(s.wdAt(i) > s.wdAt(i - 1));
  assert.ok(s.wdAt(0) > 0.04);
  assert.throws(() => new CosineWDSchedule({ refWd: 0.04, finalWd: 0.4, totalSteps: 0 }), RangeError);
});

test('momentumAt equals the official generator values (Python), ipeScale, and ends where the generator ends', () => {
  momCases.forEach((c, k) => {
    const total = c.ipe * c.epochs;
    const vals = ref.mom[k]!;
    assert.equal(vals.length, Math.trunc(total * c.ipe_scale) + 1);
    for (let i = 0; i < vals.length; i++) {
      close(momentumAt(i, total, c.ema[0], c.ema[1], c.ipe_scale), vals[i]!, `momentum case ${k} step ${i}`);
    }
    assert.throws(() => momentumAt(vals.length, total, c.ema[0], c.ema[1], c.ipe_scale), /past the official schedule/);
  });
  assert.equal(momentumAt(0, 100), 0.996);
  close(momentumAt(100, 100), 1.0, 'defaults 0.996 -> 1.0');
  close(momentumAt(99, 100), 0.996 + (99 * 0.004) / 100, 'last training step is not exactly 1.0');
  assert.throws(() => momentumAt(0, 0), RangeError);
});

test("'auto' EMA start: 1 - 40/T within [0.99, 0.996]; the init share left at the end is ~exp(-20) in range", () => {
  assert.equal(autoEmaStart(1000), 0.99);
  assert.equal(autoEmaStart(4000), 0.99);
  assert.ok(Math.abs(autoEmaStart(8000) - 0.995) < 1e-12);
  assert.equal(autoEmaStart(400_000), 0.996);
  assert.throws(() => autoEmaStart(0), /totalSteps/);
  // product of the momenta over a run of T = 8,000 steps: exp(-(1 - m0) T / 2) = exp(-20)
  const T = 8000, m0 = autoEmaStart(T);
  let logShare = 0;
  for (let i = 0; i < T; i++) logShare += Math.log(momentumAt(i, T, m0, 1));
  assert.ok(Math.abs(logShare + 20) < 0.05, `log share ${logShare}`);
});

test('betaVicregAt: constant without decay; cosine from beta to 0 over decaySteps, then exactly 0', () => {
  for (const step of [0, 1, 999, 100_000]) assert.equal(betaVicregAt(step, 0.1, 0), 0.1);
  assert.equal(betaVicregAt(0, 0.1, 1000), 0.1);
  close(betaVicregAt(250, 0.1, 1000), 0.1 * 0.5 * (1 + Math.SQRT1_2), 'quarter way: beta (1 + cos(pi/4)) / 2');
  close(betaVicregAt(500, 0.1, 1000), 0.05, 'half way: beta / 2');
  assert.ok(betaVicregAt(999, 0.1, 1000) > 0 && betaVicregAt(999, 0.1, 1000) < 1e-6, 'last decaying step is tiny but not 0');
  assert.equal(betaVicregAt(1000, 0.1, 1000), 0);
  assert.equal(betaVicregAt(5000, 0.1, 1000), 0);
  for (let s = 1; s < 1000; s++) assert.ok(betaVicregAt(s, 0.1, 1000) <= betaVicregAt(s - 1, 0.1, 1000), `non-increasing at ${s}`);
  assert.throws(() => betaVicregAt(-1, 0.1, 10), RangeError);
  // a decay that starts at step 4,000: beta until then, the same cosine shifted, 0 from 5,000
  for (const step of [0, 3999]) assert.equal(betaVicregAt(step, 0.1, 1000, 4000), 0.1);
  close(betaVicregAt(4500, 0.1, 1000, 4000), 0.05, 'half way through a shifted decay: beta / 2');
  for (const s of [4000, 4250, 4999]) assert.equal(betaVicregAt(s, 0.1, 1000, 4000), betaVicregAt(s - 4000, 0.1, 1000));
  assert.equal(betaVicregAt(5000, 0.1, 1000, 4000), 0);
  assert.equal(betaVicregAt(100, 0.1, 0, 4000), 0.1, 'no decay steps: no decay, whatever the start');
  assert.throws(() => betaVicregAt(10, 0.1, 10, 1.5), RangeError);
});

test('stepsOf: a step count as given; a share of the run rounded to the nearest step', () => {
  assert.equal(stepsOf(4000, 16000), 4000);
  assert.equal(stepsOf('25%', 16000), 4000);
  assert.equal(stepsOf('25%', 3516), 879);
  assert.equal(stepsOf('12.5%', 421), 53); // 52.625
  assert.equal(stepsOf('50%', 421), 211); // 210.5 rounds up
  assert.equal(stepsOf('0%', 421), 0);
  assert.equal(stepsOf('100%', 421), 421);
  // the preset's '25%' + '25%' on the one-hour schedule is the measured 4,000-8,000 window
  for (const s of [3999, 4000, 6000, 8000]) assert.equal(betaVicregAt(s, 0.1, stepsOf('25%', 16000), stepsOf('25%', 16000)), betaVicregAt(s, 0.1, 4000, 4000));
  assert.throws(() => stepsOf('quarter' as never, 100), /percentage/);
  assert.throws(() => stepsOf('25%', -1), RangeError);
});

test('decayWindow: step counts need no run length; shares resolve against it and are refused without it', () => {
  assert.deepEqual(decayWindow({ betaDecayStart: 4000, betaDecaySteps: 2000 }), { start: 4000, steps: 2000 });
  assert.deepEqual(decayWindow({ betaDecayStart: '25%', betaDecaySteps: '25%' }, 16000), { start: 4000, steps: 4000 });
  assert.deepEqual(decayWindow({ betaDecayStart: 100, betaDecaySteps: '10%' }, 3516), { start: 100, steps: 352 });
  assert.throws(() => decayWindow({ betaDecayStart: 0, betaDecaySteps: '25%' }), /betaDecaySteps\/betaDecayStart given as a share.*total steps/);
});
