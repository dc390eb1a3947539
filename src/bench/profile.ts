// Op-level profiles of a bench step: both sides record libtorch's own op profiler (cjepa through
// native/profiler.cc, PyTorch through torch.autograd.profiler) into Chrome traces, and this file
// turns a trace into self time per ATen op, so the two steps can be compared op by op.
import { readFileSync } from 'node:fs';

export interface OpTime { name: string; selfMs: number; calls: number }

interface TraceEvent { name?: string; ph?: string; ts?: number | string; dur?: number | string; tid?: number | string; pid?: number | string }

/**
 * Self time (total minus the time of ops nested inside it on the same thread) per op name, in ms per
 * profiled step, largest first. Reads 'X' (complete) events of a Chrome trace.
 */
export function opSelfTimes(tracePath: string, steps: number): OpTime[] {
  const raw = JSON.parse(readFileSync(tracePath, 'utf8')) as TraceEvent[] | { traceEvents: TraceEvent[] };
  const events = (Array.isArray(raw) ? raw : raw.traceEvents).filter((e) => e.ph === 'X' && e.name !== undefined);
  const byThread = new Map<string, { name: string; ts: number; end: number }[]>();
  for (const e of events) {
    const key = `${e.pid ?? 0}/${e.tid ?? 0}`;
    const ts = Number(e.ts), dur = Number(e.dur);
    if (!Number.isFinite(ts) || !Number.isFinite(dur)) continue;
    if (!byThread.has(key)) byThread.set(key, []);
    byThread.get(key)!.push({ name: e.name!, ts, end: ts + dur });
  }
  const self = new Map<string, OpTime>();
  for (const list of byThread.values()) {
    list.sort((a, b) => a.ts - b.ts || b.end - a.end); // parents (longer) before children at the same start
    const stack: { name: string; end: number; child: number; dur: number }[] = [];
    const close = () => {
      const top = stack.pop()!;
      const o = self.get(top.name) ?? { name: top.name, selfMs: 0, calls: 0 };
      o.selfMs += (top.dur - top.child) / 1000; o.calls++;
      self.set(top.name, o);
      if (stack.length) stack[stack.length - 1]!.child += top.dur;
    };
    for (const e of list) {
      while (stack.length && stack[stack.length - 1]!.end <= e.ts) close();
      stack.push({ name: e.name, end: e.end, child: 0, dur: e.end - e.ts });
    }
    while (stack.length) close();
  }
  return [...self.values()].map((o) => ({ ...o, selfMs: o.selfMs / steps, calls: o.calls / steps })).sort((a, b) => b.selfMs - a.selfMs);
}

/** Both sides' top ops, one line each: name, ms/step and calls/step for cjepa and for PyTorch. */
export function formatProfiles(title: string, ours: OpTime[], theirs: OpTime[] | null, top = 25): string {
  const t = new Map((theirs ?? []).map((o) => [o.name, o]));
  const o = new Map(ours.map((x) => [x.name, x]));
  const names = [...new Set([...ours.slice(0, top), ...(theirs ?? []).slice(0, top)].map((x) => x.name))];
  names.sort((a, b) => Math.max(o.get(b)?.selfMs ?? 0, t.get(b)?.selfMs ?? 0) - Math.max(o.get(a)?.selfMs ?? 0, t.get(a)?.selfMs ?? 0));
  const sum = (xs: OpTime[]) => xs.reduce((s, x) => s + x.selfMs, 0);
  const rows = [['op (self time per step)', 'cjepa ms', 'calls', theirs ? 'PyTorch ms' : '', theirs ? 'calls' : '']];
  for (const n of names) {
    const a = o.get(n), b = t.get(n);
    rows.push([n, a ? a.selfMs.toFixed(1) : '-', a ? a.calls.toFixed(0) : '-', theirs ? (b ? b.selfMs.toFixed(1) : '-') : '', theirs ? (b ? b.calls.toFixed(0) : '-') : '']);
  }
  rows.push(['all ops', sum(ours).toFixed(1), '', theirs ? sum(theirs).toFixed(1) : '', '']);
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return [title, ...rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ').trimEnd())].join('\n');
}
