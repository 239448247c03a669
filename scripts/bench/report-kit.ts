/** What the report's sections share: number formatting, tables, and the facts of a result document. */
import type { PathId } from './paths.js';
import { consistent, findRatio, type BenchResult, type MetricId, type Ratio } from './results.js';
import type { Summary } from './stats.js';
import type { FocusResult } from './focus.js';

export interface FocusRef {
  /** The focused check's markdown, next to the report. */
  file: string;
  result: FocusResult;
}

export const fx = (x: number | undefined, d = 2) => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '–');
export const kilo = (x: number) => (Number.isFinite(x) ? `${(x / 1000).toFixed(1)}k` : '–');
export const pctOf = (share: number, d = 0) => (Number.isFinite(share) ? `${(share * 100).toFixed(d)} %` : '–');
/** A ratio as a signed percentage: 0.953 → "−4.7 %". */
export const delta = (ratio: number, d = 1) => {
  if (!Number.isFinite(ratio)) return '–';
  const p = (ratio - 1) * 100;
  return `${p >= 0 ? '+' : '−'}${Math.abs(p).toFixed(d)} %`;
};

export function valueOf(metric: MetricId, x: number): string {
  if (metric === 'rrRate') return kilo(x);
  return fx(x, 2);
}

export function cell(metric: MetricId, s: Summary | undefined): string {
  if (!s || !Number.isFinite(s.median)) return '–';
  return `${valueOf(metric, s.median)} <sub>${valueOf(metric, s.min)}–${valueOf(metric, s.max)}</sub>`;
}

export function ratioCell(r: Ratio | undefined): string {
  if (!r) return '–';
  return `**${fx(r.paired.median, 3)}** <sub>${fx(r.paired.min, 2)}–${fx(r.paired.max, 2)}</sub>`;
}

export function table(head: string[], rows: string[][], align?: string[]): string[] {
  return [`| ${head.join(' | ')} |`, `|${(align ?? head.map((_, i) => (i === 0 ? '---' : '---:'))).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

export interface Facts {
  r: BenchResult;
  focus?: FocusRef[];
  ratio(num: PathId, den: PathId, metric: MetricId): Ratio | undefined;
  /** Paired median ratio (NaN when not measured). */
  q(num: PathId, den: PathId, metric: MetricId): number;
  has(id: PathId): boolean;
  med(id: PathId, metric: MetricId): number;
}

export function facts(r: BenchResult): Facts {
  const all = [...r.ratios, ...r.diagnostics];
  return {
    r,
    ratio: (a, b, m) => findRatio(all, a, b, m),
    q: (a, b, m) => findRatio(all, a, b, m)?.paired.median ?? NaN,
    has: (id) => r.paths.some((p) => p.id === id),
    med: (id, m) => r.summary[id]?.[m]?.median ?? NaN,
  };
}

/** No measurable difference: the rounds fall on both sides of 1. */
export function withinNoise(x: Ratio | undefined): boolean {
  return !consistent(x);
}

/** "no measurable effect" or "a consistent −4.2 % (every round)". */
export function effect(x: Ratio | undefined): string {
  if (!x) return 'not measured';
  if (withinNoise(x)) return `**no measurable difference** (rounds on both sides of 1: ${fx(x.paired.min, 3)}–${fx(x.paired.max, 3)})`;
  return `a consistent ${delta(x.paired.median)} (every round: ${fx(x.paired.min, 3)}–${fx(x.paired.max, 3)})`;
}

/** Whether the path takes the VM pod's bridge out (a result document from before the bypass has no such paths). */
export function bypassed(F: Facts, id: PathId): boolean {
  return F.r.paths.find((p) => p.id === id)?.bypass === true;
}

export function p50Delta(F: Facts, a: PathId, b: PathId): number {
  return F.med(a, 'rrP50Us') - F.med(b, 'rrP50Us');
}

/** What each diagnostic pair isolates. */
export const DIAG_MEANING: Record<string, string> = {
  'B/A': 'VM on the kernel path vs the ceiling',
  'A/A0': 'what the fast path buys a plain pod here',
  'Bf/B': 'the fixup program on its own (kernel path, frames only classified)',
  'Cv/C': "the fixup's pkt_type choice",
  'Cn/C': 'bridge netfilter in the VM pod',
  'Cb/C': "the VM pod's bridge, both directions (fixup)",
  'Db/D': "the VM pod's bridge, both directions (redirect)",
  'D/C': "vmpeer's redirect vs the CNI's redirect + fixup",
  'Cv/Cs': 'pkt_type, with the same loader',
  'Cs/C': 'how the fixup was loaded (in-process vs the CLI)',
};
