// The EMA target encoder update: theta_bar <- m theta_bar + (1 - m) theta, outside autograd.
import { Tensor, noGrad } from '../tensor/index.js';

/** In-place EMA of `target` towards `online` (same order and shapes, as Module.parameters()). */
export function emaUpdate(target: readonly Tensor[], online: readonly Tensor[], momentum: number): void {
  if (target.length !== online.length) throw new Error(`emaUpdate: ${target.length} target vs ${online.length} online parameters`);
  if (!(momentum >= 0 && momentum <= 1)) throw new RangeError(`emaUpdate: momentum must be in [0, 1], got ${momentum}`);
  noGrad(() => {
    // same arithmetic as the official `param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)`
    for (let i = 0; i < target.length; i++) target[i]!.mul_(momentum).add_(online[i]!, 1 - momentum);
  });
}
