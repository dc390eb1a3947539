// Module: named parameters, buffers and children, with PyTorch's state-dict naming
// ("blocks.0.attn.qkv.weight"). Parameters are owned by their module (kept out of every tidy scope)
// and released by `dispose()`.
import { Tensor, keep, noGrad } from '../tensor/index.js';

export abstract class Module {
  training = true;
  private readonly params = new Map<string, Tensor>();
  private readonly buffers = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();

  /** Registers a trainable (or frozen: requiresGrad false) parameter under `name`. */
  protected param(name: string, t: Tensor, requiresGrad = true): Tensor {
    keep(t);
    if (requiresGrad) t.requiresGrad_(true);
    this.params.set(name, t);
    return t;
  }
  /** Registers a non-trainable state tensor (BatchNorm running stats). */
  protected buffer(name: string, t: Tensor): Tensor {
    keep(t);
    this.buffers.set(name, t);
    return t;
  }
  protected child<M extends Module>(name: string, m: M): M {
    this.children.set(name, m);
    return m;
  }

  /** Parameters with their state-dict names, in registration order (as PyTorch). */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, p] of this.params) out.push([prefix + n, p]);
    for (const [n, c] of this.children) out.push(...c.namedParameters(`${prefix}${n}.`));
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }
  /** Trainable parameters only (requiresGrad). */
  trainableParameters(): [string, Tensor][] {
    return this.namedParameters().filter(([, p]) => p.requiresGrad);
  }
  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, b] of this.buffers) out.push([prefix + n, b]);
    for (const [n, c] of this.children) out.push(...c.namedBuffers(`${prefix}${n}.`));
    return out;
  }
  numParameters(): number {
    return this.parameters().reduce((s, p) => s + p.numel, 0);
  }

  /** Parameters and buffers by name (shared tensors, not copies). */
  stateDict(prefix = ''): Record<string, Tensor> {
    return Object.fromEntries([...this.namedParameters(prefix), ...this.namedBuffers(prefix)]);
  }

  /** Copies values from `dict` into this module's tensors; shapes must match. */
  loadStateDict(dict: Record<string, Tensor>, opts: { strict?: boolean; prefix?: string } = {}): { missing: string[]; unexpected: string[] } {
    const prefix = opts.prefix ?? '';
    const own = this.stateDict();
    const missing: string[] = [];
    noGrad(() => {
      for (const [name, t] of Object.entries(own)) {
        const src = dict[prefix + name];
        if (src === undefined) { missing.push(name); continue; }
        const a = t.shape, b = src.shape;
        if (a.length !== b.length || a.some((v, i) => v !== b[i])) {
          throw new Error(`loadStateDict: '${prefix + name}' has shape [${b.join(', ')}], the model needs [${a.join(', ')}]`);
        }
        t.copy_(src);
      }
    });
    const ownKeys = new Set(Object.keys(own).map((k) => prefix + k));
    const unexpected = Object.keys(dict).filter((k) => k.startsWith(prefix) && !ownKeys.has(k));
    if ((opts.strict ?? true) && (missing.length || unexpected.length)) {
      throw new Error(`loadStateDict: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`);
    }
    return { missing, unexpected };
  }

  train(on = true): this {
    this.training = on;
    for (const c of this.children.values()) c.train(on);
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  /** Drops every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = undefined;
  }
  /** Releases every parameter and buffer. */
  dispose(): void {
    for (const p of this.params.values()) p.dispose();
    for (const b of this.buffers.values()) b.dispose();
    for (const c of this.children.values()) c.dispose();
  }
}
