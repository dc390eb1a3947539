// Loads the libtorch addon. Thread-pool settings must be in the environment before libtorch
// (libgomp, OpenBLAS) is loaded, so they are decided here, once, before the `require`.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Measured on the 2-core target (docs/backend.md): spinning OpenMP and OpenBLAS pools fight;
// these values cut a training step ~2x. A user's own setting wins.
const THREAD_ENV: Record<string, string> = { GOMP_SPINCOUNT: '20000', OPENBLAS_THREAD_TIMEOUT: '4' };
for (const [k, v] of Object.entries(THREAD_ENV)) if (process.env[k] === undefined) process.env[k] = v;

/**
 * The OpenBLAS kernel family for a CPU with these /proc/cpuinfo flags: the best one Debian's OpenBLAS 0.3.21
 * ships that the CPU can run. OpenBLAS picks by CPU model, so a model newer than it knows (Emerald Rapids,
 * model 207) gets its generic SSE3 `Prescott` kernels: 62 GFLOP/s sgemm at 2 threads where SkylakeX's reach
 * ~300 (docs/results/performance, session 21). On CPUs it knows, this is the family it picks itself.
 */
export function openblasCoreFor(flags: ReadonlySet<string>): string | undefined {
  if (hasAvx512Core(flags)) {
    return flags.has('avx512_bf16') ? 'Cooperlake' : 'SkylakeX';
  }
  if (flags.has('avx2') && flags.has('fma')) return 'Haswell';
  return undefined;
}

/** AVX-512 F, CD, BW, DQ and VL: Skylake-SP's set, what OpenBLAS's SkylakeX and oneDNN's avx512_core kernels need. */
function hasAvx512Core(flags: ReadonlySet<string>): boolean {
  return ['avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512cd'].every((f) => flags.has(f));
}

/**
 * The library for the fp32 Linear's GEMMs (native/fused.cc Gemm32): oneDNN's sgemm where it measured faster than
 * OpenBLAS's AVX-512 kernels on the step's shapes, OpenBLAS elsewhere (not measured faster there). Intel AVX-512
 * (Emerald Rapids, session 21): 14-16 % less GEMM time, step 0.89-0.93x. AMD Zen 4 (family 25 with AVX-512,
 * session 26): 15 % less GEMM time, step 0.94x. Zen 5 (family 26) and AVX2-only CPUs keep OpenBLAS. Chosen from
 * the CPU alone, never by timing, so a resumed run computes exactly what the uninterrupted one did.
 */
export function fp32GemmFor(cpu: { vendor: string; family?: number; flags: ReadonlySet<string> }): 'dnnl' | 'openblas' {
  if (!hasAvx512Core(cpu.flags)) return 'openblas';
  return cpu.vendor === 'GenuineIntel' || (cpu.vendor === 'AuthenticAMD' && cpu.family === 25) ? 'dnnl' : 'openblas';
}

/** This CPU's vendor, family and flags from /proc/cpuinfo (empty where there is none: not Linux, or not x86). */
export function cpuInfo(): { vendor: string; family?: number; flags: Set<string> } {
  let text = '';
  try { text = readFileSync('/proc/cpuinfo', 'utf8'); } catch { /* not Linux */ }
  const field = (name: string) => {
    const line = text.split('\n').find((l) => l.split(':')[0]!.trim() === name);
    return line ? line.slice(line.indexOf(':') + 1).trim() : '';
  };
  const family = Number.parseInt(field('cpu family'), 10);
  return { vendor: field('vendor_id'), ...(Number.isFinite(family) ? { family } : {}), flags: new Set(field('flags').split(/\s+/).filter(Boolean)) };
}
/** This CPU's flags from /proc/cpuinfo. */
export function cpuFlags(): Set<string> {
  return cpuInfo().flags;
}

const CPU = cpuInfo();  // read once: both choices below come from it
/** Who chose OpenBLAS's kernel family: the user's OPENBLAS_CORETYPE, cjepa (from the CPU flags), or OpenBLAS. */
export let blasCoreChosenBy: 'user' | 'cjepa' | 'openblas' = process.env.OPENBLAS_CORETYPE ? 'user' : 'openblas';
// Read by OpenBLAS when libtorch loads it, so set before the `require`; a user's own setting wins.
if (blasCoreChosenBy === 'openblas' && process.arch === 'x64') {
  const core = openblasCoreFor(CPU.flags);
  if (core) { process.env.OPENBLAS_CORETYPE = core; blasCoreChosenBy = 'cjepa'; }
}
const FP32_GEMMS = ['dnnl', 'openblas'];
if (process.env.CJEPA_FP32_GEMM === undefined) {
  if (process.arch === 'x64') process.env.CJEPA_FP32_GEMM = fp32GemmFor(CPU);
} else if (!FP32_GEMMS.includes(process.env.CJEPA_FP32_GEMM)) {
  throw new Error(`cjepa: CJEPA_FP32_GEMM must be one of ${FP32_GEMMS.join(', ')}, got '${process.env.CJEPA_FP32_GEMM}'`);
}

function findAddon(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(dir, 'build', 'Release', 'cjepa_native.node');
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  throw new Error('cjepa: native addon not built (build/Release/cjepa_native.node missing). Run `npm run build:native`; ' +
    'it needs libtorch (apt-get install -y libtorch-dev, or LIBTORCH=<dir>).');
}

/** Opaque handle to a native tensor. */
export type Handle = { readonly __nativeTensor: unique symbol };
/** Opaque handle to a native random generator. */
export type GenHandle = { readonly __nativeGenerator: unique symbol };

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const native: any = createRequire(import.meta.url)(findAddon());
