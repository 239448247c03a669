/**
 * The benchmark's chart, as plain SVG text from the result document:
 *
 *   1. the VM paths against the plain pod (C/A, D/A, and with the bridge
 *      bypassed Cb/A, Db/A) and against the kernel path (…/B) per metric, as
 *      bars around parity with min–max whiskers and the target line (TARGET_MIN);
 *   2. every path's medians: round-trip p50 and bulk throughput;
 *   3. per-packet cost of fixup and redirect over a pass-through program.
 */
import type { PathId } from './paths.js';
import { findRatio, METRICS, TARGET_MIN, type BenchResult, type MetricId } from './results.js';

const W = 980;
const FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"';
/** The bars of the ratio panel, in order; the first four carry the target. `light`: dark text on the bar. */
const PAIRS: Array<{ pair: [PathId, PathId]; color: string; light?: boolean; legend: string }> = [
  { pair: ['C', 'A'], color: '#1f77b4', legend: 'C/A  VM, CNI fast path + vmpeer fixup, --keep-bridge ÷ plain pod' },
  { pair: ['D', 'A'], color: '#2ca02c', legend: 'D/A  VM, vmpeer redirect, --keep-bridge ÷ plain pod' },
  { pair: ['Cb', 'A'], color: '#9ecae1', light: true, legend: 'Cb/A  C, bridge bypassed (default) ÷ plain pod' },
  { pair: ['Db', 'A'], color: '#a1d99b', light: true, legend: 'Db/A  D, bridge bypassed (default) ÷ plain pod' },
  { pair: ['C', 'B'], color: '#ff7f0e', legend: 'C/B  VM, CNI fast path + vmpeer fixup, --keep-bridge ÷ VM kernel path' },
  { pair: ['D', 'B'], color: '#9467bd', legend: 'D/B  VM, vmpeer redirect, --keep-bridge ÷ VM kernel path' },
  { pair: ['Cb', 'B'], color: '#fdd0a2', light: true, legend: 'Cb/B  C, bridge bypassed (default) ÷ VM kernel path' },
  { pair: ['Db', 'B'], color: '#dadaeb', light: true, legend: 'Db/B  D, bridge bypassed (default) ÷ VM kernel path' },
];

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');

function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${f(x)}" y="${f(y)}" ${attrs}>${esc(s)}</text>`;
}

