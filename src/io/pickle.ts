// A restricted Python unpickler: the pickle virtual machine (protocols 0-5, the opcodes data needs)
// with NO way to run code. Python's unpickler imports any `module.name` a GLOBAL opcode names and
// calls it on REDUCE, which is how a malicious pickle runs `os.system`. Here a GLOBAL resolves only
// through the caller's allow-list of TypeScript functions; any other name becomes an inert
// {@link Refused} marker, and REDUCE / NEWOBJ / BUILD on a marker yield another marker: nothing is
// imported, called or evaluated, ever. A value that holds a marker cannot be mistaken for data:
// callers that need a value check it with {@link assertNoRefused}, which names the global.
//
// Python values map to: None -> null, bool -> boolean, int -> number (bigint beyond 2^53), float ->
// number, str -> string, bytes/bytearray -> Uint8Array, list and tuple -> arrays, dict -> PyDict,
// set/frozenset -> Set (only via the EMPTY_SET/FROZENSET opcodes).

/** An object built from a global outside the allow-list. Holds the name only; nothing was run. */
export class Refused {
  constructor(readonly global: string) {}
  toString(): string {
    return `<refused ${this.global}>`;
  }
}

/** A Python dict (also OrderedDict). Keys are JS primitives (str, int) or arrays (tuples) by identity. */
export class PyDict {
  readonly map = new Map<unknown, unknown>();
  /** Attributes set by BUILD (an OrderedDict state dict's `_metadata`). */
  attrs: unknown = undefined;
  constructor(readonly className = 'dict') {}
  get(k: unknown): unknown {
    return this.map.get(k);
  }
  has(k: unknown): boolean {
    return this.map.has(k);
  }
  keys(): unknown[] {
    return [...this.map.keys()];
  }
}

/** An allow-listed global: `call` implements it in TypeScript (absent: a constant, e.g. a storage type). */
export interface AllowedGlobal {
  readonly name: string;
  call?: (args: unknown[]) => unknown;
}

export class PickleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PickleError';
  }
}

export interface UnpickleOptions {
  /** `module.name` -> implementation. Everything else is refused. */
  globals: ReadonlyMap<string, AllowedGlobal>;
  /** PERSID / BINPERSID (torch.save's storages). Without it a persistent id is an error. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Where the pickle starts in `buf` (default 0). */
  start?: number;
  /** Names the pickle in messages. */
  what?: string;
}

export interface UnpickleResult {
  value: unknown;
  /** Offset just past the STOP opcode. */
  end: number;
  /** The refused globals (each `module.name` once), in order of appearance. */
  refused: string[];
}

const MARK = Symbol('mark');
const MAX_MEMO = 1 << 24;

function isCallableGlobal(v: unknown): v is AllowedGlobal {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && 'name' in v && typeof (v as AllowedGlobal).call === 'function'
    && !(v instanceof PyDict) && !(v instanceof Refused);
}

/** Decodes Python's repr() escapes of a protocol-0 STRING / raw-unicode-escape UNICODE argument. */
function unescapePy(s: string, rawUnicode: boolean): string {
  if (rawUnicode) return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a: string, b: string) => String.fromCodePoint(parseInt(a ?? b, 16)));
  const map: Record<string, string> = { n: '\n', r: '\r', t: '\t', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v', '0': '\0' };
  return s.replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_, e: string) => (e.length === 3 && e[0] === 'x' ? String.fromCharCode(parseInt(e.slice(1), 16)) : map[e] ?? `\\${e}`));
}

