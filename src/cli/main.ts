#!/usr/bin/env node
// The `cjepa` command line: pretrain, eval, embed, convert.
import { Command, Option } from 'commander';
import { intArg, floatArg, positiveFloatArg, usageHints } from './args.js';
import { existsSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { CJEPA_PLACEMENTS } from '../method/losses.js';
import { resolveConfig, resumeConfig, architectureConflict, configDiff, type PretrainConfig } from '../config.js';
import { pretrain, checkResumable } from '../method/trainer.js';
import { DATA_SPEC_HELP } from '../data/index.js';
import { setDefaultDevice, setPrecision } from '../tensor/index.js';
import { registerEvalCommands } from './eval_commands.js';
import { registerConvertCommand } from './convert.js';
import { finalKnn } from './final_eval.js';
import { registerDataCommands } from './data_commands.js';
import { registerBenchCommand } from './bench_command.js';
import { PretrainProgress } from './progress.js';
import { availableParallelism } from 'node:os';
import { distEnvFrom, launchLocal } from '../distributed/launch.js';
import { ProcessGroup, c10dInfo, DEFAULT_TIMEOUT_MS, type Backend } from '../distributed/process_group.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CONFIG_DIR = join(ROOT, 'configs');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const int = (name: string) => intArg(name);
const float = floatArg;

/** A config file path, or the name of a shipped preset (configs/<name>.yaml). */
function configPath(c: string | undefined): string | undefined {
  if (!c) return undefined;
  if (existsSync(c)) return c;
  const preset = join(CONFIG_DIR, c.endsWith('.yaml') ? c : `${c}.yaml`);
  if (existsSync(preset)) return preset;
  throw new Error(`config '${c}' is neither a file nor a shipped preset (see ${CONFIG_DIR})`);
}

interface PretrainFlags {
  config?: string; method?: string; data?: string; valSplit?: number; model?: string; patch?: number; imgSize?: number; depth?: number;
  batch?: number; epochs?: number; steps?: number; lr?: number; betaVicreg?: number; placement?: string; maskMode?: string;
  out?: string; resume?: boolean; stopAt?: number; seed?: number; threads?: number; workers?: number; logEvery?: number; monitorEvery?: number;
  checkpointEvery?: number; predDepth?: number; predDim?: number; set?: string[]; device?: string; finalEval?: boolean; precision?: string;
  nproc?: number; nnodes?: number; nodeRank?: number; masterAddr?: string; masterPort?: number; distTimeout?: number; distBackend?: string;
}

/** Flags as a partial config (only those given), so they override the file. */
function flagsToConfig(f: PretrainFlags): Record<string, unknown> {
  const c: Record<string, Record<string, unknown> | unknown> = {};
  const set = (path: string, v: unknown) => {
    if (v === undefined) return;
    const keys = path.split('.');
    let o = c as Record<string, unknown>;
    for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
    o[keys[keys.length - 1]!] = v;
  };
  set('method', f.method); set('data', f.data); set('valSplit', f.valSplit); set('out', f.out); set('seed', f.seed);
  set('threads', f.threads); set('workers', f.workers); set('precision', f.precision);
  set('model.name', f.model); set('model.patch', f.patch); set('model.imgSize', f.imgSize); set('model.depth', f.depth);
  set('predictor.depth', f.predDepth); set('predictor.embedDim', f.predDim);
  set('optim.batch', f.batch); set('optim.epochs', f.epochs); set('optim.steps', f.steps); set('optim.lr', f.lr);
  if (f.epochs !== undefined && f.steps === undefined) set('optim.steps', 0);
  set('cjepa.betaVicreg', f.betaVicreg); set('cjepa.placement', f.placement); set('masks.mode', f.maskMode);
  set('log.every', f.logEvery); set('log.monitorEvery', f.monitorEvery); set('log.checkpointEvery', f.checkpointEvery);
  for (const kv of f.set ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`--set expects key=value (e.g. --set optim.ema=[0.99,1.0]), got '${kv}'`);
    set(kv.slice(0, eq).trim(), parseYaml(kv.slice(eq + 1)));
  }
  return c;
}

/**
 * The config of `pretrain`: defaults <- --config file <- flags; with --resume, the run's config.json
 * replaces the defaults and the file (flags still override), and an architecture that differs from the
 * run's (in the file or the flags) is refused naming the field.
 */
export function pretrainConfig(flags: PretrainFlags, say: (m: string) => void = () => {}): PretrainConfig {
  const file = configPath(flags.config);
  const overrides = flagsToConfig(flags);
  const fresh = resolveConfig(file, overrides);
  if (!flags.resume) return fresh;
  const out = fresh.out;
  checkResumable(out);
  const savedPath = join(out, 'config.json');
  if (!existsSync(savedPath)) return fresh; // a checkpoint without config.json (convert writes one; old runs): the trainer checks it
  let saved: unknown;
  try {
    saved = JSON.parse(readFileSync(savedPath, 'utf8'));
  } catch (e) {
    throw new Error(`--resume: ${savedPath} cannot be read: ${(e as Error).message}`);
  }
  const cfg = resumeConfig(saved, [{ out }, overrides], out);
  if (file) {
    const fromFile = resolveConfig(file, { out });
    const clash = architectureConflict(cfg, fromFile, out);
    if (clash) throw new Error(clash.replace('was asked for', `is in ${flags.config}`));
    const ignored = configDiff(cfg, resolveConfig(file, overrides)).filter((k) => k !== 'out');
    if (ignored.length) say(`--resume: the run's config.json wins over ${flags.config} for ${ignored.join(', ')} (flags or --set change them)`);
  }
  return cfg;
}

