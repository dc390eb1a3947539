#!/usr/bin/env node
// `cjepa eval` and `cjepa embed`. registerEvalCommands(program) adds both to a commander program;
// main(argv) runs them standalone (also: `node dist/src/cli/eval_commands.js eval ...`).
import { Command, Option, InvalidArgumentError } from 'commander';
import { intArg, floatArg, usageHints } from './args.js';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DATA_SPEC_HELP, defaultWorkers } from '../data/index.js';
import { setNumThreads, setDefaultDevice, setPrecision, type Precision } from '../tensor/index.js';
import { evaluateCheckpoint, embedDataset, PROTOCOLS, type Protocol, type EvalReport } from '../eval/index.js';
import type { Pooling } from '../eval/features.js';
import { encoderChoice } from '../eval/load_encoder.js';
import { StageProgress } from './progress.js';

const int = (name: string, min = 1) => intArg(name, min);
const float = floatArg;
const protocolList = (v: string): Protocol[] => {
  const ps = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (ps.length === 1 && ps[0] === 'none') return [];
  for (const p of ps) if (!PROTOCOLS.includes(p as Protocol)) throw new InvalidArgumentError(`unknown protocol '${p}' (expected a list of ${PROTOCOLS.join(', ')}, or none)`);
  return ps as Protocol[];
};
const intList = (name: string) => (v: string): number[] => {
  const ks = v.split(',').map((s) => Number(s.trim()));
  if (ks.length === 0 || ks.some((k) => !Number.isInteger(k) || k < 1)) throw new InvalidArgumentError(`${name} must be a list of positive integers, got '${v}'`);
  return ks;
};
const floatList = (name: string) => (v: string): number[] => {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.length === 0 || xs.some((x) => !(x >= 0))) throw new InvalidArgumentError(`${name} must be a list of numbers >= 0, got '${v}'`);
  return xs;
};

interface CommonFlags {
  checkpoint: string; data: string; batch?: number; pooling: Pooling; encoder: string; config?: string; heads?: number;
  model?: string; // torch.save checkpoints (src/cli/convert.ts)
  workers?: number; threads?: number; device?: string; precision?: string; json?: boolean;
}
interface EvalFlags extends CommonFlags {
  valData?: string; valSplit?: number; protocol: Protocol[]; seed?: number; k: number[]; temperature: number;
  l2?: number[]; probeMaxIter?: number; l2Extend?: number; ftEpochs?: number; ftLr?: number; ftBatch?: number; ftLayerDecay?: number; ftFlip: boolean;
}
interface EmbedFlags extends CommonFlags { out: string; force?: boolean }

function common(c: Command): Command {
  return c
    .requiredOption('--checkpoint <dir|file>', 'run directory, checkpoint directory, encoder .safetensors file, or torch.save file (official I-JEPA .pth.tar, state-dict .pth; read safely)')
    .requiredOption('--data <spec>', `dataset: ${DATA_SPEC_HELP}`)
    .option('--batch <n>', 'batch size for feature extraction', int('--batch'), 128)
    .addOption(new Option('--pooling <p>', 'mean: mean of final tokens; last4: final-norm-ed mean of the last 4 blocks, concatenated').choices(['mean', 'last4']).default('mean'))
    .addOption(new Option('--encoder <which>', 'target (EMA target encoder), online (the encoder trained by gradients) or auto (target when there is one)').choices(['auto', 'target', 'online']).default('auto'))
    .option('--config <file>', 'architecture for a bare .safetensors file (pretrain YAML/JSON config, state.json or config.json)')
    .option('--heads <n>', 'attention heads when the architecture is inferred from a bare file (default: the official size of that width, else dim/64)', int('--heads'))
    .option('--model <name>', 'ViT size (vit_huge, ...) settling the head count of a bare or torch.save file')
    .option('--workers <n>', 'data-loader worker threads (0 = in-process)', int('--workers', 0), defaultWorkers())
    .option('--threads <n>', 'libtorch threads (default: all cores)', int('--threads'))
    .option('--device <d>', 'cpu, cuda or cuda:N (default cpu)')
    .option('--precision <p>', 'fp32 (default), bf16 (autocast) or auto (bf16 where the hardware runs it natively)', 'fp32')
    .option('--json', 'print one JSON object on stdout (messages go to stderr)');
}

