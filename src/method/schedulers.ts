/**
 * Learning-rate, weight-decay and EMA-momentum schedules matching the official I-JEPA code
 * (facebookresearch/ijepa: src/utils/schedulers.py, src/helper.py init_opt, src/train.py).
 *
 * Step convention (all three): `step` is the 0-based index of the optimiser step / iteration, and the
 * returned value is the one the official trainer USES at that iteration.
 *  - The official lr/wd schedulers keep a counter `_step` starting at 0 and `step()` increments it
 *    BEFORE computing, and train.py calls `scheduler.step()` at the start of every iteration. So the
 *    value used at 0-based iteration i is the formula evaluated at counter i + 1; `lrAt(i)` / `wdAt(i)`
 *    return exactly that. Consequences: the lr at iteration 0 is already one warmup increment above
 *    startLr (startLr itself is never used when warmupSteps > 0), refLr is used at iteration
 *    warmupSteps - 1, and finalLr (and finalWd) is reached at the last iteration i = T - 1.
 *  - The momentum generator yields m_0, m_1, ... and train.py takes one value per iteration (after the
 *    optimiser step), so `momentumAt(i)` is the i-th value, i.e. m_i = start + i (end - start)/(T ipeScale).
 * Resuming at global iteration g is therefore just evaluating at g, g + 1, ... (the official code
 * fast-forwards the counters by start_epoch * ipe, which is the same thing).
 *
 * The official formulas are not clamped past T: for counters > T the cosine rises again (the max/min
 * clipping only guards the final value's side). That is reproduced here; trainers should not run past T.
 * In the official trainer T = int(ipeScale * epochs * ipe) (configs use ipeScale 1.0).
 */

export interface WarmupCosineConfig {
  warmupSteps: number; // linear warmup length in iterations (official: int(warmup_epochs * ipe))
  startLr: number; // lr at counter 0 of the warmup (never used itself when warmupSteps > 0)
  refLr: number; // peak lr, reached at the end of warmup
  finalLr: number; // lr at the end of the cosine (official default 0)
  totalSteps: number; // T: total iterations of the schedule (official T_max argument)
}

/** Warmup longer than this fraction of the run is scaled down (to WARMUP_CAP_FRACTION of it). */
export const WARMUP_MAX_FRACTION = 0.25;
export const WARMUP_CAP_FRACTION = 0.1;

export interface ScaledWarmup {
  /** Warmup steps used. */
  steps: number;
  /** Warmup steps the config asked for (warmupEpochs x steps per epoch). */
  configured: number;
  /** Whether the configured warmup was cut to fit the run. */
  capped: boolean;
}

/**
 * Warmup scaled to the run: the configured warmup (warmupEpochs x steps per epoch), unless it exceeds
 * 25 % of the run's steps, then 10 % of them (at least 1 step). A short run (`--epochs 1` with one
 * warmup epoch) would otherwise be all warmup and its learning rate would never decay.
 */
export function scaledWarmup(warmupEpochs: number, stepsPerEpoch: number, totalSteps: number): ScaledWarmup {
  const configured = Math.round(warmupEpochs * stepsPerEpoch);
  if (configured <= WARMUP_MAX_FRACTION * totalSteps) return { steps: configured, configured, capped: false };
  return { steps: Math.max(1, Math.min(configured, Math.round(WARMUP_CAP_FRACTION * totalSteps))), configured, capped: true };
}

/** Linear warmup startLr -> refLr, then cosine refLr -> finalLr over totalSteps - warmupSteps. */
export class WarmupCosineSchedule {
  readonly config: Readonly<WarmupCosineConfig>;

  constructor(config: WarmupCosineConfig) {
    const { warmupSteps, totalSteps } = config;
    if (!Number.isInteger(warmupSteps) || warmupSteps < 0) {
      throw new RangeError(`WarmupCosineSchedule: warmupSteps must be an integer >= 0, got ${warmupSteps}`);
    }
    if (!Number.isInteger(totalSteps) || totalSteps < 0) {
      throw new RangeError(`WarmupCosineSchedule: totalSteps must be an integer >= 0, got ${totalSteps}`);
    }
    this.config = { ...config };
  }

  /** The official formula at its internal counter value `counter` (after increment). */
  valueAtCounter(counter: number): number {
    const { warmupSteps, startLr, refLr, finalLr, totalSteps } = this.config;
    const tMax = totalSteps - warmupSteps; // official self.T_max
    if (counter < warmupSteps) {
      const progress = counter / Math.max(1, warmupSteps);
      return startLr + progress * (refLr - startLr);
    }
    const progress = (counter - warmupSteps) / Math.max(1, tMax);
    return Math.max(finalLr, finalLr + (refLr - finalLr) * 0.5 * (1 + Math.cos(Math.PI * progress)));
  }

  /** Learning rate used at 0-based optimiser step `step`. */
  lrAt(step: number): number {
    checkStep(step);
    return this.valueAtCounter(step + 1);
  }
}

export interface CosineWDConfig {
  refWd: number; // weight decay at counter 0 (I-JEPA 0.04)
  finalWd: number; // weight decay at the end (I-JEPA 0.4)
  totalSteps: number; // T: total iterations, > 0 (official divides by it unguarded)
}

/** Cosine refWd -> finalWd over totalSteps, official clipping (max if decreasing, min if increasing). */
export class CosineWDSchedule {
  readonly config: Readonly<CosineWDConfig>;

