// `cjepa bench`: one full pretraining step (masks, target forward, context encoder + predictor forward
// and backward, losses, AdamW, EMA) timed for cjepa and for the same step in PyTorch, on the same
// weights, images and masks, each side in a child process of its own (so each peak RSS is its own),
// sides alternated over rounds after warm-up. Reports medians, images/s, GEMM GFLOP/s from an analytic
// count (src/bench/rows.ts), the fraction of this machine's fp32 FMA peak (measured in the same run by
// an FMA microkernel, native/fused.cc) and the ratios.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '../tensor/index.js';
import { native, blasCoreChosenBy } from '../tensor/native.js';
import { buildNetworks } from '../method/trainer.js';
import { MultiBlockMaskSampler } from '../method/masks.js';
import { maskTensors } from '../method/step.js';
import { saveTensors } from '../io/tensors.js';
import { VIT_SIZES } from '../nn/vit.js';
import { BENCH_ROWS, rowConfig, rowFlops, type BenchRow, type MaskShape } from './rows.js';
import type { ChildSpec } from './ours_child.js';
import { opSelfTimes, formatProfiles, type OpTime } from './profile.js';
import { parseGemmLog, formatGemmLog, type GemmLog } from './gemm_log.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const TORCH_SCRIPT = join(HERE, '..', '..', '..', 'scripts', 'bench_torch.py');
const PYTHON = process.env.CJEPA_PYTHON ?? '/usr/bin/python3';

export interface BenchOptions {
  rows: string[];
  steps: number;
  warmup: number;
  /** alternations ours / PyTorch per row and precision */
  rounds: number;
  threads: number;
  precisions: ('fp32' | 'bf16')[];
  /** false: ours only */
  pytorch: boolean;
  /** directory: after the timed rounds, one more profiled run per side (op profiles, not timed) */
  profile?: string;
  /** after the timed rounds, one more run of ours logging each fp32 Linear GEMM's shape and wall time */
  gemmLog?: boolean;
  log?: (line: string) => void;
}

