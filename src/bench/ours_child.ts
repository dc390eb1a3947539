// The cjepa side of `cjepa bench`, run in a child process of its own so its peak RSS (VmHWM) is its
// own. Usage: node ours_child.js '<json spec>' — loads the shared weights, images and masks, times
// warm-up + steps, and prints one JSON line { times (s), cpuMs (process CPU ms per timed step), hwmKiB }.
import { readFileSync } from 'node:fs';
import * as T from '../tensor/index.js';
import { buildNetworks } from '../method/trainer.js';
import { jepaForward } from '../method/step.js';
import { AdamW, ijepaParamGroups } from '../method/optim.js';
import { emaUpdate } from '../method/ema.js';
import { loadTensors } from '../io/tensors.js';
import { native } from '../tensor/native.js';
import { BENCH_ROWS, rowConfig, stepLossOptions } from './rows.js';

export interface ChildSpec {
  row: string; precision: 'fp32' | 'bf16'; warmup: number; steps: number; threads: number; input: string;
  /** write libtorch's op profile of the timed steps here (Chrome trace) */
  profile?: string;
  /** log every fp32 Linear GEMM of the timed steps to stderr (src/bench/gemm_log.ts) */
  gemmLog?: boolean;
}

/** Peak resident set of this process (KiB), from /proc/self/status; 0 where that is not readable. */
export function vmHwmKiB(): number {
  try {
    return Number(/^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function main(spec: ChildSpec): { times: number[]; cpuMs: number; hwmKiB: number } {
  const row = BENCH_ROWS[spec.row]!;
  T.setNumThreads(spec.threads);
  T.setPrecision(spec.precision);
  const cfg = rowConfig(row);
  const nets = buildNetworks(cfg, 3);
  const { tensors: inp } = loadTensors(spec.input);
  const sub = (prefix: string) => Object.fromEntries(Object.entries(inp).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
  nets.encoder.loadStateDict(sub('encoder.'));
  const images = inp['images']!;
  const times: number[] = [];
  let cpu0 = process.cpuUsage();
  // CPU time of the timed steps (all threads): unlike wall time it does not grow while other processes hold the cores
  const cpuMs = () => { const c = process.cpuUsage(cpu0); return (c.user + c.system) / 1000 / spec.steps; };
  const startTimed = () => { cpu0 = process.cpuUsage(); if (spec.profile) T.profilerStart(spec.profile); if (spec.gemmLog) native.setGemmLog(true); };
  const done = () => { const cpu = cpuMs(); if (spec.profile) T.profilerStop(); native.setGemmLog(false); return { times, cpuMs: cpu, hwmKiB: vmHwmKiB() }; };
  if (row.kind === 'embed') {
    nets.encoder.eval();
    for (let i = 0; i < spec.warmup + spec.steps; i++) {
      const t0 = performance.now();
      if (i === spec.warmup) startTimed();
      T.noGrad(() => T.tidy(() => { T.autocast(() => nets.encoder.forward(images)).float(); }));
      if (i >= spec.warmup) times.push((performance.now() - t0) / 1000);
    }
    return done();
  }
  const enc = nets.encoder, tgt = nets.targetEncoder!, pred = nets.predictor!;
  pred.loadStateDict(sub('predictor.'));
  tgt.loadStateDict(enc.stateDict());
  const ctx = [inp['masks_enc.0']!];
  const tgtMasks = Object.keys(inp).filter((k) => k.startsWith('masks_pred.')).sort().map((k) => inp[k]!);
  const opt = new AdamW(ijepaParamGroups([...enc.namedParameters('encoder.'), ...pred.namedParameters('predictor.')]));
  const o = stepLossOptions(cfg);
  for (let i = 0; i < spec.warmup + spec.steps; i++) {
    if (i === spec.warmup) startTimed();
    const t0 = performance.now();
    T.tidy(() => jepaForward({ encoder: enc, targetEncoder: tgt, predictor: pred }, images, ctx, tgtMasks, o).loss.backward());
    opt.update(1e-4, 0.04);
    enc.zeroGrad(); pred.zeroGrad();
    emaUpdate(tgt.parameters(), enc.parameters(), 0.996);
    if (i >= spec.warmup) times.push((performance.now() - t0) / 1000);
  }
  return done();
}

console.log(JSON.stringify(main(JSON.parse(process.argv[2]!) as ChildSpec)));
