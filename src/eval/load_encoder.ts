// Rebuilding a frozen encoder from a checkpoint for evaluation.
//  - A run directory or checkpoint directory: the architecture comes from state.json's resolved
//    config (the same vitConfig call as buildNetworks), the weights from target_encoder.safetensors
//    (the network JEPA papers evaluate) or, when there is none (VICReg runs), encoder.safetensors.
//  - A .safetensors file: the architecture comes from --config (a YAML/JSON pretrain config, a
//    state.json or config.json), else from a state.json beside the file, else it is inferred from the
//    tensor shapes (patch_embed.proj.weight gives dim / channels / patch, pos_embed the grid, the
//    blocks.N keys the depth, fc1 the MLP ratio); the head count does not change any shape, so it
//    comes from `heads`, else from `model` (a VIT_SIZES name), else from the named size of the same
//    width (the official sizes table), else it is a guess (dim / 64) and a message says so.
//  - A torch.save file (an official I-JEPA .pth.tar training checkpoint or a plain state-dict .pth),
//    read with the restricted unpickler (src/io/torch_load.ts: no code runs): the target encoder
//    (or `which`), DDP `module.` prefix removed, the architecture inferred as for a bare file.
import { existsSync, statSync } from 'node:fs';
import { join, basename, resolve } from 'node:path';
import { Tensor } from '../tensor/index.js';
import { VisionTransformer, vitConfig, VIT_SIZES, type ViTConfig } from '../nn/vit.js';
import { openTorchCheckpoint, pickEncoderNetwork, materialize } from '../io/ijepa_checkpoint.js';
import { resolveCheckpointDir, readCheckpointState } from '../method/checkpoint.js';
import { loadTensors } from '../io/tensors.js';
import { loadConfigFile, resolveConfig, encoderConfig, type PretrainConfig } from '../config.js';

/**
 * Which encoder of a checkpoint: 'target' (the EMA target encoder, what JEPA papers evaluate),
 * 'online' (the encoder that received gradients; VICReg's only one), or 'auto' (target when there is
 * one, else online). 'target_encoder' and 'encoder', the file stems, are accepted as aliases.
 */
export type EncoderChoice = 'auto' | 'target' | 'online' | 'target_encoder' | 'encoder';

/** The canonical name of an encoder choice ('target_encoder' -> 'target', 'encoder' -> 'online'); throws on anything else. */
export function encoderChoice(which: string | undefined): 'auto' | 'target' | 'online' {
  switch (which ?? 'auto') {
    case 'auto': return 'auto';
    case 'target': case 'target_encoder': return 'target';
    case 'online': case 'encoder': return 'online';
    default: throw new Error(`unknown encoder '${which}' (expected target, online or auto)`);
  }
}

/** The file stem of a (non-auto) encoder choice in checkpoints. */
const STEM = { target: 'target_encoder', online: 'encoder' } as const;

export interface LoadEncoderOptions {
  /** Which network of a checkpoint directory: 'auto' (default) = target, else online (see EncoderChoice). */
  which?: EncoderChoice;
  /** Architecture source for a bare .safetensors file: a pretrain config (YAML/JSON), state.json or config.json. */
  config?: string;
  /** Attention heads when the architecture is inferred from shapes (default: see inferHeads). */
  heads?: number;
  /** A VIT_SIZES name giving the heads when the architecture is inferred (its width must match). */
  model?: string;
  /** Notes on the loaded file (a head count that had to be guessed, entries skipped). */
  onMessage?: (msg: string) => void;
}

export interface LoadedEncoder {
  encoder: VisionTransformer;
  /** The weights file read. */
  file: string;
  /** Which network it is ('target_encoder', 'encoder', or the file's stem for a bare file). */
  network: string;
  /** Where the architecture came from. */
  architecture: 'state.json' | 'config' | 'inferred';
  /** How the head count was found when inferred (see inferHeads). */
  heads?: HeadsInference;
  /** The pretrain config, when known. */
  config: PretrainConfig | null;
  /** Checkpoint step and method, when a state.json was read. */
  step?: number;
  method?: string;
  imgSize: number;
  patchSize: number;
  channels: number;
  embedDim: number;
}

/** The encoder's ViT config from a pretrain config (the trainer builds it the same way). */
export const encoderConfigFromPretrain = encoderConfig;

export interface HeadsInference {
  numHeads: number;
  /** 'flag': --heads; 'model': --model; 'sizes': the official size of that width; 'guess': dim / 64. */
  source: 'flag' | 'model' | 'sizes' | 'guess';
  /** The named size the weights match (width, and depth when `exact`). */
  model?: string;
  exact?: boolean;
  /** A sentence for the user when the count is not certain. */
  note?: string;
}