function longFromBytes(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
  if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function intFromText(s: string): number | bigint {
  const t = s.endsWith('L') ? s.slice(0, -1) : s;
  if (!/^[+-]?\d+$/.test(t)) throw new PickleError(`bad integer literal '${s}'`);
  const v = BigInt(t);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Runs the restricted pickle VM over `buf` from `start` to the first STOP. */
export function unpickle(buf: Uint8Array, o: UnpickleOptions): UnpickleResult {
  const what = o.what ?? 'pickle';
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let pos = o.start ?? 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();
  const refused: string[] = [];
  const fail = (msg: string): never => {
    throw new PickleError(`${what}: ${msg} (at byte ${pos})`);
  };

  const need = (n: number) => {
    if (!Number.isSafeInteger(n) || n < 0 || pos + n > buf.length) fail('truncated: the data ends inside an opcode');
  };
  const u8 = () => (need(1), buf[pos++]!);
  const u16 = () => (need(2), (pos += 2), dv.getUint16(pos - 2, true));
  const u32 = () => (need(4), (pos += 4), dv.getUint32(pos - 4, true));
  const i32 = () => (need(4), (pos += 4), dv.getInt32(pos - 4, true));
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('length too large');
    return Number(v);
  };
  const bytes = (n: number) => (need(n), (pos += n), buf.subarray(pos - n, pos));
  const line = () => {
    let e = pos;
    while (e < buf.length && buf[e] !== 0x0a) e++;
    if (e >= buf.length) fail('truncated: no end of line');
    const s = latin1.decode(buf.subarray(pos, e));
    pos = e + 1;
    return s;
  };
  const str = (b: Uint8Array) => {
    try {
      return utf8.decode(b);
    } catch {
      return fail('string is not valid UTF-8');
    }
  };
  const pop = (): unknown => (stack.length === 0 ? fail('stack underflow') : stack.pop());
  const top = (): unknown => (stack.length === 0 ? fail('stack underflow') : stack[stack.length - 1]);
  const popMark = (): unknown[] => {
    const items = stack;
    if (metastack.length === 0) fail('MARK missing');
    stack = metastack.pop()!;
    return items;
  };
  const push = (v: unknown) => {
    if (v === MARK) fail('internal: mark pushed as a value');
    stack.push(v);
  };
  const put = (i: number) => {
    if (i > MAX_MEMO) fail(`memo index ${i} too large`);
    memo.set(i, top());
  };
  const get = (i: number) => {
    if (!memo.has(i)) fail(`memo key ${i} missing`);
    push(memo.get(i));
  };
  const resolve = (module: string, name: string): unknown => {
    const full = `${module}.${name}`;
    const g = o.globals.get(full) ?? o.globals.get(full.replace(/^__builtin__\./, 'builtins.'));
    if (g) return g;
    if (!refused.includes(full)) refused.push(full);
    return new Refused(full);
  };
  const call = (f: unknown, args: unknown): unknown => {
    if (f instanceof Refused) return f; // never called: the result is as inert as the global
    if (!Array.isArray(args)) fail(`call arguments must be a tuple, got ${typeof args}`);
    if (!isCallableGlobal(f)) fail(`cannot call ${f instanceof Object && 'name' in f ? (f as AllowedGlobal).name : typeof f}`);
    return (f as AllowedGlobal).call!(args as unknown[]);
  };
  const setItem = (d: unknown, k: unknown, v: unknown) => {
    if (d instanceof Refused) return;
    if (!(d instanceof PyDict)) fail('SETITEM on a non-dict');
    (d as PyDict).map.set(k, v);
  };
  const appendTo = (l: unknown, items: unknown[]) => {
    if (l instanceof Refused) return;
    if (!Array.isArray(l)) fail('APPEND on a non-list');
    for (const x of items) (l as unknown[]).push(x);
  };
  const persistent = (pid: unknown) => {
    if (!o.persistentLoad) fail('persistent id without a persistent loader');
    push(o.persistentLoad!(pid));
  };

  for (;;) {
    if (pos >= buf.length) fail('truncated: no STOP opcode');
    const op = buf[pos++]!;
    switch (op) {
      case 0x80: { // PROTO
        const p = u8();
        if (p > 5) fail(`unsupported pickle protocol ${p}`);
        break;
      }
      case 0x95: u64(); break; // FRAME: a length hint only
      case 0x2e: { // STOP
        const value = pop();
        return { value, end: pos, refused };
      }
      case 0x28: metastack.push(stack); stack = []; break; // MARK
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP
      // ---- constants and numbers
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x4a: push(i32()); break; // BININT
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x8a: push(longFromBytes(bytes(u8()))); break; // LONG1
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) fail('negative LONG4 length');
        push(longFromBytes(bytes(n)));
        break;
      }
      case 0x49: { // INT (protocol 0)
        const s = line();
        push(s === '01' ? true : s === '00' ? false : intFromText(s));
        break;
      }
      case 0x4c: push(intFromText(line())); break; // LONG (protocol 0)
      case 0x47: need(8); pos += 8; push(dv.getFloat64(pos - 8, false)); break; // BINFLOAT (big-endian)
      case 0x46: { // FLOAT (protocol 0)
        const s = line(), v = Number(s);
        if (Number.isNaN(v) && !/^[+-]?nan$/i.test(s)) fail(`bad float literal '${s}'`);
        push(v);
        break;
      }
      // ---- strings and bytes
      case 0x58: push(str(bytes(u32()))); break; // BINUNICODE
      case 0x8c: push(str(bytes(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: push(str(bytes(u64()))); break; // BINUNICODE8
      case 0x56: push(unescapePy(line(), true)); break; // UNICODE (protocol 0, raw-unicode-escape)
      case 0x54: push(latin1.decode(bytes(i32()))); break; // BINSTRING (py2 str)
      case 0x55: push(latin1.decode(bytes(u8()))); break; // SHORT_BINSTRING
      case 0x53: { // STRING (protocol 0, a quoted repr)
        const s = line();
        if (s.length < 2 || s[0] !== s[s.length - 1] || (s[0] !== "'" && s[0] !== '"')) fail('STRING argument is not quoted');
        push(unescapePy(s.slice(1, -1), false));
        break;
      }
      case 0x43: push(bytes(u8()).slice()); break; // SHORT_BINBYTES
      case 0x42: push(bytes(u32()).slice()); break; // BINBYTES
      case 0x8e: push(bytes(u64()).slice()); break; // BINBYTES8
      case 0x96: push(bytes(u64()).slice()); break; // BYTEARRAY8
      case 0x97: case 0x98: fail('out-of-band buffers are not supported'); break; // NEXT_BUFFER / READONLY_BUFFER
      // ---- containers
      case 0x29: push([]); break; // EMPTY_TUPLE
      case 0x74: push(popMark()); break; // TUPLE
      case 0x85: push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(), a = pop(); push([a, b]); break; } // TUPLE2
      case 0x87: { const c = pop(), b = pop(), a = pop(); push([a, b, c]); break; } // TUPLE3
      case 0x5d: push([]); break; // EMPTY_LIST
      case 0x6c: push(popMark()); break; // LIST
      case 0x61: { const x = pop(); appendTo(top(), [x]); break; } // APPEND
      case 0x65: { const items = popMark(); appendTo(top(), items); break; } // APPENDS
      case 0x7d: push(new PyDict()); break; // EMPTY_DICT
      case 0x64: { // DICT
        const items = popMark(), d = new PyDict();
        if (items.length % 2) fail('DICT with an odd number of items');
        for (let i = 0; i < items.length; i += 2) d.map.set(items[i], items[i + 1]);
        push(d);
        break;
      }
      case 0x73: { const v = pop(), k = pop(); setItem(top(), k, v); break; } // SETITEM
      case 0x75: { // SETITEMS
        const items = popMark();
        if (items.length % 2) fail('SETITEMS with an odd number of items');
        for (let i = 0; i < items.length; i += 2) setItem(top(), items[i], items[i + 1]);
        break;
      }
      case 0x8f: push(new Set()); break; // EMPTY_SET
      case 0x90: { // ADDITEMS
        const items = popMark(), s = top();
        if (!(s instanceof Set)) fail('ADDITEMS on a non-set');
        for (const x of items) (s as Set<unknown>).add(x);
        break;
      }
      case 0x91: push(new Set(popMark())); break; // FROZENSET
      // ---- memo
      case 0x71: put(u8()); break; // BINPUT
      case 0x72: put(u32()); break; // LONG_BINPUT
      case 0x70: put(Number(intFromText(line()))); break; // PUT
      case 0x94: put(memo.size); break; // MEMOIZE
      case 0x68: get(u8()); break; // BINGET
      case 0x6a: get(u32()); break; // LONG_BINGET
      case 0x67: get(Number(intFromText(line()))); break; // GET
      // ---- globals and objects: only through the allow-list
      case 0x63: { const module = line(); push(resolve(module, line())); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        push(resolve(module as string, name as string));
        break;
      }
      case 0x82: case 0x83: case 0x84: { // EXT1 / EXT2 / EXT4: the copyreg extension registry
        const code = op === 0x82 ? u8() : op === 0x83 ? u16() : i32();
        const name = `copyreg extension ${code}`;
        if (!refused.includes(name)) refused.push(name);
        push(new Refused(name));
        break;
      }
      case 0x52: { const args = pop(), f = pop(); push(call(f, args)); break; } // REDUCE
      case 0x81: { const args = pop(), cls = pop(); push(call(cls, args)); break; } // NEWOBJ
      case 0x92: { // NEWOBJ_EX
        const kw = pop(), args = pop(), cls = pop();
        if (cls instanceof Refused) { push(cls); break; }
        if (kw instanceof PyDict && kw.map.size > 0) fail('keyword arguments are not supported');
        push(call(cls, args));
        break;
      }
      case 0x69: { // INST (protocol 0): module, name, then the arguments since the mark
        const module = line(), name = line();
        push(call(resolve(module, name), popMark()));
        break;
      }
      case 0x6f: { // OBJ (protocol 1): class and arguments since the mark
        const items = popMark();
        if (items.length === 0) fail('OBJ without a class');
        push(call(items[0], items.slice(1)));
        break;
      }
      case 0x62: { // BUILD: obj.__setstate__(state)
        const state = pop(), obj = top();
        if (obj instanceof Refused) break;
        if (obj instanceof PyDict) { obj.attrs = state; break; }
        if (typeof obj === 'object' && obj !== null && 'setState' in obj && typeof (obj as { setState: unknown }).setState === 'function') {
          (obj as { setState(s: unknown): void }).setState(state);
          break;
        }
        fail('BUILD on an object that takes no state');
        break;
      }
      case 0x51: persistent(pop()); break; // BINPERSID
      case 0x50: persistent(line()); break; // PERSID
      default:
        fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

/** Throws when `v` is, or contains, a {@link Refused} marker; `where` names the value in the message. */
export function assertNoRefused(v: unknown, where: string, seen = new Set<unknown>()): void {
  if (v instanceof Refused) {
    throw new PickleError(`${where} is built by '${v.global}', which is not on the allow-list of safe globals: refused, nothing was run`);
  }
  if (typeof v !== 'object' || v === null || seen.has(v)) return;
  seen.add(v);
  if (Array.isArray(v)) v.forEach((x, i) => assertNoRefused(x, `${where}[${i}]`, seen));
  else if (v instanceof PyDict) for (const [k, x] of v.map) assertNoRefused(x, `${where}[${JSON.stringify(String(k))}]`, seen);
  else if (v instanceof Set) for (const x of v) assertNoRefused(x, `${where} (a set member)`, seen);
}
