// Line charts as SVG, rendered to PNG by sharp (libvips + librsvg): plots for people, no plotting stack.
import sharp from 'sharp';

export interface Series { name: string; x: number[]; y: number[] }

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(+v.toPrecision(12));
  return out;
}

function fmt(v: number): string {
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(1) : String(+v.toPrecision(4));
}

/** An SVG line chart of several series. `logY` plots log10(y) for positive values. */
export function lineChartSvg(series: Series[], o: { title: string; xLabel: string; yLabel: string; logY?: boolean; width?: number; height?: number }): string {
  const W = o.width ?? 800, H = o.height ?? 480, L = 70, R = 20, T = 40, B = 50;
  const tf = (y: number) => (o.logY ? Math.log10(Math.max(y, 1e-12)) : y);
  const pts = series.map((s) => s.x.map((x, i) => [x, tf(s.y[i]!)] as [number, number]).filter(([, y]) => Number.isFinite(y)));
  const xs = pts.flat().map((p) => p[0]), ys = pts.flat().map((p) => p[1]);
  const x0 = Math.min(...xs, 0), x1 = Math.max(...xs, 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (!Number.isFinite(y0)) { y0 = 0; y1 = 1; }
  if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
  const px = (x: number) => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (y: number) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
    `<text x="${W / 2}" y="${H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text x="16" y="${H / 2}" text-anchor="middle" transform="rotate(-90 16 ${H / 2})">${esc(o.yLabel)}${o.logY ? ' (log10)' : ''}</text>`];
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${py(t)}" y2="${py(t)}" stroke="#ddd"/>`, `<text x="${L - 6}" y="${py(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  }
  for (const t of niceTicks(x0, x1)) parts.push(`<text x="${px(t)}" y="${H - B + 16}" text-anchor="middle">${fmt(t)}</text>`);
  parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#333"/>`);
  pts.forEach((p, i) => {
    if (p.length === 0) return;
    const c = COLORS[i % COLORS.length];
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="1.6" points="${p.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`);
    parts.push(`<text x="${W - R - 8}" y="${T + 16 + 16 * i}" text-anchor="end" fill="${c}">${esc(series[i]!.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export async function writeLineChartPng(path: string, series: Series[], o: Parameters<typeof lineChartSvg>[1]): Promise<void> {
  await sharp(Buffer.from(lineChartSvg(series, o))).png().toFile(path);
}
