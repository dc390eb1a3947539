// The optimiser state of an official I-JEPA checkpoint ('opt': torch.optim.AdamW.state_dict()) in
// cjepa's layout. PyTorch keys the state by parameter index, not name: indices run over the param
// groups in order, and facebookresearch/ijepa src/helper.py init_opt builds four groups from
// named_parameters():
//   0: encoder params with 'bias' not in the name and ndim != 1 (weight decay)
//   1: predictor params, same filter
//   2: encoder params with 'bias' in the name or ndim == 1 (WD_exclude)
//   3: predictor params, same filter
// A network's state-dict key order is its named_parameters() order (the official ViTs have no
// buffers), so the checkpoint's own 'encoder' and 'predictor' entries name every index. Anything
// else (other group layouts, AMSGrad, moments whose shapes differ) is refused with an
// OptimizerLayoutError: the caller converts the networks and skips the optimiser.
import { PyDict, assertNoRefused } from './pickle.js';
import { TorchTensor } from './torch_load.js';

export class OptimizerLayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptimizerLayoutError';
  }
}

/** Parameters that are frozen in the official code and in ours (src/nn/vit.ts, predictor.ts): AdamW keeps no state for them. */
export const FROZEN_PARAMS: readonly string[] = ['pos_embed', 'predictor_pos_embed'];

export interface ConvertedOptimizer {
  /** `exp_avg.<net>.<name>` / `exp_avg_sq.<net>.<name>` (net: encoder, predictor), as AdamW.stateTensors() names them. */
  tensors: Record<string, TorchTensor>;
  /** The number of AdamW steps taken (the same for every parameter). */
  step: number;
  betas: [number, number];
  eps: number;
  /** Parameters with state. */
  params: number;
}

/** The parameter names of init_opt's four groups, from the networks' state dicts (DDP prefix removed). */
export function officialParamGroups(encoder: Record<string, TorchTensor>, predictor: Record<string, TorchTensor>): { net: string; names: string[] }[] {
  const decays = (n: string, t: TorchTensor) => !n.includes('bias') && t.shape.length !== 1;
  const pick = (sd: Record<string, TorchTensor>, decay: boolean) => Object.entries(sd).filter(([n, t]) => decays(n, t) === decay).map(([n]) => n);
  return [
    { net: 'encoder', names: pick(encoder, true) }, { net: 'predictor', names: pick(predictor, true) },
    { net: 'encoder', names: pick(encoder, false) }, { net: 'predictor', names: pick(predictor, false) },
  ];
}

/** A scalar (a number, or a one-element tensor as torch >= 1.12 stores 'step') as a number. */
function scalarOf(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (!(v instanceof TorchTensor) || v.numel !== 1) return undefined;
  const r = v.toRaw(), dv = new DataView(r.data.buffer, r.data.byteOffset, r.data.byteLength);
  switch (r.dtype) {
    case 'F32': return dv.getFloat32(0, true);
    case 'F64': return dv.getFloat64(0, true);
    case 'I64': return Number(dv.getBigInt64(0, true));
    case 'I32': return dv.getInt32(0, true);
    default: return undefined;
  }
}

/**
 * Maps an official AdamW state dict onto the parameters of `encoder` and `predictor` (the online
 * networks' state dicts of the same checkpoint). `where` names the entry in messages.
 */
