// Progress on stderr. `cjepa eval` / `cjepa embed` (StageProgress): a cli-progress bar per stage on a terminal (images
// or steps done / total, rate, ETA), and a plain line every few seconds plus one at the end of a stage
// otherwise (logs, CI). `cjepa pretrain` (PretrainProgress): one step line fitted to the terminal.
// Messages printed through `message` never garble a bar.
import cliProgress from 'cli-progress';
import type { Progress } from '../eval/index.js';
import type { StepLog, MonitorLog, RunStart } from '../method/trainer.js';
import { healthyStd } from '../method/monitors.js';

export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(sec).padStart(2, '0')}s`;
}

export interface StageProgressOptions {
  /** Draw bars (default: stderr is a terminal). */
  tty?: boolean;
  /** Plain mode: seconds between lines of one stage (default 5). */
  every?: number;
  write?: (line: string) => void;
}

export class StageProgress {
  private readonly tty: boolean;
  private readonly every: number;
  private readonly write: (line: string) => void;
  private bar: cliProgress.SingleBar | null = null;
  private stage = '';
  private t0 = 0;
  private lastLine = 0;

  constructor(o: StageProgressOptions = {}) {
    this.tty = o.tty ?? process.stderr.isTTY === true;
    this.every = (o.every ?? 5) * 1000;
    this.write = o.write ?? ((l) => process.stderr.write(`${l}\n`));
  }

  /** Rate and ETA of the current stage. */
  private stats(p: Progress): { rate: string; eta: string } {
    const secs = (Date.now() - this.t0) / 1000;
    const rate = secs > 0 ? p.done / secs : NaN;
    // an iteration count is an upper bound (maxIter), so no ETA
    const eta = p.unit === 'iter' || !(rate > 0) ? '' : fmtTime((p.total - p.done) / rate);
    return { rate: Number.isFinite(rate) ? `${rate >= 100 ? rate.toFixed(0) : rate.toFixed(1)} ${p.unit}/s` : '', eta };
  }

  update(p: Progress): void {
    if (p.stage !== this.stage) {
      this.stopBar();
      this.stage = p.stage;
      this.t0 = Date.now();
      this.lastLine = this.t0;
    }
    const { rate, eta } = this.stats(p);
    const info = p.info ?? '';
    const finished = p.unit !== 'iter' && p.done >= p.total;
    if (this.tty) {
      if (!this.bar) {
        const format = p.unit === 'iter'
          ? '{stage}: iteration {value} {info}'
          : '{stage} |{bar}| {value}/{total} {unit} | {rate} | ETA {eta} {info}';
        this.bar = new cliProgress.SingleBar({ format, hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic);
        this.bar.start(p.total, p.done, { stage: p.stage, unit: p.unit, rate, eta, info });
      }
      this.bar.update(p.done, { rate, eta, info });
      if (finished) this.stopBar();
    } else if (finished || Date.now() - this.lastLine >= this.every) {
      this.lastLine = Date.now();
      const of = p.unit === 'iter' ? `iteration ${p.done}` : `${p.done}/${p.total} ${p.unit}`;
      this.write(`${p.stage}: ${of}${rate ? `, ${rate}` : ''}${eta && !finished ? `, ETA ${eta}` : ''}${info ? `, ${info}` : ''}`);
    }
  }

  /** Prints a message line (ending a bar in progress; the next update starts a new one). */
  message(m: string): void {
    this.stopBar();
    this.write(m);
  }

  private stopBar(): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = null;
    }
  }

  stop(): void {
    this.stopBar();
  }
}

// ------------------------------------------------------------------ pretraining progress

/** A measured number for people: 4 significant digits at most, no float noise (0.08681800000067597 -> 0.08682). */
export function fmtNum(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(2);
  if (a >= 1000) return x.toFixed(0);
  return String(+x.toPrecision(4));
}

/**
 * Seconds left, from the steps done in this process (a resumed run starts at `startStep`, so its
 * rate is not diluted by the steps of earlier processes); NaN before the first step.
 */
export function etaSeconds(step: number, startStep: number, total: number, elapsedS: number): number {
  const done = step - startStep;
  return done > 0 ? ((total - step) * elapsedS) / done : NaN;
}

/** The parts of a step line, most important first in `fitLine`'s dropping order (see stepLine). */
interface Part { text: string; drop: number }

/**
 * Joins parts with ' | ' into at most `width` characters: parts with the highest `drop` rank go
 * first, and what still does not fit is cut (ending in '…').
 */
export function fitLine(parts: Part[], width: number): string {
  let kept = parts.filter((p) => p.text);
  const join = () => kept.map((p) => p.text).join(' | ');
  while (join().length > width && kept.some((p) => p.drop > 0)) {
    const worst = Math.max(...kept.map((p) => p.drop));
    const i = kept.map((p) => p.drop).lastIndexOf(worst);
    kept = kept.filter((_, k) => k !== i);
  }
  const s = join();
  return s.length <= width ? s : `${s.slice(0, Math.max(0, width - 1))}…`;
}

/**
 * One progress line of a training step, at most `width` characters: `step`, a bar (terminal only,
 * when there is room), the loss, its terms, images/s, data wait, ETA. On a narrow terminal the data
 * wait goes first, then the terms (the last one first), the epoch, images/s.
 */
export function stepLine(l: StepLog, total: number, etaS: number, width: number, bar: boolean): string {
  const terms = Object.entries(l.terms).map(([k, v]) => `${k} ${fmtNum(v)}`);
  const parts: Part[] = [
    { text: `step ${l.step}/${total}`, drop: 0 },
    { text: `epoch ${l.epoch}`, drop: 4 },
    { text: `loss ${fmtNum(l.loss)}`, drop: 0 },
    ...terms.map((t, i) => ({ text: t, drop: 10 + i })), // the last term first
    { text: `${fmtNum(Math.round(l.imgs_per_s))} img/s`, drop: 3 },
    { text: `wait ${fmtNum(l.data_wait_ms)} ms`, drop: 100 },
    { text: `ETA ${fmtTime(etaS)}`, drop: 1 },
  ];
  if (!bar) return fitLine(parts, width);
  const BAR = 20; // a terminal line keeps room for a 20-cell bar when the width allows
  const line = fitLine(parts, width >= 60 ? width - BAR - 1 : width);
  const room = width - line.length - 1;
  if (room < 10) return line;
  const n = Math.min(40, room), filled = Math.round((n * Math.min(l.step, total)) / Math.max(1, total));
  const head = `step ${l.step}/${total}`;
  return `${head} ${'█'.repeat(filled)}${'░'.repeat(n - filled)}${line.slice(head.length)}`;
}

/** A collapse-monitor line. */
export function monitorLine(l: MonitorLog): string {
  const online = l.online ? `; online encoder: RankMe ${l.online.rankme_centred.toFixed(1)}, std ${l.online.std.toFixed(4)}` : '';
  const tokens = l.rankme_tokens !== undefined ? `, per token ${l.rankme_tokens.toFixed(1)}` : '';
  return `[monitor] step ${l.step}: ${l.verdict}: centred RankMe ${l.rankme_centred.toFixed(1)} of ${l.dim} (uncentred ${l.rankme.toFixed(1)}${tokens}), ` +
    `normalised std ${l.std.toFixed(4)} (healthy ~${healthyStd(l.dim).toFixed(4)})${online}`;
}

export interface PretrainProgressOptions {
  /** The stream of the bar and lines (default process.stderr); a bar is drawn when it is a terminal. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Plain mode: seconds between step lines (default 5; the last step always prints). */
  every?: number;
}

/**
 * Progress of `cjepa pretrain` on stderr: a bar fitted to the terminal width, or plain lines every few
 * seconds (logs, CI). Messages and monitor lines never garble the bar: it is stopped first.
 */
export class PretrainProgress {
  private readonly stream: NonNullable<PretrainProgressOptions['stream']>;
  private readonly tty: boolean;
  private readonly every: number;
  private bar: cliProgress.SingleBar | null = null;
  private lastPrint = -Infinity;
  private startStep = 0;
  private last: { l: StepLog; total: number; eta: number } | null = null;

  constructor(o: PretrainProgressOptions = {}) {
    this.stream = o.stream ?? process.stderr;
    this.tty = this.stream.isTTY === true;
    this.every = (o.every ?? 5) * 1000;
  }

  private width(): number {
    return Math.max(20, (this.stream.columns ?? 100) - 1);
  }

  /** Says how the loss is weighted and where the run starts (ETAs count from there). */
  start(s: RunStart): void {
    this.startStep = s.startStep;
    this.message(`${s.loss}; ${s.totalSteps} steps (${s.stepsPerEpoch} per epoch), warmup ${s.warmupSteps}` +
      (s.startStep > 0 ? `; continuing from step ${s.startStep}` : ''));
  }

  onLog(l: StepLog | MonitorLog, total: number): void {
    if (l.kind === 'monitor') return this.message(monitorLine(l));
    const eta = etaSeconds(l.step, this.startStep, total, l.time_s);
    if (this.tty) {
      this.last = { l, total, eta };
      if (!this.bar) {
        this.bar = new cliProgress.SingleBar({
          stream: this.stream, hideCursor: true, fps: 5,
          format: () => (this.last ? stepLine(this.last.l, this.last.total, this.last.eta, this.width(), true) : ''),
        });
        this.bar.start(total, l.step);
      }
      this.bar.update(l.step);
      if (l.step >= total) this.stopBar();
    } else if (Date.now() - this.lastPrint >= this.every || l.step >= total) {
      this.lastPrint = Date.now();
      this.write(`${stepLine(l, total, eta, 1000, false)}`);
    }
  }

  private write(line: string): void {
    this.stream.write(`${line}\n`);
  }

  private stopBar(): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = null;
    }
  }

  /** Prints a line (stopping a bar in progress; the next step starts a new one). */
  message(m: string): void {
    this.stopBar();
    this.write(m);
  }

  stop(): void {
    this.stopBar();
  }
}
