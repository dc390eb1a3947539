// VICReg's expander (projector): (Linear-BatchNorm-ReLU) x (n-1), then a Linear without bias.
import { Tensor, Generator, tidy } from '../tensor/index.js';
import { Module } from './module.js';
import { BatchNorm1d, Linear, type BatchSync } from './layers.js';

export class Expander extends Module {
  readonly linears: Linear[] = [];
  readonly norms: BatchNorm1d[] = [];
  /** dims: [input, hidden..., output], e.g. [192, 768, 768, 768]; initStd: the Linear weights' trunc-normal std (0.02, the ViT's init) */
  constructor(readonly dims: number[], seed = 0, initStd = 0.02) {
    super();
    if (dims.length < 2) throw new Error(`expander needs at least [in, out] dims, got [${dims.join(', ')}]`);
    const init = { initStd, generator: new Generator(seed + 2) };
    // names follow the official nn.Sequential: 0 (Linear), 1 (BN), 2 (ReLU), 3 (Linear), ...
    for (let i = 0; i < dims.length - 1; i++) {
      const last = i === dims.length - 2;
      this.linears.push(this.child(String(3 * i), new Linear(dims[i]!, dims[i + 1]!, !last, init)));
      if (!last) this.norms.push(this.child(String(3 * i + 1), new BatchNorm1d(dims[i + 1]!)));
    }
  }
  /** Batch statistics over every rank's rows (data parallelism); undefined: this process's batch. */
  syncBatchNorm(sync: BatchSync | undefined): void {
    for (const n of this.norms) n.sync = sync;
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = x;
      for (let i = 0; i < this.linears.length; i++) {
        h = this.linears[i]!.forward(h);
        if (i < this.norms.length) h = this.norms[i]!.forward(h).relu();
      }
      return h;
    });
  }
}
