// The child side of the reliability fuzz (test/reliability.test.ts): bad calls into the binding, the
// safetensors reader and the checkpoint reader, run in a child process so that an abort (SIGFPE,
// SIGSEGV, a C++ terminate) is counted by the parent instead of killing the test runner. Before each
// call the case number goes to stderr, so the parent knows where a child died and resumes after it.
// Usage: node fuzz_child.js <binding|readers> <seed> <first case> <number of cases> <scratch dir>
// stdout (last line): {"calls": n, "threw": n, "returned": n, "bad": ["case: why", ...]}
import { writeSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type * as TensorModule from '../../src/tensor/index.js';
import { encodeSafetensors, decodeSafetensors, readSafetensorsFileSync, SafetensorsError } from '../../src/io/safetensors.js';

// loaded only in the modes that use them (the self-test starts in a fraction of the time)
let T!: typeof TensorModule;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
let native: any;
let loadTensors: typeof import('../../src/io/tensors.js').loadTensors;
let readCheckpointState: typeof import('../../src/method/checkpoint.js').readCheckpointState;
let checkpointProblem: typeof import('../../src/method/checkpoint.js').checkpointProblem;

/** mulberry32: a small seeded PRNG, so every run tries the same cases. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Case = { name: string; run: () => unknown; check?: (e: unknown) => string | undefined };

// ------------------------------------------------------------------ the binding

/** Native functions left out: none abort, but these change process-wide state the other cases rely on. */
const SKIP = new Set(['setNumThreads', 'manualSeed', 'setGradEnabled']);

function bindingCases(rand: () => number, count: number): Case[] {
  let pool: unknown[] = [];
  let made: TensorModule.Tensor[] = [];
  const fresh = (): void => { // new tensors every few calls: in-place ops and dispose change them
    made.forEach((t) => t.dispose());
    const dead = T.ones([2]);
    dead.dispose();
    made = [
      T.randn([2, 3], { generator: new T.Generator(1) }), T.tensor(1.5), T.zeros([0]), T.ones([1, 2, 4, 4]),
      T.tensor(new Int32Array([-(2 ** 31), -1, 0, 7])), T.tensor(new BigInt64Array([-(2n ** 63n), -1n, 0n, 7n])),
      T.tensor(new Int8Array([-128, -1])), T.tensor(new Uint8Array([0, 255])), T.tensor([1, 0], { dtype: 'bool' }),
      T.full([2, 2], NaN), T.tensor(new Int32Array([-1])), T.tensor(new Int32Array([0])),
    ];
    // the first entries are plausible arguments (tensors, small and extreme integers, shapes), so many calls
    // get past argument decoding into libtorch; the rest are wrong in kind
    pool = [...made, ...made, 0, 1, 2, -1, -(2 ** 31), 2 ** 53, -(2 ** 63), [0], [1, 2], [-1], [2 ** 62, 4], null, 'mean', dead, dead.h, new T.Generator(2).h, null, undefined, NaN, Infinity, -Infinity, -1, 0, 1, 2, 3, 0.5,
      2 ** 53, -(2 ** 63), 1e300, -(2 ** 31), '', 'x', 'cpu:1', 'cuda', 'meta', 'mean', 'tanh', true, false, {}, [], [null], [-1],
      [0], [2, 3], [3, -2], [2 ** 62, 4], [NaN], ['a'], [1.5], new Float32Array(6), new Uint8Array(3), 1n, () => 0, Symbol('s')];
  };
  const fns = Object.keys(native).filter((k) => typeof native[k] === 'function' && !SKIP.has(k)).sort();
  const cases: Case[] = [];
  // integer division and remainder by -1 and 0 in every integer dtype, both operand kinds
  for (const dt of ['int8', 'uint8', 'int16', 'int32', 'int64'] as const) {
    for (const d of [-1, 0]) {
      const x = () => T.full([3], dt === 'uint8' ? 0 : -(2 ** 62), { dtype: 'int64' }).to(dt);
      cases.push({ name: `remainder ${dt} by ${d} (number)`, run: () => x().remainder(d) });
      cases.push({ name: `remainder ${dt} by ${d} (tensor)`, run: () => x().remainder(T.full([3], d, { dtype: 'int64' }).to(dt)) });
      cases.push({ name: `div ${dt} by ${d}`, run: () => x().div(d) });
      cases.push({ name: `div_ ${dt} by ${d}`, run: () => x().div_(d) });
    }
  }
  // every op on integer tensors holding the minimum value, with -1 and 0 as second operand (number and
  // tensor) and as third: the hazard class of INT_MIN % -1 (a trapping hardware divide)
  const ints = (dt: 'int8' | 'int32' | 'int64', v: number) => T.full([2], v, { dtype: 'int64' }).to(dt);
  for (const fn of fns) {
    for (const dt of ['int8', 'int32', 'int64'] as const) {
      for (const second of [undefined, -1, 0, 'tensor -1', 'tensor 0'] as const) {
        cases.push({
          name: `${fn}(${dt} min, ${String(second)})`,
          run: () => T.tidy(() => {
            const x = ints(dt, dt === 'int8' ? -128 : dt === 'int32' ? -(2 ** 31) : -(2 ** 62) * 2);
            const y = typeof second === 'string' ? ints(dt, second.endsWith('-1') ? -1 : 0).h : second;
            return native[fn](x.h, y, typeof y === 'number' ? y : -1);
          }),
        });
      }
    }
  }
  fresh();
  const MADE = made.length, POOL = pool.length, PLAUSIBLE = 2 * MADE + 13;
  while (cases.length < count) {
    // every choice is made here, not when the case runs, so a restart after an abort replays the same cases
    const fn = fns[cases.length % fns.length]!;
    const refresh = rand() < 0.05;
    const picks = Array.from({ length: Math.floor(rand() * 7) }, (_, i) => (i === 0 && rand() < 0.6 ? -1 - Math.floor(rand() * MADE)
      : Math.floor(rand() * (rand() < 0.6 ? PLAUSIBLE : POOL))));
    cases.push({
      name: `${fn}(${picks.join(', ')})`,
      run: () => {
        if (refresh) fresh();
        return native[fn](...picks.map((i) => (i < 0 ? made[-1 - i] : pool[i])));
      },
      check: (e) => (e instanceof Error && e.message.length > 0 ? undefined : `threw a non-Error ${String(e)}`),
    });
  }
  return cases;
}

// ------------------------------------------------------------------ safetensors and checkpoint readers

function header(json: string, data: Uint8Array = new Uint8Array(0)): Buffer {
  const j = Buffer.from(json, 'utf8');
  const b = Buffer.alloc(8 + j.length + data.length);
  b.writeBigUInt64LE(BigInt(j.length));
  j.copy(b, 8);
  b.set(data, 8 + j.length);
  return b;
}

const HEADERS: string[] = [
  `{"a":${'['.repeat(5000)}${']'.repeat(5000)}}`, `{"a":{"dtype":"F32","shape":${'['.repeat(200)}${']'.repeat(200)},"data_offsets":[0,0]}}`,
  '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
  '{"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}}', '{"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}',
  '{"__proto__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', '{"constructor":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
  '{"a":{"__proto__":{"dtype":"U8"},"shape":[1],"data_offsets":[0,1]}}', '{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}',
  '{"a":{"dtype":"U8","shape":[1e400],"data_offsets":[0,1]}}', '{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}',
  '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0.5,1]}}', '{"a":{"dtype":"X9","shape":[1],"data_offsets":[0,1]}}',
  '{"a":{"dtype":"U8","shape":[9007199254740993],"data_offsets":[0,1]}}', '{"__metadata__":{"k":1}}', '{"__metadata__":[]}',
  '{"\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', '[]', 'null', '7', '"s"', '{', '{"a":', '\u0000', '{"a":{}}',
  '{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}', '{"a":{"dtype":"U8","shape":{},"data_offsets":[0,1]}}',
  '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}', '{"a":null}', '{"a":[1]}', '{"a\\"":1,"a\\u0022":2}',
];

function randomJson(rand: () => number, depth: number): string {
  const r = rand();
  if (depth > 4 || r < 0.3) return JSON.stringify([0, -1, 1e300, 'F32', 'BOOL', null, true, [0, 1], [2 ** 53, 1]][Math.floor(rand() * 9)]);
  if (r < 0.5) return `[${Array.from({ length: Math.floor(rand() * 4) }, () => randomJson(rand, depth + 1)).join(',')}]`;
  const keys = ['dtype', 'shape', 'data_offsets', '__metadata__', 'a', 'b', '__proto__'];
  return `{${Array.from({ length: Math.floor(rand() * 5) }, () => `${JSON.stringify(keys[Math.floor(rand() * keys.length)])}:${randomJson(rand, depth + 1)}`).join(',')}}`;
}

function readerCases(rand: () => number, count: number, dir: string): Case[] {
  mkdirSync(dir, { recursive: true });
  const valid = encodeSafetensors({
    w: { dtype: 'F32', shape: [2, 3], data: new Uint8Array(24).fill(7) }, m: { dtype: 'BOOL', shape: [3], data: Uint8Array.from([0, 1, 1]) },
    i: { dtype: 'I64', shape: [1], data: new Uint8Array(8) }, __proto__: { dtype: 'U8', shape: [2], data: Uint8Array.from([1, 2]) } as never,
  }, { format: 'pt' });
  const validState = JSON.stringify({ step: 4, epoch: 0, stepInEpoch: 4, optimizerStep: 4, method: 'cjepa', config: { model: {} }, maskRng: [1, 2, 3, 4], torchRng: [0, 255] });
  const mutants: Array<() => Buffer | string> = [
    () => { const b = Buffer.from(valid); b[Math.floor(rand() * b.length)] ^= 1 << Math.floor(rand() * 8); return b; },
    () => Buffer.from(valid).subarray(0, Math.floor(rand() * valid.length)),
    () => { const b = Buffer.from(valid); b.writeBigUInt64LE(BigInt(Math.floor(rand() * 2 ** 52)) * BigInt(Math.floor(rand() * 4096))); return b; },
    () => header(HEADERS[Math.floor(rand() * HEADERS.length)]!, Uint8Array.from([2, 1, 0])),
    () => header(randomJson(rand, 0), new Uint8Array(Math.floor(rand() * 16))),
    () => { const s = validState; const cut = Math.floor(rand() * s.length); return `state:${s.slice(0, cut)}`; },
    () => {
      const st = JSON.parse(validState) as Record<string, unknown>;
      const key = ['step', 'epoch', 'stepInEpoch', 'optimizerStep', 'method', 'config', 'maskRng', 'torchRng', 'files'][Math.floor(rand() * 9)]!;
      st[key] = ['abc', 1e18, -1, 1.5, null, [], {}, [256], [-1], { 'x.safetensors': { bytes: 1, sha256: 'zz' } }, 2 ** 53][Math.floor(rand() * 11)];
      return `state:${JSON.stringify(st)}`;
    },
  ];
  const cases: Case[] = [];
  for (let k = 0; k < count; k++) {
    const make = mutants[k % mutants.length]!;
    cases.push({
      name: `reader#${k}`,
      run: () => {
        const m = make();
        const sub = join(dir, `c${k}`);
        mkdirSync(sub, { recursive: true });
        if (typeof m === 'string') { // a checkpoint's state.json
          writeFileSync(join(sub, 'state.json'), m.slice('state:'.length));
          const problem = checkpointProblem(sub); // never throws: a message or undefined
          if (problem !== undefined && typeof problem !== 'string') throw new Error('checkpointProblem returned a non-string');
          try {
            return readCheckpointState(sub);
          } catch (e) {
            if (!(e as Error).message.includes(join(sub, 'state.json'))) throw new Error(`error does not name state.json: ${(e as Error).message}`);
            throw e;
          }
        }
        const file = join(sub, 'x.safetensors');
        writeFileSync(file, m);
        let fileErr: unknown, bufErr: unknown;
        try { decodeSafetensors(m); } catch (e) { bufErr = e; }
        try {
          const { tensors } = loadTensors(file);
          Object.values(tensors).forEach((t) => t.dispose());
          readSafetensorsFileSync(file);
        } catch (e) { fileErr = e; }
        if ((bufErr === undefined) !== (fileErr === undefined)) throw new Error(`buffer and file readers disagree: ${String(bufErr ?? fileErr)}`);
        if (bufErr !== undefined && !(bufErr instanceof SafetensorsError)) throw new Error(`decodeSafetensors threw ${String(bufErr)}`);
        if (fileErr !== undefined) {
          if (!(fileErr instanceof SafetensorsError) || !fileErr.message.includes(file)) throw new Error(`file reader threw ${String(fileErr)} (not a SafetensorsError naming the file)`);
          throw fileErr;
        }
        return undefined;
      },
      check: (e) => (e instanceof SafetensorsError || /state\.json/.test((e as Error).message) && !/does not name|disagree|threw /.test((e as Error).message)
        ? undefined : String((e as Error).message ?? e)),
    });
  }
  return cases;
}

// ------------------------------------------------------------------ driver

const [mode, seedArg, firstArg, countArg, dir] = process.argv.slice(2);
if (mode !== undefined) {
  if (mode !== 'selftest') {
    T = await import('../../src/tensor/index.js');
    native = (await import('../../src/tensor/native.js')).native;
    loadTensors = (await import('../../src/io/tensors.js')).loadTensors;
    ({ readCheckpointState, checkpointProblem } = await import('../../src/method/checkpoint.js'));
  }
  const rand = prng(Number(seedArg));
  const first = Number(firstArg), total = Number(countArg);
  const selftest: Case[] = Array.from({ length: total }, (_, k) => ({ // case 2 dies as INT_MIN % -1 used to
    name: `selftest#${k}`, run: () => (k === 2 ? process.kill(process.pid, 'SIGFPE') : k),
  }));
  const cases = mode === 'binding' ? bindingCases(rand, total) : mode === 'readers' ? readerCases(rand, total, dir!) : selftest;
  const summary = { calls: 0, threw: 0, returned: 0, bad: [] as string[] };
  const gradWas = T?.isGradEnabled();
  for (let k = first; k < cases.length; k++) {
    writeSync(2, `${k}\n`);
    const c = cases[k]!;
    summary.calls++;
    try {
      c.run();
      summary.returned++;
    } catch (e) {
      summary.threw++;
      const why = c.check?.(e);
      if (why) summary.bad.push(`${c.name}: ${why}`);
    }
    native?.setGradEnabled(gradWas);
  }
  process.stdout.write(JSON.stringify(summary) + '\n');
}
