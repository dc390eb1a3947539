// `cjepa bench --gemm-log`: where a step's fp32 Linear GEMMs spend their time, by shape. The addon writes one
// stderr line per call of its split fp32 GEMM (native/fused.cc `Gemm32`) while the log is on:
//   cj::gemm32 R K C <a layout><b layout> <bias 0|1> <wall microseconds>
// for a (R, K) @ b (K, C), a layout 'N' (row-major) or 'T' (a transposed view). Forward Linears are
// `N T 1` (x @ W^T + b), grad x `N N 0` (g @ W), grad W `T N 0` (g^T @ x).

export interface GemmShape {
  R: number; K: number; C: number;
  /** operand layouts, e.g. 'NT' */
  layout: string;
  bias: boolean;
  /** calls and wall ms per step, GFLOP/s over those calls */
  callsPerStep: number;
  msPerStep: number;
  gflops: number;
}

export interface GemmLog {
  /** every logged call's wall time per step (ms) and GEMM FLOPs per step */
  msPerStep: number;
  gflopPerStep: number;
  shapes: GemmShape[];
}

const LINE = /^cj::gemm32 (\d+) (\d+) (\d+) ([NT]{2}) ([01]) ([0-9.]+)$/;

/** Sums the log lines of `steps` steps by shape (other lines are ignored), largest time first. */
export function parseGemmLog(text: string, steps: number): GemmLog {
  if (!(Number.isInteger(steps) && steps > 0)) throw new Error(`gemm log: steps must be a positive integer, got ${steps}`);
  const by = new Map<string, { R: number; K: number; C: number; layout: string; bias: boolean; calls: number; us: number }>();
  for (const line of text.split('\n')) {
    const m = LINE.exec(line.trim());
    if (!m) continue;
    const key = m.slice(1, 6).join(' ');
    const s = by.get(key) ?? { R: +m[1]!, K: +m[2]!, C: +m[3]!, layout: m[4]!, bias: m[5] === '1', calls: 0, us: 0 };
    s.calls++;
    s.us += Number(m[6]);
    by.set(key, s);
  }
  const shapes = [...by.values()].map((s) => ({
    R: s.R, K: s.K, C: s.C, layout: s.layout, bias: s.bias, callsPerStep: s.calls / steps, msPerStep: s.us / 1000 / steps,
    gflops: s.us > 0 ? (2 * s.R * s.K * s.C * s.calls) / (s.us * 1e3) : 0,
  })).sort((a, b) => b.msPerStep - a.msPerStep);
  const msPerStep = shapes.reduce((t, s) => t + s.msPerStep, 0);
  const gflopPerStep = shapes.reduce((t, s) => t + (2 * s.R * s.K * s.C * s.callsPerStep) / 1e9, 0);
  return { msPerStep, gflopPerStep, shapes };
}

/** The table `cjepa bench --gemm-log` prints under a row. */
export function formatGemmLog(title: string, log: GemmLog, stepMs: number, top = 20): string {
  const out = [title];
  if (log.shapes.length === 0) {
    out.push('  no fp32 Linear GEMMs logged (bf16, at::linear in this build, or CJEPA_SPLIT_GEMM=0)');
    return out.join('\n');
  }
  const rate = log.msPerStep > 0 ? log.gflopPerStep / (log.msPerStep / 1000) : 0;
  out.push(`  all: ${log.msPerStep.toFixed(1)} ms per step (${((100 * log.msPerStep) / stepMs).toFixed(0)} % of the timed step's ${stepMs.toFixed(0)} ms), ` +
    `${log.gflopPerStep.toFixed(1)} GFLOP, ${rate.toFixed(0)} GFLOP/s`);
  out.push('  R x K x C (a @ b)      layout  bias  calls/step  ms/step  GFLOP/s');
  for (const s of log.shapes.slice(0, top)) {
    out.push(`  ${`${s.R} x ${s.K} x ${s.C}`.padEnd(22)} ${s.layout.padEnd(6)}  ${(s.bias ? 'yes' : 'no').padEnd(4)}  ${s.callsPerStep.toFixed(1).padStart(10)}  ` +
      `${s.msPerStep.toFixed(1).padStart(7)}  ${s.gflops.toFixed(0).padStart(7)}`);
  }
  if (log.shapes.length > top) out.push(`  (${log.shapes.length - top} more shapes)`);
  return out.join('\n');
}