export function convertOfficialOptimizer(opt: unknown, encoder: Record<string, TorchTensor>, predictor: Record<string, TorchTensor>, where = "entry 'opt'"): ConvertedOptimizer {
  const refuse = (m: string): never => { throw new OptimizerLayoutError(`${where}: ${m}`); };
  try {
    assertNoRefused(opt, where);
  } catch (e) {
    throw new OptimizerLayoutError((e as Error).message); // names the value and the refused global
  }
  if (!(opt instanceof PyDict) || !(opt.get('state') instanceof PyDict) || !Array.isArray(opt.get('param_groups'))) {
    refuse("not a torch.optim state dict (a dict with 'state' and 'param_groups')");
  }
  const state = (opt as PyDict).get('state') as PyDict;
  const groups = (opt as PyDict).get('param_groups') as unknown[];
  const want = officialParamGroups(encoder, predictor);
  const layout = 'the official init_opt layout is 4 groups: encoder weights, predictor weights, encoder biases/1-D, predictor biases/1-D';
  if (groups.length !== want.length) refuse(`has ${groups.length} param groups; ${layout}`);

  const tensors: Record<string, TorchTensor> = {};
  const steps = new Set<number>();
  let betas: [number, number] | undefined, eps: number | undefined, params = 0;
  groups.forEach((g, gi) => {
    if (!(g instanceof PyDict)) refuse(`param_groups[${gi}] is not a dict`);
    const pg = g as PyDict;
    if (pg.get('amsgrad') === true) refuse(`param_groups[${gi}] uses AMSGrad (max_exp_avg_sq), which cjepa's AdamW does not have`);
    if (pg.get('maximize') === true) refuse(`param_groups[${gi}] maximizes`);
    const b = pg.get('betas'), e = pg.get('eps');
    if (!Array.isArray(b) || b.length !== 2 || !b.every((x) => typeof x === 'number') || typeof e !== 'number') refuse(`param_groups[${gi}] has no numeric 'betas' / 'eps'`);
    if (betas && (betas[0] !== (b as number[])[0] || betas[1] !== (b as number[])[1] || eps !== e)) refuse(`param groups differ in betas / eps; cjepa has one pair for all`);
    betas = [(b as number[])[0]!, (b as number[])[1]!];
    eps = e as number;
    const ids = pg.get('params');
    if (!Array.isArray(ids) || !ids.every((i) => Number.isSafeInteger(i))) refuse(`param_groups[${gi}]['params'] is not a list of parameter indices`);
    const { net, names } = want[gi]!;
    if ((ids as number[]).length !== names.length) {
      refuse(`param_groups[${gi}] has ${(ids as number[]).length} parameters, the checkpoint's ${net} has ${names.length} ` +
        `${gi < 2 ? 'weights (no bias, not 1-D)' : 'biases / 1-D parameters'}; ${layout}`);
    }
    const sd = net === 'encoder' ? encoder : predictor;
    (ids as number[]).forEach((id, k) => {
      const name = names[k]!, key = `${net}.${name}`, s = state.get(id);
      if (s === undefined) {
        if (FROZEN_PARAMS.includes(name)) return; // frozen: never had a gradient, so no state
        refuse(`parameter ${id} ('${key}') has no state (saved before its first step?); cjepa needs moments for every trainable parameter`);
      }
      if (FROZEN_PARAMS.includes(name)) refuse(`parameter ${id} ('${key}') has state, but cjepa keeps '${name}' frozen`);
      if (!(s instanceof PyDict)) return refuse(`state[${id}] ('${key}') is not a dict`);
      if (s.has('max_exp_avg_sq')) refuse(`state[${id}] ('${key}') has max_exp_avg_sq (AMSGrad)`);
      const p = sd[name]!;
      for (const m of ['exp_avg', 'exp_avg_sq']) {
        const t = s.get(m);
        if (!(t instanceof TorchTensor)) refuse(`state[${id}] ('${key}') has no '${m}' tensor`);
        const tt = t as TorchTensor;
        if (JSON.stringify(tt.shape) !== JSON.stringify(p.shape) || tt.dtype !== p.dtype) {
          refuse(`state[${id}]['${m}'] is ${tt.dtype} ${JSON.stringify(tt.shape)} but '${key}' is ${p.dtype} ${JSON.stringify(p.shape)}: the indices do not follow ${layout}`);
        }
        Object.defineProperty(tensors, `${m}.${key}`, { value: tt, enumerable: true, writable: true, configurable: true });
      }
      const st = scalarOf(s.get('step'));
      if (st === undefined || !Number.isSafeInteger(st) || st < 0) refuse(`state[${id}] ('${key}') has no integer 'step'`);
      steps.add(st!);
      params++;
    });
  });
  const ids = new Set(groups.flatMap((g) => (g as PyDict).get('params') as number[]));
  const stray = state.keys().filter((k) => !ids.has(k as number));
  if (stray.length) refuse(`state holds indices ${stray.slice(0, 5).join(', ')} that no param group names`);
  if (params === 0) refuse('holds no parameter state (saved before the first step)');
  if (steps.size !== 1) refuse(`parameters were updated different numbers of times (steps ${[...steps].slice(0, 4).join(', ')}); cjepa keeps one step count`);
  return { tensors, step: [...steps][0]!, betas: betas!, eps: eps!, params };
}
