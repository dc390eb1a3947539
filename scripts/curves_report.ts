// Loss curves and collapse monitors of the CIFAR-10 runs made by scripts/cifar10-curves.sh, written to
// docs/results/cifar10-first-2000-steps/ (curves.md, loss.png, rankme.png).
//   node dist/scripts/curves_report.js [runs/curves-] [ijepa,cjepa,vicreg]
import { readFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeLineChartPng } from '../src/util/plot.js';
import type { StepLog, MonitorLog } from '../src/method/trainer.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const prefix = process.argv[2] ?? 'runs/curves-';
const methods = (process.argv[3] ?? 'ijepa,cjepa,vicreg').split(',');
const out = join(ROOT, 'docs', 'results', 'cifar10-first-2000-steps');
mkdirSync(out, { recursive: true });

const runs = methods.filter((m) => existsSync(join(ROOT, `${prefix}${m}`, 'metrics.jsonl'))).map((m) => {
  const lines = readFileSync(join(ROOT, `${prefix}${m}`, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StepLog | MonitorLog);
  return { m, steps: lines.filter((l): l is StepLog => l.kind === 'step'), mons: lines.filter((l): l is MonitorLog => l.kind === 'monitor') };
});

const smooth = (ys: number[], k = 5) => ys.map((_, i) => { const s = ys.slice(Math.max(0, i - k + 1), i + 1); return s.reduce((a, b) => a + b, 0) / s.length; });
const jepaRuns = runs.filter(({ m }) => m !== 'vicreg');
await writeLineChartPng(join(out, 'loss.png'), jepaRuns.flatMap(({ m, steps }) => {
  const x = steps.map((s) => s.step);
  const series = [{ name: `${m} loss`, x, y: smooth(steps.map((s) => s.loss)) }];
  if (m === 'cjepa') series.push({ name: 'cjepa jepa term', x, y: smooth(steps.map((s) => s.terms.jepa!)) });
  return series;
}), { title: 'CIFAR-10, first steps: I-JEPA and C-JEPA loss (moving average of 5 logged points)', xLabel: 'step (batch 64)', yLabel: 'loss', logY: true });
for (const { m, steps } of runs.filter(({ m }) => m === 'vicreg')) {
  const x = steps.map((s) => s.step);
  await writeLineChartPng(join(out, 'loss-vicreg.png'), [
    { name: `${m} loss`, x, y: smooth(steps.map((s) => s.loss)) },
    ...['inv', 'var', 'cov'].map((k) => ({ name: k, x, y: smooth(steps.map((s) => s.terms[k]!)) })),
  ], { title: 'CIFAR-10, first steps: VICReg loss and its terms (unweighted)', xLabel: 'step (batch 64)', yLabel: 'value', logY: true });
}
await writeLineChartPng(join(out, 'rankme.png'), runs.map(({ m, mons }) => ({ name: m, x: mons.map((l) => l.step), y: mons.map((l) => l.rankme) })),
  { title: 'RankMe of pooled target-encoder embeddings (512 held-out images, of 192)', xLabel: 'step', yLabel: 'RankMe' });

const md = [
  '# CIFAR-10: the first 2,000 steps of each method', '',
  'CPU preset (`configs/cifar10-cpu.yaml`: ViT 192/6/3, patch 4, 32 px, predictor 96/2, unbiased masks, C-JEPA beta_vicreg 0.001 on',
  'block-pooled predictor outputs), batch 64, seed 0, the seeded 45,000/5,000 split; made with `bash scripts/cifar10-curves.sh`',
  '(the three runs shared the 2-core machine, so their images/s are lower than a lone run). A run with fewer steps done',
  'was stopped early for lack of session time (VICReg, whose step costs two full encoder passes, at step 1,000).', '',
  '| method | steps done | first loss | last loss | last RankMe | median img/s | median data wait (ms) |', '|---|---|---|---|---|---|---|',
  ...runs.map(({ m, steps, mons }) => {
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
    return `| ${m} | ${steps.at(-1)?.step ?? 0} | ${steps[0]?.loss.toFixed(4)} | ${steps.at(-1)?.loss.toFixed(4)} | ${mons.at(-1)?.rankme.toFixed(2)} | ${med(steps.map((s) => s.imgs_per_s)).toFixed(0)} | ${med(steps.map((s) => s.data_wait_ms)).toFixed(2)} |`;
  }),
  '', '![loss](loss.png)', '', '![VICReg loss](loss-vicreg.png)', '', '![RankMe](rankme.png)', '',
  '## Monitors along the way', '', '| method | step | RankMe | normalised std |', '|---|---|---|---|',
  ...runs.flatMap(({ m, mons }) => mons.map((l) => `| ${m} | ${l.step} | ${l.rankme.toFixed(2)} | ${l.std.toFixed(4)} |`)), '',
];
writeFileSync(join(out, 'curves.md'), md.join('\n'));
console.log(md.slice(5, 6 + runs.length + 2).join('\n'));