export interface SideResult { ms: number; imgPerS: number; gflops: number; peakFraction: number; rssMiB: number; times: number[]; cpuMs: number }
export interface RowResult {
  id: string; title: string; kind: string; batch: number; flops: number;
  fp32?: { ours: SideResult; pytorch?: SideResult; ratio?: number; cpuRatio?: number };
  bf16?: { ours: SideResult; pytorch?: SideResult; ratio?: number; cpuRatio?: number; ratioVsTorchFp32?: number; cpuRatioVsTorchFp32?: number };
  /** with BenchOptions.profile: self time per op of each side, per precision */
  profiles?: Partial<Record<'fp32' | 'bf16', { ours: OpTime[]; pytorch: OpTime[] | null; traces: string[] }>>;
  /** with BenchOptions.gemmLog: our fp32 Linear GEMMs by shape, and the median step of that run (ms) */
  gemmLog?: { log: GemmLog; stepMs: number };
}
export interface BenchReport {
  machine: string; threads: number; peakGflops: number; peakMethod: string; sgemmGflops: number;
  /** the fp32 GEMM library both sides run, with OpenBLAS's kernel family and how it was chosen */
  blas: string;
  torch: string | null; torchNote?: string; rows: RowResult[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Whether /usr/bin/python3 can import torch; the reason when not. */
function torchAvailable(): { ok: boolean; version?: string; why?: string } {
  if (!existsSync(TORCH_SCRIPT)) return { ok: false, why: `${TORCH_SCRIPT} is missing` };
  const r = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { ok: false, why: `${PYTHON} cannot import torch (apt-get install python3-torch to compare against PyTorch)` };
  return { ok: true, version: r.stdout.trim() };
}

/** fp32 sgemm rate of libtorch (2048^3, best of 3), for context next to the FMA peak. */
function sgemmGflops(): number {
  const n = 2048;
  const a = T.randn([n, n]), b = T.randn([n, n]);
  let best = Infinity;
  for (let i = 0; i < 4; i++) {
    const t0 = performance.now();
    a.matmul(b).dispose();
    if (i > 0) best = Math.min(best, performance.now() - t0);
  }
  a.dispose(); b.dispose();
  return (2 * n ** 3) / (best / 1000) / 1e9;
}

/** Writes the row's weights, images and masks; returns the mask shape for the FLOP count. */
export function writeInputs(row: BenchRow, path: string): MaskShape {
  const cfg = rowConfig(row);
  const nets = buildNetworks(cfg, 3);
  const g = row.imgSize / row.patch;
  const masks = new MultiBlockMaskSampler({ gridSize: [g, g], allowOverlap: false, ...cfg.masks }, 0).sample(row.batch);
  const mk = maskTensors(masks);
  const images = T.randn([row.batch, 3, row.imgSize, row.imgSize], { generator: new T.Generator(0) });
  const inp: Record<string, T.Tensor> = { ...nets.encoder.stateDict('encoder.'), images, 'masks_enc.0': mk.ctx[0]! };
  if (row.kind === 'step') Object.assign(inp, nets.predictor!.stateDict('predictor.'));
  mk.tgt.forEach((t, i) => { inp[`masks_pred.${i}`] = t; });
  saveTensors(path, inp);
  for (const m of [nets.encoder, nets.targetEncoder, nets.predictor, nets.expander]) m?.dispose();
  [images, ...mk.ctx, ...mk.tgt].forEach((t) => t.dispose());
  return { contextLen: masks.contextLength, targetLen: masks.targetLength, nTargets: masks.targets.length };
}

interface ChildOut { times: number[]; cpuMs: number; hwmKiB: number; stderr: string }

/** One more run of each side with the op profiler on (its times are not used: the profiler costs time). */
function profileRow(id: string, row: BenchRow, input: string, precision: 'fp32' | 'bf16', withTorch: boolean, o: BenchOptions): { ours: OpTime[]; pytorch: OpTime[] | null; traces: string[] } {
  mkdirSync(o.profile!, { recursive: true });
  const ours = join(o.profile!, `${id}-${precision}-cjepa.trace.json`), theirs = join(o.profile!, `${id}-${precision}-pytorch.trace.json`);
  runOurs({ row: id, precision, warmup: o.warmup, steps: o.steps, threads: o.threads, input, profile: ours });
  if (withTorch) runTorch(row, input, precision === 'bf16', o, theirs);
  return { ours: opSelfTimes(ours, o.steps), pytorch: withTorch ? opSelfTimes(theirs, o.steps) : null, traces: withTorch ? [ours, theirs] : [ours] };
}

function runOurs(spec: ChildSpec): ChildOut {
  const r = spawnSync(process.execPath, [join(HERE, 'ours_child.js'), JSON.stringify(spec)], { encoding: 'utf8', env: process.env, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`cjepa side of bench row '${spec.row}' failed: ${r.stderr || r.error}`);
  return { ...(JSON.parse(r.stdout.trim().split('\n').pop()!) as Omit<ChildOut, 'stderr'>), stderr: r.stderr };
}

function runTorch(row: BenchRow, input: string, bf16: boolean, o: BenchOptions, profile?: string): ChildOut {
  const cfg = rowConfig(row);
  const { embedDim, numHeads } = VIT_SIZES[row.model]!;
  const spec = {
    kind: row.kind, threads: o.threads, warmup: o.warmup, steps: o.steps, bf16, beta_vicreg: cfg.cjepa.betaVicreg, profile: profile ?? null,
    encoder: { img_size: row.imgSize, patch_size: row.patch, embed_dim: embedDim, depth: row.depth, num_heads: numHeads },
    predictor: { num_patches: (row.imgSize / row.patch) ** 2, embed_dim: embedDim, predictor_embed_dim: row.predictor.embedDim, depth: row.predictor.depth, num_heads: row.predictor.numHeads },
  };
  const r = spawnSync(PYTHON, [TORCH_SCRIPT, input, JSON.stringify(spec)], { encoding: 'utf8', env: process.env, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`PyTorch side of bench row '${row.id}' failed: ${r.stderr || r.error}`);
  return { ...(JSON.parse(r.stdout.trim().split('\n').pop()!) as Omit<ChildOut, 'stderr'>), stderr: r.stderr };
}

function side(outs: ChildOut[], row: BenchRow, flops: number, peak: number): SideResult {
  const times = outs.flatMap((o) => o.times);
  const s = median(times);
  const gflops = flops / s / 1e9;
  return { ms: s * 1000, imgPerS: row.batch / s, gflops, peakFraction: gflops / peak, rssMiB: Math.max(...outs.map((o) => o.hwmKiB)) / 1024, times, cpuMs: median(outs.map((o) => o.cpuMs)) };
}

export function runBench(o: BenchOptions): BenchReport {
  const log = o.log ?? (() => {});
  for (const id of o.rows) if (!BENCH_ROWS[id]) throw new Error(`unknown bench row '${id}' (known: ${Object.keys(BENCH_ROWS).join(', ')})`);
  T.setNumThreads(o.threads);
  const torch = o.pytorch ? torchAvailable() : { ok: false, why: 'PyTorch comparison off (--no-pytorch)' };
  if (!torch.ok) log(`PyTorch side skipped: ${torch.why}; ours-only rows`);
  const peak = native.fmaPeak(0.5) as { gflops: number; threads: number; isa: string };
  const sgemm = sgemmGflops();
  log(`fp32 FMA peak ${peak.gflops.toFixed(0)} GFLOP/s (${peak.isa} FMA microkernel, ${peak.threads} threads); libtorch sgemm 2048^3 ${sgemm.toFixed(0)} GFLOP/s`);
  if (o.gemmLog && !o.precisions.includes('fp32')) log('--gemm-log: nothing to log in bf16 (it times the fp32 Linear GEMMs); add --precision fp32 or both');
  const dir = mkdtempSync(join(tmpdir(), 'cjepa-bench-'));
  const rows: RowResult[] = [];
  try {
    for (const id of o.rows) {
      const row = BENCH_ROWS[id]!;
      const input = join(dir, `${id}.safetensors`);
      const shape = writeInputs(row, input);
      const flops = rowFlops(row, shape);
      const res: RowResult = { id, title: row.title, kind: row.kind, batch: row.batch, flops };
      for (const precision of o.precisions) {
        const ours: ChildOut[] = [], theirs: ChildOut[] = [];
        for (let r = 0; r < o.rounds; r++) {  // alternated, so machine noise hits both sides alike
          ours.push(runOurs({ row: id, precision, warmup: o.warmup, steps: o.steps, threads: o.threads, input }));
          if (torch.ok) theirs.push(runTorch(row, input, precision === 'bf16', o));
        }
        const so = side(ours, row, flops, peak.gflops);
        const st = torch.ok ? side(theirs, row, flops, peak.gflops) : undefined;
        res[precision] = { ours: so, pytorch: st, ratio: st ? so.ms / st.ms : undefined, cpuRatio: st ? so.cpuMs / st.cpuMs : undefined };
        log(`${id} ${precision}: ours ${so.ms.toFixed(0)} ms${st ? `, PyTorch ${st.ms.toFixed(0)} ms, ratio ${(so.ms / st.ms).toFixed(2)}` : ''}`);
        if (o.profile) res.profiles = { ...res.profiles, [precision]: profileRow(id, row, input, precision, torch.ok, o) };
        if (o.gemmLog && precision === 'fp32') {
          const run = runOurs({ row: id, precision, warmup: o.warmup, steps: o.steps, threads: o.threads, input, gemmLog: true });
          res.gemmLog = { log: parseGemmLog(run.stderr, o.steps), stepMs: 1000 * median(run.times) };
        }
      }
      const f = res.fp32?.pytorch, b = res.bf16;
      if (b && f) { b.ratioVsTorchFp32 = b.ours.ms / f.ms; b.cpuRatioVsTorchFp32 = b.ours.cpuMs / f.cpuMs; }
      rows.push(res);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    machine: `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} logical CPUs${T.cpuHasBf16() ? `, bf16 (${T.cpuBf16Units().join(', ')})` : ''}`,
    threads: o.threads, peakGflops: peak.gflops, peakMethod: `${peak.isa} FMA microkernel (12 independent chains per thread, best of 3)`,
    sgemmGflops: sgemm, blas: blasDescription(), torch: torch.ok ? torch.version! : null, torchNote: torch.ok ? undefined : torch.why, rows,
  };
}

/**
 * Which fp32 GEMM both sides run: libtorch's own BLAS, and for OpenBLAS its kernel family. OpenBLAS picks the
 * family from the CPU unless OPENBLAS_CORETYPE names one (some hosts set it to an older family: on an AVX-512
 * CPU that halves sgemm), and the PyTorch side inherits this process's environment.
 */
function blasDescription(): string {
  const core: string | null = native.blasCore ?? null;
  if (!core) return 'libtorch\'s BLAS (not OpenBLAS, or not linked by the addon)';
  const env = process.env.OPENBLAS_CORETYPE;
  const how = blasCoreChosenBy === 'cjepa' ? `OPENBLAS_CORETYPE=${env}, chosen by cjepa from the CPU flags`
    : blasCoreChosenBy === 'user' ? `OPENBLAS_CORETYPE=${env}, the environment's` : 'detected by OpenBLAS; OPENBLAS_CORETYPE unset';
  return `OpenBLAS, ${core} kernels (${how})` +
    `; cjepa's fp32 Linear ${native.linearSplit ? `splits its GEMMs over its threads on ${native.linearGemm}'s sgemm (CJEPA_FP32_GEMM=${process.env.CJEPA_FP32_GEMM}; CJEPA_SPLIT_GEMM=0: off)` : 'is at::linear'}`;
}

const f0 = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(0));
const f2 = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(2));

/** The human-readable report. */
export function formatBench(r: BenchReport): string {
  const out: string[] = [];
  out.push(`machine: ${r.machine}; threads ${r.threads} both sides (torch.set_num_threads / at::set_num_threads), env GOMP_SPINCOUNT=${process.env.GOMP_SPINCOUNT} OPENBLAS_THREAD_TIMEOUT=${process.env.OPENBLAS_THREAD_TIMEOUT} both sides`);
  out.push(`fp32 peak: ${r.peakGflops.toFixed(0)} GFLOP/s (${r.peakMethod}); libtorch sgemm 2048^3: ${r.sgemmGflops.toFixed(0)} GFLOP/s`);
  out.push(`fp32 GEMMs (both sides): ${r.blas}`);
  out.push(`PyTorch: ${r.torch ?? `not compared (${r.torchNote})`}`);
  out.push('CPU ms/step: process CPU time (all threads, spin-waits included) per timed step; less sensitive than wall time to other load on a shared machine');
  out.push('FLOPs: GEMM FLOPs only (qkv, proj, MLP, attention matmuls, patch conv); step = 3x forward of encoder + predictor, 1x target forward');
  out.push('');
  const head = ['row', 'precision', 'side', 'ms/step', 'img/s', 'GFLOP/s', '% fp32 peak', 'peak RSS MiB', 'CPU ms/step', 'ratio (wall; CPU)'];
  const lines: string[][] = [head];
  for (const row of r.rows) {
    for (const p of ['fp32', 'bf16'] as const) {
      const x = row[p];
      if (!x) continue;
      const rowOf = (name: string, s: SideResult, ratio?: string) => [row.id, p, name, f0(s.ms), f0(s.imgPerS), f0(s.gflops), (100 * s.peakFraction).toFixed(1), f0(s.rssMiB), f0(s.cpuMs), ratio ?? ''];
      lines.push(rowOf('cjepa', x.ours, x.ratio === undefined ? '' : `${f2(x.ratio)}; ${f2(x.cpuRatio)} vs PyTorch ${p}`));
      if (x.pytorch) lines.push(rowOf(`PyTorch${p === 'bf16' ? ' autocast' : ''}`, x.pytorch));
      if (p === 'bf16' && row.bf16?.ratioVsTorchFp32 !== undefined) lines.push([row.id, p, '', '', '', '', '', '', '', `${f2(row.bf16.ratioVsTorchFp32)}; ${f2(row.bf16.cpuRatioVsTorchFp32)} vs PyTorch fp32`]);
    }
  }
  const w = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  for (const l of lines) out.push(l.map((c, i) => (i < 3 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ').trimEnd());
  out.push('');
  for (const row of r.rows) out.push(`${row.id}: ${row.title}; ${(row.flops / 1e9).toFixed(1)} GFLOP per ${row.kind === 'step' ? 'step' : 'forward'}`);
  for (const row of r.rows) {
    if (row.gemmLog) out.push('', formatGemmLog(`${row.id} fp32: cjepa's fp32 Linear GEMMs by shape (a separate run with the log on; wall time per call)`, row.gemmLog.log, row.gemmLog.stepMs));
  }
  for (const row of r.rows) {
    for (const [p, prof] of Object.entries(row.profiles ?? {})) {
      out.push('', formatProfiles(`${row.id} ${p}: libtorch op profiler, self time per ${row.kind === 'step' ? 'step' : 'forward'} (a separate profiled run; traces: ${prof.traces.join(', ')})`, prof.ours, prof.pytorch));
    }
  }
  return out.join('\n');
}

/** The --json object: the preset row (or the first row) at top level, every row under `rows`. */
export function benchJson(r: BenchReport): Record<string, unknown> {
  const main = r.rows.find((x) => x.id === 'preset') ?? r.rows[0];
  return {
    row: main?.id ?? null,
    ours_ms: main?.fp32?.ours.ms ?? null, pytorch_ms: main?.fp32?.pytorch?.ms ?? null, ratio: main?.fp32?.ratio ?? null,
    peak_fraction: main?.fp32?.ours.peakFraction ?? null,
    ours_bf16_ms: main?.bf16?.ours.ms ?? null, pytorch_bf16_ms: main?.bf16?.pytorch?.ms ?? null,
    bf16_ratio: main?.bf16?.ratioVsTorchFp32 ?? null, bf16_vs_pytorch_bf16: main?.bf16?.ratio ?? null,
    cpu_ratio: main?.fp32?.cpuRatio ?? null, bf16_cpu_ratio: main?.bf16?.cpuRatioVsTorchFp32 ?? null, bf16_vs_pytorch_bf16_cpu: main?.bf16?.cpuRatio ?? null,
    peak_gflops: r.peakGflops, peak_method: r.peakMethod, sgemm_gflops: r.sgemmGflops, blas: r.blas, threads: r.threads, machine: r.machine, torch: r.torch,
    rows: r.rows.map((x) => ({
      id: x.id, title: x.title, batch: x.batch, gflop: x.flops / 1e9,
      ...Object.fromEntries((['fp32', 'bf16'] as const).filter((p) => x[p]).map((p) => [p, {
        ours_ms: x[p]!.ours.ms, pytorch_ms: x[p]!.pytorch?.ms ?? null, ratio: x[p]!.ratio ?? null,
        ours_img_s: x[p]!.ours.imgPerS, pytorch_img_s: x[p]!.pytorch?.imgPerS ?? null,
        ours_gflops: x[p]!.ours.gflops, pytorch_gflops: x[p]!.pytorch?.gflops ?? null,
        ours_peak_fraction: x[p]!.ours.peakFraction, pytorch_peak_fraction: x[p]!.pytorch?.peakFraction ?? null,
        ours_rss_mib: x[p]!.ours.rssMiB, pytorch_rss_mib: x[p]!.pytorch?.rssMiB ?? null,
        ours_cpu_ms: x[p]!.ours.cpuMs, pytorch_cpu_ms: x[p]!.pytorch?.cpuMs ?? null, cpu_ratio: x[p]!.cpuRatio ?? null,
      }])),
      bf16_ratio_vs_pytorch_fp32: x.bf16?.ratioVsTorchFp32 ?? null,
      ...(x.gemmLog ? { gemm_log: { step_ms: x.gemmLog.stepMs, gemm_ms: x.gemmLog.log.msPerStep, gemm_gflop: x.gemmLog.log.gflopPerStep, shapes: x.gemmLog.log.shapes } } : {}),
    })),
  };
}

