// Where cjepa keeps what it downloads and derives (datasets fetched by name, folder file lists).

import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** `$CJEPA_DATA`, else `$XDG_CACHE_HOME/cjepa`, else `~/.cache/cjepa` (read at each call). */
export function dataCacheDir(): string {
  const env = process.env;
  if (env['CJEPA_DATA']) return resolve(env['CJEPA_DATA']);
  if (env['XDG_CACHE_HOME']) return resolve(env['XDG_CACHE_HOME'], 'cjepa');
  return join(homedir(), '.cache', 'cjepa');
}