function setup(f: CommonFlags): void {
  if (f.threads !== undefined) setNumThreads(f.threads);
  if (f.device) setDefaultDevice(f.device);
  if (f.precision !== undefined) setPrecision(f.precision as Precision | 'auto');
}

const pct = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '-' : `${(100 * x).toFixed(2)}%`);

/** A plain-text table of an eval report. */
export function formatReport(r: EvalReport): string {
  const rows: [string, string][] = [
    ['checkpoint', `${r.checkpoint}${r.step !== null ? ` (step ${r.step}${r.method ? `, ${r.method}` : ''})` : ''}`],
    ['encoder', `${r.network}, pooling ${r.pooling}, ${r.embedding_dim} dims`],
    ['train / test', `${r.n_train} / ${r.n_test} (${r.num_classes} classes)`],
  ];
  if (r.knn_top1) for (const [k, v] of Object.entries(r.knn_top1)) rows.push([`k-NN top-1 (k=${k})`, pct(v)]);
  if (r.linear_top1 !== undefined) {
    rows.push(['linear top-1', `${pct(r.linear_top1)} (train ${pct(r.linear_train_top1)}; l2 ${r.linear_l2}${r.linear_l2_at_edge ? ', at the edge of the sweep' : ''})`]);
    rows.push(['linear probe fit', `${r.linear_iterations} L-BFGS iterations, final loss ${r.linear_final_loss?.toFixed(5)}`]);
  }
  if (r.finetune_top1 !== undefined) rows.push(['fine-tune top-1', pct(r.finetune_top1)]);
  rows.push(['RankMe', `${r.rankme.toFixed(2)} / ${Math.min(r.embedding_dim, r.monitor_samples)}`]);
  rows.push(['centred RankMe', `${r.rankme_centred.toFixed(2)} (per token ${r.rankme_tokens.toFixed(2)}, ${r.token_samples} tokens); ${r.verdict}`]);
  rows.push(['normalised std', `${r.normalised_std.toFixed(4)} (healthy ~${(1 / Math.sqrt(r.embedding_dim)).toFixed(4)})`]);
  rows.push(['top eigenvalues', r.eigenspectrum.slice(0, 5).map((x) => x.toPrecision(3)).join(', ')]);
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

/** Adds `eval` and `embed` to a commander program. */
export function registerEvalCommands(program: Command): Command {
  common(program.command('eval'))
    .description('evaluate a checkpoint: k-NN, linear probe, fine-tuning, collapse monitors')
    .option('--val-data <spec>', 'test set (default: a seeded --val-split of --data)')
    .option('--val-split <f>', 'fraction of --data held out as the test set when no --val-data (default 0.1)', float('--val-split'))
    .option('--protocol <list>', `comma-separated: ${PROTOCOLS.join(', ')} (or none)`, protocolList, ['knn', 'linear'] as Protocol[])
    .option('--seed <n>', "seed of the splits (default: the checkpoint run's own when it held out the same --val-split of the same --data, so its test images are unseen; else 0)", int('--seed', 0))
    .option('--k <list>', 'k-NN neighbour counts', intList('--k'), [20, 200])
    .option('--temperature <t>', 'k-NN vote temperature', float('--temperature'), 0.07)
    .option('--l2 <list>', 'linear probe: L2 strengths to start the sweep from (default 1e-5,...,1e-1; one value: no sweep)', floatList('--l2'))
    .option('--l2-extend <n>', 'linear probe: extend the sweep by x10 past a winning edge at most n times per side (default 4)', int('--l2-extend', 0))
    .option('--probe-max-iter <n>', 'linear probe: L-BFGS iteration cap per fit (default 1000)', int('--probe-max-iter'))
    .option('--ft-epochs <n>', 'fine-tuning epochs (default 5)', int('--ft-epochs'))
    .option('--ft-lr <x>', 'fine-tuning peak lr (default 5e-4 * batch / 256)', float('--ft-lr'))
    .option('--ft-batch <n>', 'fine-tuning batch size (default 64)', int('--ft-batch'))
    .option('--ft-layer-decay <x>', 'fine-tuning layer-wise lr decay, 1 = none (default 0.75)', float('--ft-layer-decay'))
    .option('--no-ft-flip', 'fine-tuning: no random horizontal flips')
    .action(async (f: EvalFlags) => {
      setup(f);
      const progress = new StageProgress();
      const say = (m: string) => progress.message(m);
      const report = await evaluateCheckpoint({
        checkpoint: f.checkpoint, data: f.data, valData: f.valData, valSplit: f.valSplit, seed: f.seed, protocols: f.protocol,
        batchSize: f.batch, pooling: f.pooling, workers: f.workers, which: encoderChoice(f.encoder), config: f.config, heads: f.heads, model: f.model,
        knn: { ks: f.k, temperature: f.temperature },
        linear: {
          ...(f.l2 ? { l2Grid: f.l2 } : {}), ...(f.probeMaxIter ? { maxIter: f.probeMaxIter } : {}),
          ...(f.l2Extend !== undefined ? { maxExtend: f.l2Extend } : {}),
        },
        finetune: {
          flip: f.ftFlip,
          ...(f.ftEpochs !== undefined ? { epochs: f.ftEpochs } : {}), ...(f.ftLr !== undefined ? { lr: f.ftLr } : {}),
          ...(f.ftBatch !== undefined ? { batchSize: f.ftBatch } : {}), ...(f.ftLayerDecay !== undefined ? { layerDecay: f.ftLayerDecay } : {}),
        },
        onMessage: say, onProgress: (p) => progress.update(p),
      }).finally(() => progress.stop());
      if (f.json) process.stdout.write(JSON.stringify(report) + '\n');
      else process.stdout.write(formatReport(report) + '\n');
    });

  common(program.command('embed'))
    .description('write the embeddings of every sample of a dataset to a .safetensors file (embeddings, indices, labels, paths)')
    .requiredOption('--out <file.safetensors>', 'output file (written atomically; an existing file other than earlier embeddings needs --force)')
    .option('--force', 'replace --out whatever it holds')
    .action(async (f: EmbedFlags) => {
      setup(f);
      const progress = new StageProgress();
      const r = await embedDataset({
        checkpoint: f.checkpoint, data: f.data, out: f.out, batchSize: f.batch, pooling: f.pooling, workers: f.workers, force: f.force,
        which: encoderChoice(f.encoder), config: f.config, heads: f.heads, model: f.model, onMessage: (m) => progress.message(m), onProgress: (p) => progress.update(p),
      }).finally(() => progress.stop());
      if (f.json) process.stdout.write(JSON.stringify(r) + '\n');
      else {
        console.error(`wrote ${r.n} x ${r.dim} embeddings (${r.network}) to ${r.out}${r.paths ? ' with file paths' : ''}` +
          (r.skipped.length ? `; ${r.skipped.length} corrupt file(s) left out: ${r.skipped.map((s) => s.path).join(', ')}` : ''));
      }
    });
  return program;
}

/** Runs `eval` / `embed` with user arguments (no node/script prefix); returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = usageHints(registerEvalCommands(new Command('cjepa').exitOverride()));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    const err = e as Error & { code?: string; exitCode?: number };
    if (err.code?.startsWith('commander.')) return err.exitCode ?? 1; // commander printed the message
    console.error(`cjepa: ${err.message}`);
    return 1;
  }
}

function invokedDirectly(): boolean {
  try {
    return process.argv[1] !== undefined && fileURLToPath(import.meta.url) === realpathSync(process.argv[1]);
  } catch {
    return false;
  }
}
const isMain = invokedDirectly();
if (isMain) process.exitCode = await main(process.argv.slice(2));
