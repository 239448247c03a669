/**
 * Focused checks: two paths only, many rounds, to settle one question the
 * full run can only hint at (with 5 rounds and dozens of comparisons, a few
 * pass a sign test by chance).
 *
 *   node dist/scripts/bench/main.js --focus C,Cv [--rounds 12]
 *
 * writes bench/results/<date>-focus-Cv-C.{json,md}; the day's full report
 * lists every focused check found next to it.
 */
import type { Measurement } from './e2e.js';
import { PATHS, type PathId } from './paths.js';
import { METRICS, METRIC_IDS, ratio, type MetricId, type Ratio } from './results.js';

export const FOCUS_SCHEMA = 'vmpeer-bench-focus/1';

export interface SignTest {
  /** Rounds where num/den is above 1, below 1. */
  above: number;
  below: number;
  n: number;
  /** Exact two-sided binomial p-value of that split under "no difference". */
  p: number;
}

export interface FocusResult {
  schema: typeof FOCUS_SCHEMA;
  date: string;
  /** num/den: the variant over the reference. */
  num: PathId;
  den: PathId;
  rounds: number;
  method: { rrSeconds: number; tputSeconds: number; omitSeconds: number; cpu: number; nice: number };
  machine: { cpus: number; kernel: string; loadavgStart: number[]; loadavgEnd: number[] };
  commit: string | null;
  measurements: Measurement[];
  ratios: Ratio[];
  signs: Record<MetricId, SignTest>;
  verification: { all: boolean; failures: string[] };
}

function choose(n: number, k: number): number {
  let c = 1;
  for (let i = 1; i <= k; i++) c = (c * (n - k + i)) / i;
  return c;
}

/** Exact two-sided sign test. */
export function signTest(ratios: number[]): SignTest {
  const above = ratios.filter((x) => x > 1).length;
  const below = ratios.filter((x) => x < 1).length;
  const n = above + below;
  const k = Math.max(above, below);
  let tail = 0;
  for (let i = k; i <= n; i++) tail += choose(n, i);
  return { above, below, n, p: n === 0 ? 1 : Math.min(1, (2 * tail) / 2 ** n) };
}

export function focusFigures(ms: Measurement[], num: PathId, den: PathId): { ratios: Ratio[]; signs: Record<MetricId, SignTest> } {
  const ratios = METRIC_IDS.map((k) => ratio(ms, num, den, k)).filter((r): r is Ratio => r !== null);
  const signs = Object.fromEntries(METRIC_IDS.map((k) => [k, signTest(ratios.find((r) => r.metric === k)?.perRound ?? [])])) as Record<MetricId, SignTest>;
  return { ratios, signs };
}

const fx = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : '–');

/** One line per metric: "rate 1.004 (0.97–1.03), 7 of 12 rounds above 1, p = 0.77: no measurable difference". */
export function focusLines(f: FocusResult): string[] {
  return METRIC_IDS.map((k) => {
    const r = f.ratios.find((x) => x.metric === k);
    const s = f.signs[k];
    const verdict = s.p < 0.05 ? `**${r && r.paired.median > 1 ? 'higher' : 'lower'} in ${Math.max(s.above, s.below)} of ${s.n} rounds** (p = ${fx(s.p, 3)})` : `no measurable difference (${s.above} of ${s.n} rounds above 1, p = ${fx(s.p, 2)})`;
    return `${METRICS[k].label}${METRICS[k].better === 'lower' ? ' (lower is better)' : ''}: ${f.num}/${f.den} ${fx(r?.paired.median ?? NaN)} <sub>${fx(r?.paired.min ?? NaN, 2)}–${fx(r?.paired.max ?? NaN, 2)}</sub>, ${verdict}`;
  });
}

export function focusReport(f: FocusResult): string {
  const lines = [
    `# Focused check: ${f.num} vs ${f.den}, ${f.date.slice(0, 10)}`,
    '',
    `**${f.num}**: ${PATHS[f.num].description}.`,
    '',
    `**${f.den}**: ${PATHS[f.den].description}.`,
    '',
    `${f.rounds} rounds, the two paths in random order in each, measured as in the full benchmark (sockperf ping-pong ${f.method.rrSeconds} s, iperf3 ${f.method.tputSeconds} s after ${f.method.omitSeconds} s omitted; every process on CPU ${f.method.cpu} at nice ${f.method.nice}). ` +
      `A difference is called measurable when the per-round ratios fall on one side of 1 more often than chance allows (exact two-sided sign test, p < 0.05). ` +
      `${f.machine.cpus} CPUs, Linux ${f.machine.kernel}, load average ${f.machine.loadavgStart.join(' ')} at the start; commit ${f.commit ?? 'unknown'}. ` +
      `${f.verification.all ? 'Every measurement took its path (counters checked as in the full run).' : `Not verified: ${f.verification.failures.join('; ')}.`}`,
    '',
    ...focusLines(f).map((l) => `- ${l}`),
    '',
    `Per-round ratios ${f.num}/${f.den}:`,
    '',
    '| metric | ' + Array.from({ length: f.rounds }, (_, i) => `${i + 1}`).join(' | ') + ' |',
    '|---|' + Array.from({ length: f.rounds }, () => '---:').join('|') + '|',
    ...METRIC_IDS.map((k) => `| ${METRICS[k].label} | ${(f.ratios.find((r) => r.metric === k)?.perRound ?? []).map((x) => x.toFixed(3)).join(' | ')} |`),
    '',
  ];
  return lines.join('\n');
}
