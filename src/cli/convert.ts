// `cjepa convert <file.pth.tar> <run dir>`: an official I-JEPA training checkpoint (or a plain
// state-dict .pth) into a cjepa run directory: config.json, checkpoints/step-0000000/ with
// encoder / target_encoder / predictor .safetensors and state.json, latest.json, so eval, embed
// and any safetensors reader work on the result. The file is read with the restricted unpickler
// (no code runs); tensors go from the archive to the safetensors files without libtorch, one
// tensor at a time (peak memory: about the largest tensor). The
// AdamW state ('opt') becomes optimizer.safetensors and state.json's optimizerStep when it has the
// official init_opt layout (src/io/ijepa_optimizer.ts); otherwise it is skipped with a warning and a
// resume starts fresh moments.
import { Command } from 'commander';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve, basename } from 'node:path';
import { intArg } from './args.js';
import { openTorchCheckpoint, type TorchCheckpoint } from '../io/ijepa_checkpoint.js';
import { type TorchTensor } from '../io/torch_load.js';
import { convertOfficialOptimizer, OptimizerLayoutError, type ConvertedOptimizer } from '../io/ijepa_optimizer.js';
import { writeSafetensorsFileLazySync, type LazyRawTensor } from '../io/safetensors.js';
import { VIT_SIZES, type ViTConfig } from '../nn/vit.js';
import { inferHeads, inferEncoderConfig, type HeadsInference } from '../eval/load_encoder.js';
import { resolveConfig, type PretrainConfig } from '../config.js';

export interface ConvertOptions {
  /** Encoder (and predictor) attention heads when the sizes table cannot tell. */
  heads?: number;
  /** A VIT_SIZES name settling the heads (its width must match the weights). */
  model?: string;
  onMessage?: (msg: string) => void;
}

export interface ConvertResult {
  out: string;
  checkpoint: string;
  networks: string[];
  config: PretrainConfig;
  heads: HeadsInference;
  /** Entries of the file not converted (opt, scaler, ...). */
  skipped: string[];
  /** The AdamW state written to optimizer.safetensors, or why it was not. */
  optimizer: { params: number; step: number } | { skipped: string };
}

interface Shapes { [k: string]: number[] }

function shapesOf(sd: Record<string, TorchTensor>): Shapes {
  return Object.fromEntries(Object.entries(sd).map(([k, t]) => [k, t.shape]));
}

