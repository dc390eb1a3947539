// The live collapse monitors of several runs on one chart: centred RankMe and normalised std of the
// evaluated (target) encoder against images seen (steps x batch x views), from each run's metrics.jsonl,
// and, where the run has reproduce's evaluations (eval.json), k-NN@20 of the target and online encoders.
//   node dist/scripts/monitor_plots.js [--until=<step>] <out dir> <label>=<run dir>[:<images per step>] ...
// --until drops monitor lines and evaluations after that step (runs of different lengths on one x range).
import { readFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeLineChartPng } from '../src/util/plot.js';
import { readFloorsFile } from './floors_file.js';
import type { MonitorLog } from '../src/method/trainer.js';

const args = process.argv.slice(2);
const until = args[0]?.startsWith('--until=') ? Number(args.shift()!.slice('--until='.length)) : Infinity;
if (!(until > 0)) throw new Error('--until=<step> needs a step > 0');
const [out, ...specs] = args;
if (!out || specs.length === 0) throw new Error('usage: monitor_plots <out dir> <label>=<run dir>[:<images per step>] ...');
mkdirSync(out, { recursive: true });
const runs = specs.map((s) => {
  const m = /^([^=]+)=([^:]+)(?::(\d+))?$/.exec(s);
  if (!m) throw new Error(`bad run spec '${s}' (expected label=dir[:images per step])`);
  const [, label, dir, per] = m;
  const mons = readFileSync(join(dir!, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as MonitorLog & { rankme_centred?: number })
    .filter((l) => l.kind === 'monitor' && l.step <= until);
  // reproduce's cached evaluations: { key: { run, step, knn20, ... } }, online rows named '<run>/online'
  const evalFile = join(dir!, 'eval.json');
  const evals = (existsSync(evalFile) ? Object.values(JSON.parse(readFileSync(evalFile, 'utf8')) as Record<string, { run: string; step: number; knn20: number }>) : [])
    .filter((e) => e.step <= until);
  return { label: label!, dir: dir!, perStep: Number(per ?? 64), mons, evals };
});
const x = (r: (typeof runs)[number]) => r.mons.map((l) => (l.step * r.perStep) / 1000);
await writeLineChartPng(join(out, 'monitor-rankme-centred.png'), runs.map((r) => ({ name: r.label, x: x(r), y: r.mons.map((l) => l.rankme_centred ?? NaN) })),
  { title: 'Live monitor: centred RankMe of the target encoder (of 192; healthy >= 38)', xLabel: 'images seen (thousands, both views counted)', yLabel: 'centred RankMe' });
await writeLineChartPng(join(out, 'monitor-std.png'), runs.map((r) => ({ name: r.label, x: x(r), y: r.mons.map((l) => l.std) })),
  { title: 'Live monitor: normalised embedding std (healthy 1/sqrt(192) = 0.072)', xLabel: 'images seen (thousands, both views counted)', yLabel: 'std' });
const knnSeries = runs.flatMap((r) => (['target', 'online'] as const).map((which) => {
  const rows = r.evals.filter((e) => e.run.endsWith('/online') === (which === 'online')).sort((a, b) => a.step - b.step);
  return { name: `${r.label} (${which})`, x: rows.map((e) => (e.step * r.perStep) / 1000), y: rows.map((e) => 100 * e.knn20) };
})).filter((s) => s.x.length > 0);
// the raw-pixel floor of reproduce (<runs dir>/floors.json next to the first run, its data and seed), as a flat line
const first = runs[0]!;
const cfgFile = join(first.dir, 'config.json');
const cfg = existsSync(cfgFile) ? (JSON.parse(readFileSync(cfgFile, 'utf8')) as { data?: string; seed?: number }) : {};
const floors = readFloorsFile<{ run: string; knn20: number }>(join(first.dir, '..', 'floors.json'));
const floorKey = Object.keys(floors).find((k) => k.startsWith(`${cfg.data}|`) && k.endsWith(`|seed ${cfg.seed}`)) ?? Object.keys(floors)[0];
const raw = floorKey === undefined ? undefined : floors[floorKey]!.find((f) => f.run === 'raw pixels');
const xMax = Math.max(0, ...knnSeries.flatMap((s) => s.x));
if (raw && knnSeries.length > 0) knnSeries.push({ name: 'raw pixels (floor)', x: [0, xMax], y: [100 * raw.knn20, 100 * raw.knn20] });
if (knnSeries.length > 0) {
  await writeLineChartPng(join(out, 'knn.png'), knnSeries,
    { title: 'k-NN@20 on the 5,000-image validation split (10,000-image bank)', xLabel: 'images seen (thousands, both views counted)', yLabel: 'k-NN@20 (%)' });
}
console.log(`wrote ${out}/monitor-rankme-centred.png, monitor-std.png${knnSeries.length > 0 ? ', knn.png' : ''}`);
