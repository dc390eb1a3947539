// `cjepa bench`: cjepa's training step against PyTorch's on this machine (src/bench/bench.ts).
import type { Command } from 'commander';
import { availableParallelism } from 'node:os';
import { intArg } from './args.js';
import { runBench, formatBench, benchJson } from '../bench/bench.js';
import { BENCH_ROWS, DEFAULT_ROWS } from '../bench/rows.js';
import { cpuHasBf16 } from '../tensor/index.js';

interface BenchFlags { rows: string; steps: number; warmup: number; rounds: number; threads?: number; precision: string; pytorch: boolean; json?: boolean; profile?: string; gemmLog?: boolean }

export function registerBenchCommand(program: Command): Command {
  program.command('bench')
    .description('time one pretraining step (and embedding throughput) of cjepa against the same step in PyTorch on this machine')
    .option('--rows <list>', `comma-separated rows: ${Object.keys(BENCH_ROWS).join(', ')}`, DEFAULT_ROWS.join(','))
    .option('--steps <n>', 'timed steps per side and round', intArg('--steps', 1), 6)
    .option('--warmup <n>', 'untimed steps before them', intArg('--warmup', 0), 2)
    .option('--rounds <n>', 'alternations cjepa / PyTorch (medians over all rounds)', intArg('--rounds', 1), 2)
    .option('--threads <n>', 'intra-op threads, both sides (default: all cores)', intArg('--threads', 1))
    .option('--precision <p>', 'fp32, bf16 or both (default: both where the CPU runs bf16 natively, else fp32)', 'auto')
    .option('--no-pytorch', 'time cjepa only')
    .option('--profile <dir>', 'after timing, one profiled run per side: Chrome traces in <dir> and a per-op self-time table')
    .option('--gemm-log', 'after timing, one more run of cjepa logging each fp32 Linear GEMM: time by shape, GFLOP/s')
    .option('--json', 'last line of stdout: one JSON object (preset row at top level, all rows under "rows")')
    .action((f: BenchFlags) => {
      const precisions = f.precision === 'auto' ? (cpuHasBf16() ? ['fp32', 'bf16'] : ['fp32'])
        : f.precision === 'both' ? ['fp32', 'bf16'] : [f.precision];
      for (const p of precisions) if (p !== 'fp32' && p !== 'bf16') throw new Error(`--precision must be fp32, bf16, both or auto, got '${f.precision}'`);
      const report = runBench({
        rows: f.rows.split(',').map((s) => s.trim()).filter(Boolean), steps: f.steps, warmup: f.warmup, rounds: f.rounds,
        threads: f.threads ?? availableParallelism(), precisions: precisions as ('fp32' | 'bf16')[], pytorch: f.pytorch, profile: f.profile, gemmLog: f.gemmLog,
        log: (l) => process.stderr.write(`${l}\n`),
      });
      console.log(formatBench(report));
      if (f.json) console.log(JSON.stringify(benchJson(report)));
    });
  return program;
}