export function buildCli(): Command {
  const program = new Command('cjepa')
    .description('Self-supervised ViT pretraining (C-JEPA, I-JEPA, VICReg) on libtorch')
    .version(VERSION, '-V, --version', 'print the version');

  program.command('pretrain')
    .description('pretrain an encoder on a dataset')
    .option('--config <file|preset>', 'YAML config file or a shipped preset (cifar10-cpu, fashion-mnist-cpu, in1k-vith14-ep300, ...)')
    .addOption(new Option('--method <m>', 'method').choices(['cjepa', 'ijepa', 'vicreg']))
    .option('--data <spec>', `dataset: ${DATA_SPEC_HELP}`)
    .option('--val-split <f>', 'seeded held-out fraction for monitoring', float('--val-split'))
    .option('--model <name>', 'vit_tiny | vit_small | vit_base | vit_large | vit_huge | vit_giant')
    .option('--patch <n>', 'patch size', int('--patch'))
    .option('--img-size <n>', 'image size', int('--img-size'))
    .option('--depth <n>', 'encoder depth (overrides the named size)', int('--depth'))
    .option('--pred-depth <n>', 'predictor depth', int('--pred-depth'))
    .option('--pred-dim <n>', 'predictor width', int('--pred-dim'))
    .option('--batch <n>', 'batch size', int('--batch'))
    .option('--epochs <n>', 'epochs', positiveFloatArg('--epochs'))
    .option('--steps <n>', 'optimiser steps (wins over --epochs)', intArg('--steps', 1))
    .option('--lr <x>', 'peak learning rate', float('--lr'))
    .option('--beta-vicreg <x>', 'C-JEPA: weight of the VICReg regulariser', float('--beta-vicreg'))
    .addOption(new Option('--placement <p>', 'C-JEPA: where VICReg acts (default context: pooled context-encoder output; block-pair: the paper, see docs/results/cifar10-ablation)').choices([...CJEPA_PLACEMENTS]))
    .addOption(new Option('--mask-mode <m>', 'multi-block masks').choices(['faithful', 'unbiased']))
    .option('--out <dir>', 'run directory')
    .option('--resume', "continue the run in --out from its last checkpoint, with its config.json (flags override; not its architecture)")
    .option('--stop-at <step>', 'pause after this step with a checkpoint, the schedules staying those of the whole run (--resume continues it as if it had not stopped)', intArg('--stop-at', 1))
    .option('--device <d>', 'cpu, cuda or cuda:N (default cpu)')
    .option('--precision <p>', 'fp32, bf16 (autocast on the network forwards) or auto (bf16 where the CPU/GPU runs it natively)')
    .option('--seed <n>', 'seed', int('--seed'))
    .option('--threads <n>', 'libtorch threads (0 = all cores)', int('--threads'))
    .option('--workers <n>', 'data-loader worker threads', int('--workers'))
    .option('--log-every <n>', 'steps between metric lines', int('--log-every'))
    .option('--monitor-every <n>', 'steps between collapse monitors (0 = off)', int('--monitor-every'))
    .option('--checkpoint-every <n>', 'steps between checkpoints', int('--checkpoint-every'))
    .option('--no-final-eval', 'skip the k-NN on the held-out split at the end')
    .option('--set <key=value...>', 'any config field, value in YAML (e.g. --set optim.ema=[0.99,1] masks.nTargets=2)')
    .option('--nproc <n>', 'data parallel: start n ranks on this machine (optim.batch is per rank; global batch = batch x ranks)', intArg('--nproc', 1))
    .option('--nnodes <n>', 'data parallel: machines taking part, each running --nproc ranks', intArg('--nnodes', 1))
    .option('--node-rank <n>', 'data parallel: this machine\'s index in [0, nnodes)', intArg('--node-rank', 0))
    .option('--master-addr <addr>', 'data parallel: address of node 0 (rendezvous), default 127.0.0.1')
    .option('--master-port <port>', 'data parallel: rendezvous port (default: a free one with one node, 29500 with several)', intArg('--master-port', 1))
    .option('--dist-timeout <s>', `data parallel: seconds a rank waits for the others (rendezvous and every collective) before failing (default ${DEFAULT_TIMEOUT_MS / 1000})`, positiveFloatArg('--dist-timeout'))
    .addOption(new Option('--dist-backend <b>', 'data parallel: gloo (CPU) or nccl (CUDA); default nccl on cuda, else gloo').choices(['gloo', 'nccl']))
    .action(async (flags: PretrainFlags) => {
      if (flags.nproc !== undefined && process.env.CJEPA_LAUNCHED !== '1') {
        process.exitCode = await launchRanks(flags);
        return;
      }
      const denv = distEnvFrom(process.env);
      // one GPU per rank: a plain 'cuda' means this machine's GPU number LOCAL_RANK
      if (flags.device) setDefaultDevice(flags.device === 'cuda' && denv && denv.worldSize > 1 ? `cuda:${denv.localRank}` : flags.device);
      const rank = denv?.rank ?? 0;
      const progress = rank === 0 ? new PretrainProgress() : null;
      const say = (m: string) => (progress ? progress.message(m) : console.error(`[rank ${rank}] ${m}`));
      // ranks other than 0 train rank 0's config (the trainer shares it), so they need no run directory
      const cfg = pretrainConfig(rank === 0 ? flags : { ...flags, resume: false }, say);
      setPrecision(cfg.precision); // for the final evaluation too
      let pg: ProcessGroup | undefined;
      if (denv && denv.worldSize > 1) {
        const backend = (flags.distBackend ?? (flags.device?.startsWith('cuda') ? 'nccl' : 'gloo')) as Backend;
        pg = ProcessGroup.init({ ...denv, backend, timeoutMs: (flags.distTimeout ?? DEFAULT_TIMEOUT_MS / 1000) * 1000 });
      }
      const ac = new AbortController();
      // first Ctrl-C: stop the bar, finish the step, write a checkpoint, exit 130; a second one quits at once
      const onSig = () => {
        progress?.stop();
        if (ac.signal.aborted) process.exit(130);
        say('interrupt: finishing this step and writing a checkpoint (press Ctrl-C again to quit now)');
        ac.abort();
      };
      process.on('SIGINT', onSig);
      process.on('SIGTERM', onSig);
      const ranks = pg ? `, ${pg.worldSize} ranks (global batch ${cfg.optim.batch * pg.worldSize})` : '';
      if (rank === 0) {
        say(`cjepa pretrain: ${cfg.method} on ${cfg.data}, ${cfg.model.name} patch ${cfg.model.patch} img ${cfg.model.imgSize}, batch ${cfg.optim.batch}${ranks}, ` +
          `device ${flags.device ?? 'cpu'}, out ${cfg.out}`);
      }
      const r = await pretrain(cfg, {
        resume: flags.resume, stopAt: flags.stopAt, signal: ac.signal, onMessage: say, onStart: (s) => progress?.start(s), onLog: (l, total) => progress?.onLog(l, total),
        processGroup: pg,
      }).finally(() => progress?.stop());
      pg?.barrier(); // leave together: rank 0's store must outlive the others' last read of it
      pg?.destroy();
      if (rank !== 0) {
        if (ac.signal.aborted) process.exitCode = 130;
        return;
      }
      if (ac.signal.aborted) {
        say(`interrupted at step ${r.steps}; continue with the same command and --resume`);
        process.exitCode = 130;
        return;
      }
      if (r.steps < r.totalSteps) {
        say(`continue with the same command and --resume (a later --stop-at, or none to finish the ${r.totalSteps} steps)`);
        return;
      }
      say(`done: ${r.steps} steps, final loss ${r.finalLoss.toFixed(4)}, checkpoint ${r.checkpoint}`);
      say(`metrics: ${join(cfg.out, 'metrics.jsonl')}, plots: ${join(cfg.out, 'loss.png')}, ${join(cfg.out, 'rankme.png')}`);
      if (r.steps > 0 && flags.finalEval !== false) await finalKnn(cfg);
    });

  registerEvalCommands(program);
  registerConvertCommand(program);
  registerDataCommands(program);
  registerBenchCommand(program);
  return usageHints(program);
}

/** `pretrain --nproc N`: this process starts the ranks (the same command, each with its RANK) and waits. */
async function launchRanks(flags: PretrainFlags): Promise<number> {
  const info = c10dInfo();
  if (!info.c10d) throw new Error(`--nproc: ${info.reason}`);
  if (flags.device) setDefaultDevice(flags.device); // refuse a device this libtorch lacks before starting ranks
  const cfg = pretrainConfig(flags);
  const threads = flags.threads ?? (cfg.threads > 0 ? cfg.threads : availableParallelism());
  const argv = process.argv.slice(2);
  return launchLocal({
    nproc: flags.nproc!, nnodes: flags.nnodes, nodeRank: flags.nodeRank, masterAddr: flags.masterAddr, masterPort: flags.masterPort,
    threads, script: process.argv[1]!, args: (per) => [...argv, '--threads', String(per)],
  });
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === (await import('node:fs')).realpathSync(process.argv[1]);
if (isMain) {
  buildCli().parseAsync(process.argv).catch((e: unknown) => {
    console.error(`cjepa: ${(e as Error).message}`);
    process.exit(1);
  });
}
