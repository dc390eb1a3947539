// The EMA target encoder update: theta_bar <- m theta_bar + (1 - m) theta, outside autograd.
import { Tensor, F } from '../tensor/index.js';

/** In-place EMA of `target` towards `online` (same order and shapes, as Module.parameters()). */
export function emaUpdate(target: readonly Tensor[], online: readonly Tensor[], momentum: number): void {
  if (target.length !== online.length) throw new Error(`emaUpdate: ${target.length} target vs ${online.length} online parameters`);
  if (!(momentum >= 0 && momentum <= 1)) throw new RangeError(`emaUpdate: momentum must be in [0, 1], got ${momentum}`);
  // the official `param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)`, one native call for the list
  F.fusedEma_(target, online, momentum);
}
