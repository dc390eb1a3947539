// Plots people can read: plain-number axes (log axes at 1, 10, 100 / 0.1, 0.01), the legend beside the
// plot (not over the curves), one look per series; and a rendered PNG.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { lineChartSvg, logTicks, tickLabel, seriesStyle, writeLineChartPng, type Series } from '../src/util/plot.js';

const dir = mkdtempSync(join(tmpdir(), 'cjepa-plot-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const x = Array.from({ length: 50 }, (_, i) => (i + 1) * 20);
const LOSS: Series[] = [
  { name: 'loss', x, y: x.map((t) => 0.5 + 5 / Math.sqrt(t)) },
  { name: 'vicreg', x, y: x.map((t) => 20 + 50 / Math.sqrt(t)) },
  { name: 'cov', x, y: x.map((t) => 0.002 * t) },
];

test('log axes are labelled with plain powers of ten, narrow ranges with 1-2-5 steps', () => {
  assert.deepEqual(logTicks(-2, 1.6), [0.01, 0.1, 1, 10]);
  assert.deepEqual(logTicks(-0.31, 0.4), [0.5, 1, 2]);
  assert.deepEqual(logTicks(0, 20).length <= 8, true);
  assert.deepEqual([0.01, 0.1, 1, 10, 100, 20000, 0.001].map(tickLabel), ['0.01', '0.1', '1', '10', '100', '20000', '0.001']);
  assert.equal(tickLabel(1e-6), '1e-6');
  const svg = lineChartSvg(LOSS, { title: 't', xLabel: 'step', yLabel: 'value', logY: true });
  const labels = [...svg.matchAll(/text-anchor="end">([^<]+)</g)].map((m) => m[1]);
  assert.deepEqual(labels, ['0.1', '1', '10']); // cov from 0.04, vicreg up to 31
  assert.doesNotMatch(svg, /log10/);
  assert.match(svg, /value \(log scale\)/);
});

test('the legend sits right of the plot area and every series looks different', () => {
  const svg = lineChartSvg(LOSS, { title: 't', xLabel: 'step', yLabel: 'value' });
  const frame = /<rect x="(\d+)" y="\d+" width="(\d+)"[^>]*fill="none"/.exec(svg)!;
  const right = Number(frame[1]) + Number(frame[2]);
  const legend = [...svg.matchAll(/<text x="([\d.]+)" y="[\d.]+">(loss|vicreg|cov)</g)];
  assert.equal(legend.length, 3);
  assert.ok(legend.every((m) => Number(m[1]) > right), 'legend entries are outside the plot frame');
  const styles = Array.from({ length: 30 }, (_, i) => JSON.stringify(seriesStyle(i)));
  assert.equal(new Set(styles).size, 30, 'no two of 30 series share colour and dash');
  assert.equal(new Set(Array.from({ length: 10 }, (_, i) => seriesStyle(i).color)).size, 10, 'the first 10 differ in colour');
});

test('a chart renders to a PNG', async () => {
  const p = join(dir, 'loss.png');
  await writeLineChartPng(p, LOSS, { title: 'Training loss: loss = jepa + 0.001·vicreg', xLabel: 'step', yLabel: 'value', logY: true });
  const m = await sharp(p).metadata();
  assert.equal(m.format, 'png');
  assert.ok(m.width! > 800 && m.height === 480);
});
