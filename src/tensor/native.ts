// Loads the libtorch addon. Thread-pool settings must be in the environment before libtorch
// (libgomp, OpenBLAS) is loaded, so they are decided here, once, before the `require`.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Measured on the 2-core target (docs/backend.md): spinning OpenMP and OpenBLAS pools fight;
// these values cut a training step ~2x. A user's own setting wins.
const THREAD_ENV: Record<string, string> = { GOMP_SPINCOUNT: '20000', OPENBLAS_THREAD_TIMEOUT: '4' };
for (const [k, v] of Object.entries(THREAD_ENV)) if (process.env[k] === undefined) process.env[k] = v;

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
