// Data pipeline throughput: decode + augment CIFAR-10 JPEGs at 32 px, and upscaled JPEGs at 224 px,
// with 1 and 2 workers, against PyTorch's DataLoader + torchvision on the same files in the same run.
//
//   node dist/bench/data_pipeline.js [--images 3000] [--big 400] [--batch 64] [--data /work/shared/data/cifar10/train]
//
// Images/s = images of one epoch / its wall time, worker start-up included, for us and for PyTorch.
// "cold" decodes every image (as PyTorch does every epoch); "warm" is our decode-once cache (2nd epoch).

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { type Dataset, DataLoader, SubsetDataset, type ViewSpec, ijepaTransform, openDataset, vicregViews } from '../src/data/index.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

const DATA = arg('data', '/work/shared/data/cifar10/train');
const NSMALL = Number(arg('images', '3000'));
const NBIG = Number(arg('big', '400'));
const BATCH = Number(arg('batch', '64'));
const PY = '/usr/bin/python3';
const TORCH_SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../bench/data_pipeline_torch.py');

/** An evenly class-balanced subset: the first k/classes images of every class. */
function balancedSubset(ds: Dataset, k: number): SubsetDataset {
  const per = Math.ceil(k / Math.max(1, ds.numClasses));
  const taken = new Map<number, number>();
  const idx: number[] = [];
  for (let i = 0; i < ds.length && idx.length < k; i++) {
    const l = ds.labelOf(i);
    if ((taken.get(l) ?? 0) < per) {
      taken.set(l, (taken.get(l) ?? 0) + 1);
      idx.push(i);
    }
  }
  return new SubsetDataset(ds, Int32Array.from(idx));
}

/** Upscale some CIFAR images to 256x256 JPEGs once (reused across runs). */
async function makeBig(src: SubsetDataset, n: number): Promise<string> {
  const dir = join(tmpdir(), `cjepa-bench-256-${n}`);
  const count = (): number => (existsSync(dir) ? readdirSync(dir, { recursive: true }).filter((f) => String(f).endsWith('.jpg')).length : 0);
  if (count() === n) return dir;
  for (let i = 0; i < n; i++) {
    const d = join(dir, `c${src.labelOf(i)}`);
    mkdirSync(d, { recursive: true });
    await sharp(src.paths![i]!).resize(256, 256, { kernel: 'lanczos3' }).jpeg({ quality: 90 }).toFile(join(d, `${i}.jpg`));
  }
  return dir;
}

async function ours(ds: Dataset, views: ViewSpec[], workers: number, epochs = 1): Promise<number> {
  const loader = new DataLoader(ds, { batchSize: BATCH, views, workers, seed: 0, norm: 'imagenet' });
  let ips = 0;
  try {
    for (let e = 0; e < epochs; e++) {
      let n = 0;
      const t0 = performance.now();
      for await (const b of loader.epoch(e)) n += b.shape[0];
      ips = n / ((performance.now() - t0) / 1000);
    }
  } finally {
    await loader.close();
  }
  return ips;
}

interface Run {
  name: string;
  files: 'small' | 'big';
  size: number;
  views: 'vicreg' | 'ijepa';
  workers: number;
}

/** The PyTorch side: one long-lived /usr/bin/python3 process answering one run per line. */
class TorchBaseline {
  private readonly proc: ChildProcessWithoutNullStreams;
  private buf = '';
  private waiting: { resolve: (line: string) => void; reject: (e: Error) => void } | null = null;
  private stderr = '';
  readonly ready: Promise<void>;

  constructor(filesPath: string) {
    this.proc = spawn(PY, [TORCH_SCRIPT, filesPath]);
    this.proc.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.proc.on('exit', (code) => this.waiting?.reject(new Error(`PyTorch baseline exited (${code}):\n${this.stderr}`)));
    this.proc.stdout.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiting;
        this.waiting = null;
        w?.resolve(line);
      }
    });
    this.ready = this.next().then(() => undefined);
  }

  private next(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  async run(cfg: object): Promise<number> {
    const p = this.next();
    this.proc.stdin.write(JSON.stringify(cfg) + '\n');
    return (JSON.parse(await p) as { images_per_s: number }).images_per_s;
  }

  close(): void {
    this.proc.stdin.end();
    this.proc.kill();
  }
}

