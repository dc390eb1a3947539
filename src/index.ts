// cjepa: the public library API.
export * from './tensor/index.js';
export { saveTensors, loadTensors } from './io/tensors.js';
export * from './io/safetensors.js';
export { Module } from './nn/module.js';
export * from './nn/layers.js';
export { VisionTransformer, VIT_SIZES, vitConfig, applyMasks, type ViTConfig } from './nn/vit.js';
export { Predictor, type PredictorConfig } from './nn/predictor.js';
export { Expander } from './nn/expander.js';
export { sincos2dPosEmbed } from './nn/pos_embed.js';
export * from './method/masks.js';
export * from './method/losses.js';
export { emaUpdate } from './method/ema.js';
export { AdamW, ijepaParamGroups, clipGradNorm, clipGradNorm_ } from './method/optim.js';
export * from './method/schedulers.js';
export { jepaForward, vicregForward, maskTensors, jepaTargets } from './method/step.js';
export { pretrain, buildNetworks, type PretrainOptions, type PretrainResult } from './method/trainer.js';
export { resolveConfig, validateConfig, DEFAULT_CONFIG, type PretrainConfig } from './config.js';
export { ProcessGroup, c10dInfo, DEFAULT_TIMEOUT_MS, type ProcessGroupOptions, type C10dInfo, type Backend, type ReduceOp } from './distributed/process_group.js';
export { distEnvFrom, type DistEnv } from './distributed/launch.js';
export * from './eval/index.js';
// the evaluation transform and its normalisation (also: evalPreprocessing, embedImages from eval)
export { evalTransform, NORM_STATS, type NormStats, type NormName, type ViewSpec } from './data/index.js';
export type { EvalTransformOptions } from './data/transforms.js';