  constructor(config: CosineWDConfig) {
    if (!Number.isInteger(config.totalSteps) || config.totalSteps < 1) {
      // The official code would raise ZeroDivisionError for T_max = 0.
      throw new RangeError(`CosineWDSchedule: totalSteps must be an integer >= 1, got ${config.totalSteps}`);
    }
    this.config = { ...config };
  }

  valueAtCounter(counter: number): number {
    const { refWd, finalWd, totalSteps } = this.config;
    const progress = counter / totalSteps;
    const wd = finalWd + (refWd - finalWd) * 0.5 * (1 + Math.cos(Math.PI * progress));
    return finalWd <= refWd ? Math.max(finalWd, wd) : Math.min(finalWd, wd);
  }

  /** Weight decay used at 0-based optimiser step `step`. */
  wdAt(step: number): number {
    checkStep(step);
    return this.valueAtCounter(step + 1);
  }
}

/**
 * EMA momentum of the target encoder at 0-based iteration `step`, official linear schedule
 * `start + step * (end - start) / (total * ipeScale)`, where total = ipe * epochs. The official
 * generator has int(total * ipeScale) + 1 values (StopIteration afterwards); a step past that range
 * throws a RangeError here. With ipeScale 1 the last iteration uses start + (T-1)(end-start)/T, not end.
 */
export function momentumAt(step: number, total: number, start = 0.996, end = 1.0, ipeScale = 1.0): number {
  checkStep(step);
  if (!(total > 0) || !(ipeScale > 0)) {
    throw new RangeError(`momentumAt: total and ipeScale must be > 0, got total=${total}, ipeScale=${ipeScale}`);
  }
  const denom = total * ipeScale;
  const count = Math.trunc(denom) + 1;
  if (step >= count) {
    throw new RangeError(`momentumAt: step ${step} is past the official schedule (${count} values for total*ipeScale=${denom})`);
  }
  return start + (step * (end - start)) / denom;
}

/**
 * The EMA start momentum chosen from the run length ('auto'): 1 - 40 / totalSteps, within [0.99, 0.996].
 * With the linear ramp to 1, the share of the random initial weights left in the target encoder is
 * about exp(-(1 - m0) T / 2): the official 0.996 leaves 13.5 % after 1,000 steps and 49 % at step 200,
 * so at small budgets the evaluated target is mostly its init (docs/method.md). 1 - 40/T leaves
 * exp(-20) at the end and ~2 % at a tenth of the run; runs of 10,000+ steps keep the official 0.996.
 */
export function autoEmaStart(totalSteps: number): number {
  if (!(totalSteps > 0)) throw new RangeError(`autoEmaStart: totalSteps must be > 0, got ${totalSteps}`);
  return Math.min(0.996, Math.max(0.99, 1 - 40 / totalSteps));
}

/** A number of steps, or a share of the run's steps written as a percentage ('25%', '12.5%'). */
export type StepCount = number | `${number}%`;
export const PERCENT = /^\d+(\.\d+)?%$/;

/** Steps of a StepCount in a run of totalSteps: a percentage rounds to the nearest step. */
export function stepsOf(v: StepCount, totalSteps: number): number {
  if (typeof v === 'number') return v;
  if (!PERCENT.test(v)) throw new RangeError(`expected a step count or a percentage such as '25%', got '${String(v)}'`);
  if (!Number.isInteger(totalSteps) || totalSteps < 0) throw new RangeError(`totalSteps must be an integer >= 0, got ${totalSteps}`);
  return Math.round((parseFloat(v) / 100) * totalSteps);
}

/**
 * The VICReg decay window of a C-JEPA config in steps: `start` and `steps` resolved against the run's
 * length (a share such as '25%' needs it; step counts do not).
 */
export function decayWindow(c: { betaDecayStart: StepCount; betaDecaySteps: StepCount }, totalSteps?: number): { start: number; steps: number } {
  const { betaDecayStart: s0, betaDecaySteps: n } = c;
  if (totalSteps === undefined && (typeof n === 'string' || typeof s0 === 'string')) {
    throw new Error(`cjepa.betaDecaySteps/betaDecayStart given as a share of the run ('${n}', '${s0}'): the run's total steps are needed`);
  }
  return { start: stepsOf(s0, totalSteps ?? 0), steps: stepsOf(n, totalSteps ?? 0) };
}

/**
 * C-JEPA's VICReg weight at 0-based iteration `step`: `beta` throughout when decaySteps is 0, else
 * `beta` until step `start`, a cosine from beta to 0 over the next decaySteps iterations, and 0
 * afterwards (pure I-JEPA). The regulariser's early effect (rank where JEPA's early features have none)
 * without its late cost (docs/results/cifar10-corr: a term that never lets go outweighs the JEPA loss).
 */
export function betaVicregAt(step: number, beta: number, decaySteps: number, start = 0): number {
  checkStep(step);
  if (!Number.isInteger(start) || start < 0) throw new RangeError(`decay start must be an integer >= 0, got ${start}`);
  if (decaySteps === 0 || step < start) return beta;
  if (step >= start + decaySteps) return 0;
  return beta * 0.5 * (1 + Math.cos((Math.PI * (step - start)) / decaySteps));
}

function checkStep(step: number): void {
  if (!Number.isInteger(step) || step < 0) throw new RangeError(`step must be an integer >= 0, got ${step}`);
}
