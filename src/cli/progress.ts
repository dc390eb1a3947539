// Progress on stderr for `cjepa eval` / `cjepa embed`: a cli-progress bar per stage on a terminal (images
// or steps done / total, rate, ETA), and a plain line every few seconds plus one at the end of a stage
// otherwise (logs, CI). Messages printed through `message` never garble a bar.
import cliProgress from 'cli-progress';
import type { Progress } from '../eval/index.js';

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