/**
 * The head count of a ViT of this width and depth: `heads` if given, else `model`'s (a VIT_SIZES
 * name; its width must match), else that of the official named size of the same width (vit_huge:
 * 16 heads, not 1280 / 64), else a guess of dim / 64 with a note saying to pass --heads or --model.
 */
export function inferHeads(embedDim: number, depth: number, o: { heads?: number; model?: string } = {}): HeadsInference {
  const named = Object.entries(VIT_SIZES).find(([, s]) => s.embedDim === embedDim);
  let r: HeadsInference;
  if (o.heads !== undefined) r = { numHeads: o.heads, source: 'flag' };
  else if (o.model !== undefined) {
    const s = VIT_SIZES[o.model];
    if (!s) throw new Error(`--model '${o.model}' is not a known size (${Object.keys(VIT_SIZES).join(', ')})`);
    if (s.embedDim !== embedDim) throw new Error(`--model ${o.model} has width ${s.embedDim}, the weights have ${embedDim}`);
    r = { numHeads: s.numHeads, source: 'model', model: o.model, exact: s.depth === depth };
  } else if (named) {
    const [name, s] = named;
    r = { numHeads: s.numHeads, source: 'sizes', model: name, exact: s.depth === depth };
    if (s.depth !== depth) {
      r.note = `width ${embedDim} is ${name}'s but depth ${depth} is not (${s.depth}): assuming ${name}'s ${s.numHeads} heads; pass --heads to settle it`;
    }
  } else {
    const g = Math.max(1, Math.round(embedDim / 64));
    r = { numHeads: g, source: 'guess', note: `width ${embedDim} matches no official ViT size: guessing ${g} heads (width / 64); pass --heads (or --model) to settle it` };
  }
  if (!Number.isInteger(r.numHeads) || r.numHeads < 1 || embedDim % r.numHeads !== 0) {
    throw new Error(`--heads ${r.numHeads} must be a positive divisor of the embedding dim ${embedDim}`);
  }
  return r;
}

/**
 * Infers a ViT config from an encoder state dict (see the file comment for what is inferred). Only
 * shapes are read, so any record of `{ shape }` works (Tensors, or a torch.save file's unread tensors).
 */
export function inferEncoderConfig(sd: Record<string, { readonly shape: readonly number[] }>, heads?: number, model?: string): ViTConfig {
  const pw = sd['patch_embed.proj.weight'];
  if (!pw || pw.shape.length !== 4) {
    throw new Error(`not a ViT encoder state dict: no 4-D 'patch_embed.proj.weight' (keys: ${Object.keys(sd).slice(0, 6).join(', ')}...)`);
  }
  const [embedDim, inChans, patchSize, pw2] = pw.shape as [number, number, number, number];
  if (patchSize !== pw2) throw new Error(`non-square patches (${patchSize}x${pw2}) are not supported`);
  const pos = sd['pos_embed'];
  if (!pos) throw new Error("not a ViT encoder state dict: no 'pos_embed'");
  const n = pos.shape[pos.shape.length - 2]!;
  const g = Math.round(Math.sqrt(n));
  if (g * g !== n) throw new Error(`pos_embed has ${n} positions, not a square grid; pass --config with the image size`);
  let depth = 0;
  while (sd[`blocks.${depth}.attn.qkv.weight`]) depth++;
  if (depth === 0) throw new Error("not a ViT encoder state dict: no 'blocks.0.attn.qkv.weight'");
  const hidden = sd['blocks.0.mlp.fc1.weight']!.shape[0]!;
  const { numHeads } = inferHeads(embedDim, depth, { heads, model });
  return {
    imgSize: g * patchSize, patchSize, inChans, embedDim, depth, numHeads,
    mlpRatio: hidden / embedDim, qkvBias: sd['blocks.0.attn.qkv.bias'] !== undefined,
  };
}

/** A pretrain config from a YAML/JSON config file, a state.json ({config: ...}) or a config.json. */
function readConfigFile(path: string): PretrainConfig {
  if (!existsSync(path)) throw new Error(`--config '${path}' does not exist`);
  const raw = loadConfigFile(path) as Record<string, unknown> | null;
  const body = raw && typeof raw === 'object' && 'config' in raw && 'step' in raw ? raw['config'] : raw;
  return resolveConfig(undefined, body);
}

function disposeAll(sd: Record<string, Tensor>): void {
  for (const t of Object.values(sd)) t.dispose();
}

/**
 * Loads a frozen encoder (eval mode, no parameter requires grad) from a run directory, a checkpoint
 * directory or a .safetensors file. The caller owns `encoder` (dispose it).
 */
