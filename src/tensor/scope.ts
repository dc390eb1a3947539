// Deterministic memory. libtorch memory is invisible to V8's garbage collector, so every tensor made
// inside `tidy(fn)` is released when `fn` returns, except the tensors it returns (which move to the
// enclosing scope) and those passed to `keep`. Outside any scope a tensor lives until `dispose()`
// (or `using`), which is what parameters and optimiser state want.

export interface Disposable {
  dispose(): void;
  /** set by `keep`: survives scope exits */
  kept: boolean;
}

const stack: Disposable[][] = [];

/** Called by every new tensor. */
export function track(t: Disposable): void {
  const top = stack[stack.length - 1];
  if (top !== undefined) top.push(t);
}

/** Exempts a tensor from every enclosing scope: the caller now owns it. */
export function keep<T extends Disposable>(t: T): T {
  t.kept = true;
  return t;
}

function collect(value: unknown, out: Set<unknown>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 8) return;
  if ('kept' in (value as object) && typeof (value as Disposable).dispose === 'function') {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, out, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, out, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value as object)) collect(v, out, depth + 1);
  }
}

/**
 * Runs `fn` in a scope: tensors created inside are disposed on return, except those reachable from
 * the result (tensors, arrays, plain objects, Maps), which are handed to the enclosing scope.
 * `fn` must be synchronous; a Promise result is refused because its tensors would escape.
 */
export function tidy<T>(fn: () => T): T {
  const scope: Disposable[] = [];
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    for (const t of scope) if (!t.kept) t.dispose();
    throw e;
  }
  stack.pop();
  if (result instanceof Promise) {
    throw new Error('tidy() takes a synchronous function; await outside the scope and tidy the synchronous parts');
  }
  const survivors = new Set<unknown>();
  collect(result, survivors);
  const parent = stack[stack.length - 1];
  for (const t of scope) {
    if (t.kept) continue;
    if (survivors.has(t)) parent?.push(t);
    else t.dispose();
  }
  return result;
}

/** Number of open scopes (for tests). */
export function scopeDepth(): number {
  return stack.length;
}
