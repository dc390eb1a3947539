// Rebuilding a frozen encoder from a checkpoint for evaluation.
//  - A run directory or checkpoint directory: the architecture comes from state.json's resolved
//    config (the same vitConfig call as buildNetworks), the weights from target_encoder.safetensors
//    (the network JEPA papers evaluate) or, when there is none (VICReg runs), encoder.safetensors.
//  - A .safetensors file: the architecture comes from --config (a YAML/JSON pretrain config, a
//    state.json or config.json), else from a state.json beside the file, else it is inferred from the
//    tensor shapes (patch_embed.proj.weight gives dim / channels / patch, pos_embed the grid, the
//    blocks.N keys the depth, fc1 the MLP ratio); the head count does not change any shape, so it
//    comes from `heads` (default dim / 64, at least 1) and must be right for the features to be.
import { existsSync, statSync } from 'node:fs';
import { join, basename, resolve } from 'node:path';
import { Tensor } from '../tensor/index.js';
import { VisionTransformer, vitConfig, type ViTConfig } from '../nn/vit.js';
import { resolveCheckpointDir, readCheckpointState } from '../method/checkpoint.js';
import { loadTensors } from '../io/tensors.js';
import { loadConfigFile, resolveConfig, encoderConfig, type PretrainConfig } from '../config.js';

export type EncoderChoice = 'auto' | 'target_encoder' | 'encoder';

export interface LoadEncoderOptions {
  /** Which network of a checkpoint directory: 'auto' (default) = target_encoder, else encoder. */
  which?: EncoderChoice;
  /** Architecture source for a bare .safetensors file: a pretrain config (YAML/JSON), state.json or config.json. */
  config?: string;
  /** Attention heads when the architecture is inferred from shapes (default embedDim / 64, at least 1). */
  heads?: number;
}

export interface LoadedEncoder {
  encoder: VisionTransformer;
  /** The weights file read. */
  file: string;
  /** Which network it is ('target_encoder', 'encoder', or the file's stem for a bare file). */
  network: string;
  /** Where the architecture came from. */
  architecture: 'state.json' | 'config' | 'inferred';
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

/** Infers a ViT config from an encoder state dict (see the file comment for what is inferred). */
export function inferEncoderConfig(sd: Record<string, Tensor>, heads?: number): ViTConfig {
  const pw = sd['patch_embed.proj.weight'];
  if (!pw || pw.ndim !== 4) {
    throw new Error(`not a ViT encoder state dict: no 4-D 'patch_embed.proj.weight' (keys: ${Object.keys(sd).slice(0, 6).join(', ')}...)`);
  }
  const [embedDim, inChans, patchSize, pw2] = pw.shape as [number, number, number, number];
  if (patchSize !== pw2) throw new Error(`non-square patches (${patchSize}x${pw2}) are not supported`);
  const pos = sd['pos_embed'];
  if (!pos) throw new Error("not a ViT encoder state dict: no 'pos_embed'");
  const n = pos.size(-2);
  const g = Math.round(Math.sqrt(n));
  if (g * g !== n) throw new Error(`pos_embed has ${n} positions, not a square grid; pass --config with the image size`);
  let depth = 0;
  while (sd[`blocks.${depth}.attn.qkv.weight`]) depth++;
  if (depth === 0) throw new Error("not a ViT encoder state dict: no 'blocks.0.attn.qkv.weight'");
  const hidden = sd['blocks.0.mlp.fc1.weight']!.size(0);
  const numHeads = heads ?? Math.max(1, Math.round(embedDim / 64));
  if (!Number.isInteger(numHeads) || numHeads < 1 || embedDim % numHeads !== 0) {
    throw new Error(`--heads ${numHeads} must be a positive divisor of the embedding dim ${embedDim}`);
  }
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
  const dir = resolveCheckpointDir(abs);
  const which = o.which ?? 'auto';
  let file: string;
  if (isFile) {
    file = abs;
  } else {
    const target = join(dir, 'target_encoder.safetensors'), online = join(dir, 'encoder.safetensors');
    if (which === 'target_encoder' || (which === 'auto' && existsSync(target))) file = target;
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

  const sd = loadTensors(file).tensors;
  try {
    const pw = sd['patch_embed.proj.weight'];
    if (!pw) throw new Error(`'${file}' is not an encoder: no 'patch_embed.proj.weight' (is it a predictor / expander / optimizer file?)`);
    const channels = pw.size(1);
    const vcfg = config ? encoderConfigFromPretrain(config, channels) : inferEncoderConfig(sd, o.heads);
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
    return {
      encoder, file, network, architecture, config, step, method,
      imgSize, patchSize: vcfg.patchSize, channels, embedDim: vcfg.embedDim,
    };
  } finally {
    disposeAll(sd);
  }
}