async function main(): Promise<void> {
  console.log(`data pipeline bench: ${availableParallelism()} cores, batch ${BATCH}, ${NSMALL} CIFAR JPEGs at 32 px, ${NBIG} 256x256 JPEGs at 224 px`);
  const cold = balancedSubset(await openDataset(`folder:${DATA}`, { cache: 'none' }), NSMALL);
  const warmBase = await openDataset(`folder:${DATA}`, { cache: 'memory' });
  const warm = new SubsetDataset(warmBase, cold.indices);
  const bigDir = await makeBig(cold, NBIG);
  const big = await openDataset(`folder:${bigDir}`, { cache: 'none' });

  const runs: Run[] = [];
  for (const workers of [1, 2]) {
    runs.push({ name: `32px vicreg x2 w${workers}`, files: 'small', size: 32, views: 'vicreg', workers });
    runs.push({ name: `32px ijepa w${workers}`, files: 'small', size: 32, views: 'ijepa', workers });
    runs.push({ name: `224px vicreg x2 w${workers}`, files: 'big', size: 224, views: 'vicreg', workers });
    runs.push({ name: `224px ijepa w${workers}`, files: 'big', size: 224, views: 'ijepa', workers });
  }
  const viewsOf = (r: Run): ViewSpec[] => (r.views === 'vicreg' ? vicregViews({ size: r.size }) : [ijepaTransform({ size: r.size })]);

  // PyTorch on the same files, same workers, same batch size, in a persistent process so that its
  // runs interleave with ours (the machine's load changes over time).
  const filesPath = join(tmpdir(), `cjepa-bench-files-${process.pid}.json`);
  writeFileSync(filesPath, JSON.stringify({ small: cold.paths, big: big.paths }));
  const torch = new TorchBaseline(filesPath);
  const sigma = (s: number): number[] => [(0.1 * s) / 224, (2.0 * s) / 224];
  const mine: number[] = [];
  const torchIps: number[] = [];
  try {
    await torch.ready;
    for (const r of runs) {
      mine.push(await ours(r.files === 'small' ? cold : big, viewsOf(r), r.workers));
      torchIps.push(await torch.run({ files: r.files, size: r.size, views: r.views, workers: r.workers, batch: BATCH, sigma: sigma(r.size) }));
      console.log(`  ${r.name}: ours ${mine[mine.length - 1]!.toFixed(0)}, torch ${torchIps[torchIps.length - 1]!.toFixed(0)} img/s`);
    }
  } finally {
    torch.close();
    rmSync(filesPath, { force: true });
  }
  const warmRuns = [1, 2].map((w) => ({ name: `32px vicreg x2 w${w} (warm cache)`, workers: w }));
  const warmIps: number[] = [];
  for (const r of warmRuns) warmIps.push(await ours(warm, vicregViews({ size: 32 }), r.workers, 2));

  const pad = (s: string, n: number): string => s.padEnd(n);
  console.log(`${pad('config', 34)}${pad('ours img/s', 12)}${pad('torch img/s', 13)}ratio`);
  runs.forEach((r, i) => {
    console.log(`${pad(r.name, 34)}${pad(mine[i]!.toFixed(0), 12)}${pad(torchIps[i]!.toFixed(0), 13)}${(mine[i]! / torchIps[i]!).toFixed(2)}x`);
  });
  warmRuns.forEach((r, i) => {
    const t = torchIps[runs.findIndex((x) => x.size === 32 && x.views === 'vicreg' && x.workers === r.workers)]!;
    console.log(`${pad(r.name, 34)}${pad(warmIps[i]!.toFixed(0), 12)}${pad(t.toFixed(0), 13)}${(warmIps[i]! / t).toFixed(2)}x`);
  });
  const need = 900; // 3x the trainer's ~300 images/s at 32 px
  const w1 = mine[runs.findIndex((r) => r.size === 32 && r.views === 'vicreg' && r.workers === 1)]!;
  console.log(`32 px VICReg pair, 1 worker, cold: ${w1.toFixed(0)} img/s (target >= ${need}: ${w1 >= need ? 'ok' : 'BELOW'})`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
