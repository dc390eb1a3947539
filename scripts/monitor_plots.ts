// The live collapse monitors of several runs on one chart: centred RankMe and normalised std of the
// evaluated (target) encoder against images seen (steps x batch x views), from each run's metrics.jsonl.
//   node dist/scripts/monitor_plots.js <out dir> <label>=<run dir>[:<images per step>] ...
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeLineChartPng } from '../src/util/plot.js';
import type { MonitorLog } from '../src/method/trainer.js';

const [out, ...specs] = process.argv.slice(2);
if (!out || specs.length === 0) throw new Error('usage: monitor_plots <out dir> <label>=<run dir>[:<images per step>] ...');
mkdirSync(out, { recursive: true });
const runs = specs.map((s) => {
  const m = /^([^=]+)=([^:]+)(?::(\d+))?$/.exec(s);
  if (!m) throw new Error(`bad run spec '${s}' (expected label=dir[:images per step])`);
  const [, label, dir, per] = m;
  const mons = readFileSync(join(dir!, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as MonitorLog & { rankme_centred?: number })
    .filter((l) => l.kind === 'monitor');
  return { label: label!, perStep: Number(per ?? 64), mons };
});
const x = (r: (typeof runs)[number]) => r.mons.map((l) => (l.step * r.perStep) / 1000);
await writeLineChartPng(join(out, 'monitor-rankme-centred.png'), runs.map((r) => ({ name: r.label, x: x(r), y: r.mons.map((l) => l.rankme_centred ?? NaN) })),
  { title: 'Live monitor: centred RankMe of the target encoder (of 192; healthy >= 38)', xLabel: 'images seen (thousands, both views counted)', yLabel: 'centred RankMe' });
await writeLineChartPng(join(out, 'monitor-std.png'), runs.map((r) => ({ name: r.label, x: x(r), y: r.mons.map((l) => l.std) })),
  { title: 'Live monitor: normalised embedding std (healthy 1/sqrt(192) = 0.072)', xLabel: 'images seen (thousands, both views counted)', yLabel: 'std' });
console.log(`wrote ${out}/monitor-rankme-centred.png, monitor-std.png`);