export function loadEncoderFromCheckpoint(path: string, o: LoadEncoderOptions = {}): LoadedEncoder {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new Error(`checkpoint '${path}' does not exist`);
  const isFile = statSync(abs).isFile();
  if (isFile && !abs.endsWith('.safetensors')) return loadEncoderFromTorchFile(abs, o);
  const dir = resolveCheckpointDir(abs);
  const which = encoderChoice(o.which);
  let file: string;
  if (isFile) {
    file = abs;
  } else {
    const target = join(dir, 'target_encoder.safetensors'), online = join(dir, 'encoder.safetensors');
    if (which === 'target' || (which === 'auto' && existsSync(target))) file = target;
    else file = online;
    if (!existsSync(file)) {
      throw new Error(`checkpoint '${dir}' has no ${basename(file)}` + (which === 'auto' ? ' (nor target_encoder.safetensors)' : ''));
    }
  }
  const network = basename(file, '.safetensors');
  const statePath = join(dir, 'state.json');
  let config: PretrainConfig | null = null;
  let architecture: LoadedEncoder['architecture'];
  let step: number | undefined, method: string | undefined;
  if (o.config) {
    config = readConfigFile(o.config);
    architecture = 'config';
  } else if (existsSync(statePath)) {
    const st = readCheckpointState(dir);
    config = st.config as PretrainConfig;
    if (!config || typeof config !== 'object' || !(config as { model?: unknown }).model) throw new Error(`${statePath} has no usable config`);
    step = st.step; method = st.method;
    architecture = 'state.json';
  } else {
    architecture = 'inferred';
  }

  return buildEncoder(loadTensors(file).tensors, o, { file, network, architecture, config, step, method });
}

/** A frozen encoder from an official I-JEPA checkpoint or a state-dict .pth (restricted unpickler). */
function loadEncoderFromTorchFile(file: string, o: LoadEncoderOptions): LoadedEncoder {
  const ck = openTorchCheckpoint(file);
  try {
    const which = encoderChoice(o.which);
    const network = pickEncoderNetwork(ck, which === 'auto' ? 'auto' : STEM[which]);
    const refused = ck.refused.length ? `the file names globals outside the allow-list, never run: ${ck.refused.join(', ')}` : '';
    if (ck.skipped.length) o.onMessage?.(`${file}: not read: ${ck.skipped.join(', ')}${refused ? ` (${refused})` : ''}`);
    else if (refused) o.onMessage?.(`${file}: ${refused}`);
    const sd = materialize(ck.network(network));
    const config = o.config ? readConfigFile(o.config) : null;
    return buildEncoder(sd, o, { file, network, architecture: config ? 'config' : 'inferred', config });
  } finally {
    ck.close();
  }
}

/** Builds the frozen encoder from a state dict (disposed here) and the architecture source. */
function buildEncoder(sd: Record<string, Tensor>, o: LoadEncoderOptions,
  src: Pick<LoadedEncoder, 'file' | 'network' | 'architecture' | 'config' | 'step' | 'method'>): LoadedEncoder {
  const { file, architecture, config } = src;
  try {
    const pw = sd['patch_embed.proj.weight'];
    if (!pw) throw new Error(`'${file}' is not an encoder: no 'patch_embed.proj.weight' (is it a predictor / expander / optimizer file?)`);
    const channels = pw.size(1);
    let heads: HeadsInference | undefined;
    let vcfg: ViTConfig;
    if (config) vcfg = encoderConfigFromPretrain(config, channels);
    else {
      vcfg = inferEncoderConfig(sd, o.heads, o.model);
      heads = inferHeads(vcfg.embedDim, vcfg.depth, o);
      if (heads.note) o.onMessage?.(`${file}: ${heads.note}`);
    }
    const encoder = new VisionTransformer(vcfg);
    try {
      encoder.loadStateDict(sd);
    } catch (e) {
      encoder.dispose();
      throw new Error(`${file} does not fit the ${architecture === 'inferred' ? 'inferred' : 'configured'} architecture: ${(e as Error).message}`);
    }
    for (const p of encoder.parameters()) p.requiresGrad_(false);
    encoder.eval();
    const imgSize = typeof vcfg.imgSize === 'number' ? vcfg.imgSize : vcfg.imgSize[0];
    if (typeof vcfg.imgSize !== 'number' && vcfg.imgSize[0] !== vcfg.imgSize[1]) throw new Error('non-square encoders are not supported by eval');
    return { ...src, encoder, heads, imgSize, patchSize: vcfg.patchSize, channels, embedDim: vcfg.embedDim };
  } finally {
    disposeAll(sd);
  }
}