function ratioPanel(r: BenchResult, top: number): { svg: string[]; height: number } {
  const out: string[] = [];
  // the pairs this run measured (an older result document may lack the bypass paths)
  const pairs = PAIRS.filter((p) => p.pair.every((id) => r.paths.some((x) => x.id === id)));
  const targeted = pairs.filter((p) => p.pair[1] === 'A').length;
  const left = 70;
  const right = W - 30;
  const plotTop = top + 46;
  const plotBottom = plotTop + 224;
  // below the plot: group labels, then the legend, two pairs per line
  const h = plotBottom - top + 40 + Math.ceil(pairs.length / 2) * 17;
  const groups: Array<{ metric: MetricId; label: string }> = [
    { metric: 'rrRate', label: 'request/response rate' },
    { metric: 'throughputGbps', label: 'bulk throughput' },
    { metric: 'rrP50Us', label: 'round-trip latency p50 (inverted)' },
  ];
  // "higher is better" for every bar: latency ratios are shown as den/num
  const bars = groups.map((g) =>
    pairs.map(({ pair: [a, b], color, light }) => {
      const x = findRatio([...r.ratios, ...r.diagnostics], a, b, g.metric);
      const inv = METRICS[g.metric].better === 'lower';
      const t = (v: number) => (inv ? 1 / v : v);
      return x
        ? { key: `${a}/${b}`, color, light, v: t(x.paired.median), lo: Math.min(t(x.paired.min), t(x.paired.max)), hi: Math.max(t(x.paired.min), t(x.paired.max)) }
        : { key: `${a}/${b}`, color, light, v: NaN, lo: NaN, hi: NaN };
    }),
  );
  // the axis follows the bars (clamped to 0.5–1.5); whiskers beyond it are cut at the edge and marked
  const all = bars.flat().flatMap((b) => [b.lo, b.hi, b.v]).filter(Number.isFinite);
  const lo = Math.max(0.5, Math.min(0.8, Math.floor((Math.min(...all, 1) - 0.03) * 20) / 20));
  const hi = Math.min(1.5, Math.max(1.1, Math.ceil((Math.max(...all, 1) + 0.03) * 20) / 20));
  const step = hi - lo > 0.6 ? 0.1 : 0.05;
  const clamp = (v: number) => Math.min(hi, Math.max(lo, v));
  const y = (v: number) => plotBottom - ((clamp(v) - lo) / (hi - lo)) * (plotBottom - plotTop);

  out.push(text(left - 50, top + 18, 'Bridged VM paths relative to the plain pod (A) and to the kernel path (B)', 'font-size="16" font-weight="bold"'));
  out.push(
    text(
      left - 50,
      top + 36,
      `median of per-round ratios, whiskers min–max; higher is better (latency shown as den/num); dashed red: the target for every ÷ A, ${TARGET_MIN.rrRate} on rate and ${TARGET_MIN.throughputGbps} on throughput`,
      'font-size="11.5" fill="#444"',
    ),
  );
  // grid
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + 1e-9; v += step) {
    const yy = y(v);
    out.push(`<line x1="${left}" y1="${f(yy)}" x2="${right}" y2="${f(yy)}" stroke="${Math.abs(v - 1) < 1e-9 ? '#000' : '#e3e3e3'}" stroke-width="${Math.abs(v - 1) < 1e-9 ? 1.2 : 1}"/>`);
    out.push(text(left - 8, yy + 4, v.toFixed(2), 'font-size="11" text-anchor="end" fill="#333"'));
  }
  const gw = (right - left) / groups.length;
  const bw = Math.min(36, (gw - 40) / pairs.length);
  groups.forEach((g, gi) => {
    const gx = left + gi * gw + (gw - bw * pairs.length) / 2;
    bars[gi]!.forEach((b, bi) => {
      const x = gx + bi * bw;
      if (!Number.isFinite(b.v)) return;
      const y1 = y(Math.max(b.v, 1));
      const y0 = y(Math.min(b.v, 1));
      out.push(`<rect x="${f(x + 3)}" y="${f(y1)}" width="${f(bw - 6)}" height="${f(Math.max(1, y0 - y1))}" fill="${b.color}"><title>${esc(`${b.key} ${g.label}: ${b.v.toFixed(3)} (min ${b.lo.toFixed(3)}, max ${b.hi.toFixed(3)})`)}</title></rect>`);
      const cx = x + bw / 2;
      out.push(`<line x1="${f(cx)}" y1="${f(y(b.lo))}" x2="${f(cx)}" y2="${f(y(b.hi))}" stroke="#222" stroke-width="1"/>`);
      out.push(`<line x1="${f(cx - 4)}" y1="${f(y(b.lo))}" x2="${f(cx + 4)}" y2="${f(y(b.lo))}" stroke="#222"/>`);
      out.push(`<line x1="${f(cx - 4)}" y1="${f(y(b.hi))}" x2="${f(cx + 4)}" y2="${f(y(b.hi))}" stroke="#222"/>`);
      if (b.hi > hi) out.push(text(cx, y(hi) - 2, `↑${b.hi.toFixed(2)}`, 'font-size="9" text-anchor="middle" fill="#555"'));
      if (b.lo < lo) out.push(text(cx, y(lo) + 11, `↓${b.lo.toFixed(2)}`, 'font-size="9" text-anchor="middle" fill="#555"'));
      // the value at the bar's end: inside a long bar, just past a short one; a white halo keeps it clear of whiskers
      const barLen = Math.abs(y(b.v) - y(1));
      const inside = barLen > 16;
      const up = b.v >= 1;
      const labelY = up ? (inside ? y(b.v) + 12 : y(b.v) - 4) : inside ? y(b.v) - 4 : y(b.v) + 12;
      out.push(text(cx, labelY, b.v.toFixed(2), `font-size="10.5" text-anchor="middle" font-weight="bold" fill="${inside && !b.light ? '#fff' : '#111'}"${inside ? '' : ' stroke="#fff" stroke-width="3" paint-order="stroke"'}`));
    });
    if (g.metric === 'rrRate' || g.metric === 'throughputGbps') {
      const goal = TARGET_MIN[g.metric];
      const ty = y(goal);
      out.push(`<line x1="${f(gx - 8)}" y1="${f(ty)}" x2="${f(gx + targeted * bw + 8)}" y2="${f(ty)}" stroke="#d62728" stroke-width="2" stroke-dasharray="6,3"/>`);
      out.push(text(gx - 10, ty + 4, String(goal), 'font-size="10" text-anchor="end" fill="#d62728"'));
    }
    out.push(text(left + gi * gw + gw / 2, plotBottom + 28, g.label, 'font-size="12.5" text-anchor="middle"'));
  });
  // legend, two per line
  pairs.forEach((p, i) => {
    const lx = left + (i % 2) * 430;
    const ly = plotBottom + 38 + Math.floor(i / 2) * 17;
    out.push(`<rect x="${lx}" y="${ly}" width="12" height="12" fill="${p.color}"/>`);
    out.push(text(lx + 17, ly + 10.5, p.legend, 'font-size="11.5"'));
  });
  return { svg: out, height: h + 10 };
}