/** The encoder part of the config (inferEncoderConfig on the shapes); refuses what config.json cannot express. */
function encoderModel(sd: Record<string, TorchTensor>, o: ConvertOptions, file: string) {
  let v: ViTConfig;
  try {
    v = inferEncoderConfig(sd, o.heads, o.model);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const { embedDim, depth, patchSize: patch, mlpRatio = 4 } = v;
  if (!v.qkvBias) throw new Error(`${file}: the encoder's attention has no qkv bias; cjepa configs always have one`);
  const heads = inferHeads(embedDim, depth, o);
  const ratioOf = (name: string) => VIT_SIZES[name]!.mlpRatio ?? 4;
  const close = (a: number, b: number) => Math.abs(a - b) < 1e-9;
  // a named size with this MLP ratio (the width-matched one when it fits) carries the rest as overrides
  const name = heads.model && close(ratioOf(heads.model), mlpRatio) ? heads.model : Object.keys(VIT_SIZES).find((k) => close(ratioOf(k), mlpRatio));
  if (!name) throw new Error(`${file}: MLP ratio ${mlpRatio} matches no ViT size (4, or vit_giant's 48/11): config.json cannot express it`);
  const size = VIT_SIZES[name]!;
  const imgSize = v.imgSize as number;
  return {
    model: {
      name, patch, imgSize, depth,
      // a width of no named size carries its head count explicitly (not the named size's by accident)
      ...(size.embedDim !== embedDim ? { embedDim, numHeads: heads.numHeads } : size.numHeads !== heads.numHeads ? { numHeads: heads.numHeads } : {}),
    },
    heads, grid: imgSize / patch, embedDim,
  };
}

function predictorModel(s: Shapes, embedDim: number, grid: number, numHeads: number, file: string) {
  let depth = 0;
  while (s[`predictor_blocks.${depth}.attn.qkv.weight`]) depth++;
  const pe = s['predictor_embed.weight'];
  if (!pe || pe[1] !== embedDim) throw new Error(`${file}: the predictor has no 'predictor_embed.weight' of input width ${embedDim}`);
  const pd = pe[0]!;
  const pos = s['predictor_pos_embed'];
  if (!pos || pos[pos.length - 2] !== grid * grid) throw new Error(`${file}: the predictor's position grid does not match the encoder's ${grid}x${grid}`);
  if (pd % numHeads !== 0) throw new Error(`${file}: predictor width ${pd} is not divisible by the encoder's ${numHeads} heads (the official predictor uses the encoder's head count); pass --heads`);
  if (depth === 0 || s['predictor_blocks.0.mlp.fc1.weight']![0] !== 4 * pd) throw new Error(`${file}: the predictor has no blocks or an MLP ratio other than 4`);
  return { embedDim: pd, depth, numHeads };
}

/** Tensors read from the archive as each is written: memory holds one tensor, not a network. */
function lazyOf(sd: Record<string, TorchTensor>): Record<string, LazyRawTensor> {
  const out: Record<string, LazyRawTensor> = {};
  for (const [k, t] of Object.entries(sd)) {
    Object.defineProperty(out, k, { value: { dtype: t.dtype, shape: t.shape, read: () => t.toRaw().data }, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Converts an official I-JEPA checkpoint or a plain encoder state dict into a run directory `out`. */
export function convertTorchCheckpoint(file: string, out: string, o: ConvertOptions = {}): ConvertResult {
  const say = o.onMessage ?? (() => {});
  const root = resolve(out);
  if (existsSync(join(root, 'latest.json')) || existsSync(join(root, 'config.json'))) {
    throw new Error(`'${out}' already holds a run (config.json / latest.json): convert into a new directory`);
  }
  const ck: TorchCheckpoint = openTorchCheckpoint(file);
  try {
    // which file stem each network of the checkpoint becomes
    const stems: [string, string][] = ck.kind === 'official'
      ? ck.networks.map((n) => [n, n])
      : [['state_dict', 'encoder']];
    const sds = new Map(stems.map(([n, stem]) => [stem, ck.network(n)] as const));
    const encSd = sds.get('target_encoder') ?? sds.get('encoder');
    if (!encSd) throw new Error(`${file}: has no encoder or target_encoder: nothing to convert`);
    if (ck.kind === 'state-dict' && encSd['predictor_embed.weight']) throw new Error(`${file}: a predictor state dict; convert needs an encoder`);
    const enc = encoderModel(encSd, o, file);
    if (enc.heads.note) say(enc.heads.note);
    for (const other of ['encoder', 'target_encoder']) {
      const sd = sds.get(other);
      if (sd && JSON.stringify(encoderModel(sd, o, file).model) !== JSON.stringify(enc.model)) throw new Error(`${file}: 'encoder' and 'target_encoder' have different architectures`);
    }
    const pSd = sds.get('predictor');
    const predictor = pSd ? predictorModel(shapesOf(pSd), enc.embedDim, enc.grid, enc.heads.numHeads, file) : undefined;
    const m = ck.meta;
    const official = ck.kind === 'official';
    const skipped = ck.skipped.slice();
    let opt: ConvertedOptimizer | undefined;
    let optSkipped = official ? "the file has no 'opt' entry" : 'a bare state dict has no optimiser state';
    const onlineEnc = sds.get('encoder');
    if (official && ck.entry('opt') !== undefined) {
      try {
        if (!onlineEnc || !pSd) throw new OptimizerLayoutError(`${file}: the optimiser state needs the 'encoder' and 'predictor' entries`);
        opt = convertOfficialOptimizer(ck.entry('opt'), onlineEnc, pSd, `${file}: entry 'opt'`);
        skipped.splice(skipped.indexOf('opt'), 1);
      } catch (e) {
        if (!(e instanceof OptimizerLayoutError)) throw e;
        optSkipped = e.message;
        say(`warning: optimiser state not converted (${e.message}); the networks are. A resume starts AdamW with fresh moments`);
      }
    }
    const config = resolveConfig(undefined, {
      method: 'ijepa', out: root, model: enc.model,
      ...(official ? { data: 'folder:/data/imagenet/train', masks: { mode: 'faithful', targetScale: [0.15, 0.2], contextScale: [0.85, 1.0], minKeep: 10 } } : {}),
      ...(predictor ? { predictor } : {}),
      optim: {
        // per rank, as the official batch_size: world_size ranks made the global batch (--nproc/--nnodes to match)
        ...(m.batch_size !== undefined ? { batch: m.batch_size } : {}),
        ...(opt ? { betas: opt.betas, eps: opt.eps } : {}),
      },
    });

    mkdirSync(join(root, 'checkpoints'), { recursive: true });
    const name = 'step-0000000';
    const final = join(root, 'checkpoints', name), tmp = join(root, 'checkpoints', `.${name}.tmp-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    try {
      for (const [stem, sd] of sds) {
        writeSafetensorsFileLazySync(join(tmp, `${stem}.safetensors`), lazyOf(sd), { format: 'pt', step: '0', source: basename(file) });
        say(`wrote ${stem}.safetensors (${Object.keys(sd).length} tensors)`);
      }
      if (opt) {
        writeSafetensorsFileLazySync(join(tmp, 'optimizer.safetensors'), lazyOf(opt.tensors), { step: String(opt.step), source: basename(file) });
        say(`wrote optimizer.safetensors (AdamW moments of ${opt.params} parameters, step ${opt.step})`);
      }
      const state = {
        step: 0, epoch: m.epoch ?? 0, stepInEpoch: 0, config, method: 'ijepa', optimizerStep: opt?.step ?? 0,
        convertedFrom: { file: resolve(file), kind: ck.kind, format: ck.format, ...m, notConverted: skipped, ...(opt ? {} : { optimizerNotConverted: optSkipped }) },
      };
      writeFileSync(join(tmp, 'state.json'), JSON.stringify(state, null, 2));
      rmSync(final, { recursive: true, force: true });
      renameSync(tmp, final);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    writeFileSync(join(root, 'config.json'), JSON.stringify(config, null, 2));
    writeFileSync(join(root, 'latest.json'), JSON.stringify({ step: 0, dir: `checkpoints/${name}` }));
    return {
      out: root, checkpoint: final, networks: [...sds.keys()], config, heads: enc.heads, skipped,
      optimizer: opt ? { params: opt.params, step: opt.step } : { skipped: optSkipped },
    };
  } finally {
    ck.close();
  }
}

/** Adds `convert` to a commander program. */
export function registerConvertCommand(program: Command): Command {
  program.command('convert')
    .description('convert an official I-JEPA checkpoint (.pth.tar: networks and AdamW state) or a state-dict .pth into a cjepa run directory that pretrain --resume continues (read safely: no code runs)')
    .argument('<file>', 'torch.save file: official I-JEPA training checkpoint or a plain encoder state dict')
    .argument('<out>', 'new run directory')
    .option('--model <name>', `ViT size settling the head count (${Object.keys(VIT_SIZES).join(', ')})`)
    .option('--heads <n>', 'attention heads (default: the official size of that width)', intArg('--heads', 1))
    .option('--json', 'print one JSON object on stdout')
    .action((file: string, out: string, f: { model?: string; heads?: number; json?: boolean }) => {
      const r = convertTorchCheckpoint(file, out, { model: f.model, heads: f.heads, onMessage: (msg) => console.error(msg) });
      const c = r.config.model;
      const summary = {
        out: r.out, checkpoint: r.checkpoint, networks: r.networks, model: c, heads: r.heads.numHeads,
        heads_source: r.heads.source, predictor: r.networks.includes('predictor') ? r.config.predictor : null, not_converted: r.skipped,
        optimizer: 'params' in r.optimizer ? r.optimizer : null,
      };
      if (f.json) process.stdout.write(JSON.stringify(summary) + '\n');
      else console.error(`converted ${r.networks.join(', ')} (${c.name}${r.heads.exact ? '' : ' with overrides'}, patch ${c.patch}, ${c.imgSize} px, ` +
        `${r.heads.numHeads} heads from ${r.heads.source})${'params' in r.optimizer ? `, AdamW state at step ${r.optimizer.step}` : ''} into ${r.out}` +
        `${r.skipped.length ? `; not converted: ${r.skipped.join(', ')}` : ''}`);
    });
  return program;
}
