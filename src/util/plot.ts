// Line charts as SVG, rendered to PNG by sharp (libvips + librsvg): plots for people, no plotting stack.
// Axes are labelled with plain numbers (log-scale axes at 1, 10, 100 / 0.1, 0.01 ...), the legend sits
// in its own column right of the plot (never over the curves), and each series has its own colour
// (and, past the palette, its own dash pattern).
import sharp from 'sharp';

export interface Series { name: string; x: number[]; y: number[] }

export interface ChartOptions { title: string; xLabel: string; yLabel: string; logY?: boolean; width?: number; height?: number }

/** Tableau's 10 colours, in its order (distinct for the usual colour-vision deficiencies in the first few). */
export const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const DASHES = ['', '6 3', '2 3', '8 3 2 3'];

/** Colour and dash pattern of series i: no two series of one chart look alike (up to 40 of them). */
export function seriesStyle(i: number): { color: string; dash: string } {
  return { color: COLORS[i % COLORS.length]!, dash: DASHES[Math.floor(i / COLORS.length) % DASHES.length]! };
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** About n round ticks (1, 2, 5 x 10^k steps) within [lo, hi]. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12 * Math.abs(hi); v += step) out.push(+v.toPrecision(12));
  return out;
}

/**
 * Ticks of a log axis spanning [10^lo, 10^hi] (values, not exponents): the powers of ten inside, with
 * 2 and 5 times them when fewer than three fit (a narrow range), thinned to at most 8.
 */
export function logTicks(lo: number, hi: number): number[] {
  const inRange = (v: number) => Math.log10(v) >= lo - 1e-9 && Math.log10(v) <= hi + 1e-9;
  const decades: number[] = [];
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) decades.push(e);
  let ticks = decades.map((e) => +(10 ** e).toPrecision(12)).filter(inRange);
  if (ticks.length < 3) ticks = decades.flatMap((e) => [1, 2, 5].map((m) => +(m * 10 ** e).toPrecision(12))).filter(inRange);
  if (ticks.length < 2) return niceTicks(10 ** lo, 10 ** hi, 4).filter((v) => v > 0);
  const every = Math.ceil(ticks.length / 8);
  return ticks.filter((_, i) => i % every === 0);
}

/** A tick label: a plain number (0.001, 25, 1500, 20000); exponents only far out (1e-6, 2e+9). */
export function tickLabel(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e7)) return v.toExponential().replace(/\.?0+e/, 'e');
  return String(+v.toPrecision(6));
}

/** An SVG line chart of several series. `logY` plots y on a log scale (positive values only). */
export function lineChartSvg(series: Series[], o: ChartOptions): string {
  const legendW = Math.min(220, 40 + 7 * Math.max(8, ...series.map((s) => s.name.length)));
  const W = o.width ?? 800 + legendW, H = o.height ?? 480, L = 70, R = legendW + 10, T = 40, B = 50;
  const tf = (y: number) => (o.logY ? (y > 0 ? Math.log10(y) : NaN) : y);
  const pts = series.map((s) => s.x.map((x, i) => [x, tf(s.y[i]!)] as [number, number]).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const xs = pts.flat().map((p) => p[0]), ys = pts.flat().map((p) => p[1]);
  const x0 = Math.min(...xs, 0), x1 = Math.max(...xs, 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (!Number.isFinite(y0)) { y0 = 0; y1 = 1; }
  if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
  if (o.logY) { y0 = Math.floor(y0 * 10) / 10; y1 = Math.ceil(y1 * 10) / 10; }
  const px = (x: number) => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (y: number) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${(L + W - R) / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
    `<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text x="16" y="${H / 2}" text-anchor="middle" transform="rotate(-90 16 ${H / 2})">${esc(o.yLabel)}${o.logY ? ' (log scale)' : ''}</text>`];
  const yTicks = o.logY ? logTicks(y0, y1).map((v) => [Math.log10(v), v] as const) : niceTicks(y0, y1).map((v) => [v, v] as const);
  for (const [t, v] of yTicks) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${py(t)}" y2="${py(t)}" stroke="#ddd"/>`, `<text x="${L - 6}" y="${py(t) + 4}" text-anchor="end">${tickLabel(v)}</text>`);
  }
  for (const t of niceTicks(x0, x1)) parts.push(`<text x="${px(t)}" y="${H - B + 16}" text-anchor="middle">${tickLabel(t)}</text>`);
  parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#333"/>`);
  const lx = W - R + 14;
  pts.forEach((p, i) => {
    const { color, dash } = seriesStyle(i);
    const d = dash ? ` stroke-dasharray="${dash}"` : '';
    if (p.length > 0) {
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.6"${d} points="${p.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`);
    }
    const ly = T + 12 + 18 * i;
    parts.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2.5"${d}/>`,
      `<text x="${lx + 28}" y="${ly}">${esc(series[i]!.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export async function writeLineChartPng(path: string, series: Series[], o: ChartOptions): Promise<void> {
  await sharp(Buffer.from(lineChartSvg(series, o))).png().toFile(path);
}