function pathPanel(r: BenchResult, top: number): { svg: string[]; height: number } {
  const out: string[] = [];
  const ids = r.paths.map((p) => p.id);
  const rowH = 19;
  const h = 56 + ids.length * rowH + 10;
  out.push(text(20, top + 18, 'Every path: medians over rounds (whiskers: min–max)', 'font-size="16" font-weight="bold"'));
  const cols: Array<{ metric: MetricId; label: string; x0: number; width: number }> = [
    { metric: 'rrP50Us', label: 'round trip p50, µs (lower is better)', x0: 345, width: 250 },
    { metric: 'throughputGbps', label: 'bulk throughput, Gbit/s (higher is better)', x0: 665, width: 250 },
  ];
  for (const c of cols) {
    const vals = ids.map((id) => r.summary[id]?.[c.metric]).filter((s) => s && Number.isFinite(s.max));
    const max = Math.max(...vals.map((s) => s!.max), 1e-9) * 1.08;
    out.push(text(c.x0, top + 40, c.label, 'font-size="12"'));
    ids.forEach((id, i) => {
      const s = r.summary[id]?.[c.metric];
      if (!s || !Number.isFinite(s.median)) return;
      const yy = top + 50 + i * rowH;
      const primary = r.paths[i]!.role === 'primary';
      const color = id === 'A' ? '#555' : primary ? '#1f77b4' : '#9ecae1';
      out.push(`<rect x="${c.x0}" y="${f(yy + 3)}" width="${f((s.median / max) * c.width)}" height="${rowH - 6}" fill="${color}"/>`);
      const wx = (v: number) => c.x0 + (v / max) * c.width;
      out.push(`<line x1="${f(wx(s.min))}" y1="${f(yy + rowH / 2)}" x2="${f(wx(s.max))}" y2="${f(yy + rowH / 2)}" stroke="#222"/>`);
      out.push(text(wx(s.max) + 4, yy + rowH / 2 + 4, c.metric === 'throughputGbps' ? s.median.toFixed(2) : s.median.toFixed(2), 'font-size="10.5"'));
    });
  }
  r.paths.forEach((p, i) => {
    const yy = top + 50 + i * rowH;
    out.push(text(20, yy + rowH / 2 + 4, `${p.id}  ${p.title}`, `font-size="11.5"${p.role === 'primary' ? ' font-weight="bold"' : ' fill="#333"'}`));
  });
  return { svg: out, height: h };
}

function perPacketPanel(r: BenchResult, top: number): { svg: string[]; height: number } {
  const out: string[] = [];
  const rowH = 19;
  const cases = r.perPacket;
  const h = 56 + cases.length * rowH + 10;
  out.push(text(20, top + 18, 'Per-packet cost over a pass-through program (BPF_PROG_TEST_RUN, ns)', 'font-size="16" font-weight="bold"'));
  out.push(text(20, top + 36, `median of ${r.method.perPacket.rounds} rounds × ${r.method.perPacket.repeat.toLocaleString('en-US')} runs; whiskers: min–max of the per-round delta; dark: the program rewrites the frame, light: it passes it`, 'font-size="11.5" fill="#444"'));
  const x0 = 430;
  const width = 420;
  const max = Math.max(...cases.map((c) => Math.max(c.spreadNs[1], c.deltaNs)), 1) * 1.1;
  const min = Math.min(0, ...cases.map((c) => c.spreadNs[0]));
  const x = (v: number) => x0 + ((v - min) / (max - min)) * width;
  cases.forEach((c, i) => {
    const yy = top + 46 + i * rowH;
    out.push(text(20, yy + rowH / 2 + 4, `${c.program}${c.pod ? ' (pod)' : ''}: ${c.frame}`, 'font-size="11.5"'));
    const color = { fixup: '#1f77b4', redirect: '#2ca02c', from_guest: '#9467bd' }[c.program];
    const a = x(Math.min(0, c.deltaNs));
    const b = x(Math.max(0, c.deltaNs));
    out.push(`<rect x="${f(a)}" y="${f(yy + 3)}" width="${f(Math.max(1, b - a))}" height="${rowH - 6}" fill="${color}" opacity="${c.rewrites ? 1 : 0.55}"/>`);
    out.push(`<line x1="${f(x(c.spreadNs[0]))}" y1="${f(yy + rowH / 2)}" x2="${f(x(c.spreadNs[1]))}" y2="${f(yy + rowH / 2)}" stroke="#222"/>`);
    out.push(text(x(Math.max(c.spreadNs[1], c.deltaNs)) + 5, yy + rowH / 2 + 4, `+${c.deltaNs.toFixed(1)} ns (${c.nsPerPacket.toFixed(1)} vs ${c.baselineNs.toFixed(1)})`, 'font-size="10.5"'));
  });
  out.push(`<line x1="${f(x(0))}" y1="${top + 44}" x2="${f(x(0))}" y2="${top + 46 + cases.length * rowH}" stroke="#000"/>`);
  return { svg: out, height: h };
}

export function chart(r: BenchResult): string {
  const parts: string[] = [];
  let top = 10;
  const header = `vmpeer benchmark, ${r.date.slice(0, 10)}${r.quick ? ' (quick run: smoke test, not a measurement)' : ''}: ${r.machine.cpus} CPUs, Linux ${r.machine.kernel}, ${r.method.rounds} rounds`;
  parts.push(text(20, top + 16, header, 'font-size="13" fill="#333"'));
  top += 26;
  for (const panel of [ratioPanel, pathPanel, perPacketPanel]) {
    const p = panel(r, top);
    parts.push(...p.svg);
    top += p.height + 14;
  }
  const H = Math.ceil(top);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ${FONT}>`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`,
    ...parts,
    '</svg>',
  ].join('\n');
}
