/**
 * The benchmark's result document (bench/results/<date>.json): its shape,
 * the derived figures (medians, paired ratios, targets) and a validator the
 * test suite and the benchmark itself run on it.
 */
import type { ControlPlaneResult } from './control-plane.js';
import type { Measurement, PathProfile, StatusCheck, UnpinnedRun } from './e2e.js';
import { PRIMARY, type PathId, type PathSpec } from './paths.js';
import type { PerPacketAt, PerPacketCase } from './per-packet.js';
import { summarize, type Summary } from './stats.js';

export const SCHEMA = 'vmpeer-bench/1';

export type MetricId = 'rrRate' | 'rrP50Us' | 'rrP99Us' | 'throughputGbps';

export interface MetricInfo {
  id: MetricId;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  of(m: Measurement): number;
}

export const METRICS: Record<MetricId, MetricInfo> = {
  rrRate: { id: 'rrRate', label: 'request/response rate', unit: 'round trips/s', better: 'higher', of: (m) => m.rr.rate },
  rrP50Us: { id: 'rrP50Us', label: 'round-trip latency p50', unit: 'µs', better: 'lower', of: (m) => m.rr.p50Us },
  rrP99Us: { id: 'rrP99Us', label: 'round-trip latency p99', unit: 'µs', better: 'lower', of: (m) => m.rr.p99Us },
  throughputGbps: { id: 'throughputGbps', label: 'bulk throughput', unit: 'Gbit/s', better: 'higher', of: (m) => m.tput.bitsPerSecond / 1e9 },
};
export const METRIC_IDS = Object.keys(METRICS) as MetricId[];

/** The ratios the issue asks for, and the diagnostic comparisons that explain them. */
export const PRIMARY_PAIRS: Array<[PathId, PathId]> = [
  ['C', 'A'],
  ['D', 'A'],
  ['Cb', 'A'],
  ['Db', 'A'],
  ['C', 'B'],
  ['D', 'B'],
  ['Cb', 'B'],
  ['Db', 'B'],
];
export const DIAGNOSTIC_PAIRS: Array<[PathId, PathId]> = [
  ['A2', 'A'],
  ['B', 'A'],
  ['A', 'A0'],
  ['Bf', 'B'],
  ['Cv', 'C'],
  ['Cn', 'C'],
  ['Cb', 'C'],
  ['Db', 'D'],
  ['D', 'C'],
];
/** The least share of the plain pod's (A) figure a VM path is to reach (issue #16): request/response rate, bulk throughput. */
export const TARGET_MIN = { rrRate: 0.95, throughputGbps: 0.97 } as const satisfies Partial<Record<MetricId, number>>;
export type TargetMetric = keyof typeof TARGET_MIN;
/** "≥ 0.95 of A's request/response rate, ≥ 0.97 of its throughput": the targets in words. */
export const TARGETS_TEXT = `≥ ${TARGET_MIN.rrRate} of A's request/response rate, ≥ ${TARGET_MIN.throughputGbps} of its throughput`;
/** Every VM path against the plain pod: by default (the bridge bypassed: Cb, Db) and with --keep-bridge (C, D). */
export const TARGETS: Array<{ pair: [PathId, PathId]; metric: TargetMetric; min: number }> = (['C', 'D', 'Cb', 'Db'] as PathId[]).flatMap((vm) =>
  (Object.keys(TARGET_MIN) as TargetMetric[]).map((metric) => ({ pair: [vm, 'A'] as [PathId, PathId], metric, min: TARGET_MIN[metric] })),
);

export interface Ratio {
  num: PathId;
  den: PathId;
  metric: MetricId;
  /** Value ratio num/den per round (paired: both measured in the same round), and its summary. */
  perRound: number[];
  paired: Summary;
  /** Ratio of the two medians over all rounds. */
  ofMedians: number;
}

export interface CpuEvidence {
  /** Shares of the benchmark CPU's time (medians over rounds). */
  rr: { busy: number; softirq: number; system: number; user: number; steal: number; usPerRoundTrip: number; softirqUsPerRoundTrip: number };
  tput: { busy: number; softirq: number; system: number; user: number; steal: number; msPerGB: number; softirqMsPerGB: number };
  otherCpusBusy: number;
}

export interface BenchResult {
  schema: typeof SCHEMA;
  quick: boolean;
  date: string;
  durationS: number;
  commit: string | null;
  dirty: boolean | null;
  /** Uncommitted changes under bpf/, lib/, native/, scripts/bench/ when the run started. */
  dirtyFiles?: string[];
  machine: {
    cpus: number;
    model: string;
    kernel: string;
    node: string;
    hypervisor: string | null;
    loadavgStart: number[];
    loadavgEnd: number[];
    hardwareCounters: boolean;
  };
  method: {
    rounds: number;
    rrSeconds: number;
    tputSeconds: number;
    omitSeconds: number;
    cpu: number;
    nice: number;
    rrMessageBytes: number;
    tools: Record<string, string>;
    perPacket: { repeat: number; rounds: number };
    lab: { name: string; emulatorMode: string; fixupMode: string | null; vmGuest: string; describe: string };
    profileSeconds: number;
  };
  perPacket: PerPacketCase[];
  /** The same cases with 250 and 1000 guests in the table (absent in results from before it was measured). */
  perPacketAt?: PerPacketAt[];
  paths: PathSpec[];
  skipped: Array<{ path: PathId; why: string }>;
  orders: PathId[][];
  measurements: Measurement[];
  /** Bulk runs unpinned at the default priority, after each round: the noise a single such run carries. */
  unpinned: UnpinnedRun[];
  summary: Partial<Record<PathId, Record<MetricId, Summary>>>;
  cpu: Partial<Record<PathId, CpuEvidence>>;
  ratios: Ratio[];
  diagnostics: Ratio[];
  targets: Array<{
    name: string;
    pair: [PathId, PathId];
    metric: MetricId;
    min: number;
    /** Median of the per-round ratios: what met is judged on. */
    value: number;
    met: boolean | null;
    /** Whether every round's ratio is on the same side of the goal as the median. */
    everyRound: boolean | null;
  }>;
  verification: { all: boolean; failures: string[] };
  /** vmpeer's counters as the benchmark reads them (pinned maps) vs `vmpeer status --json`. */
  statusCheck?: StatusCheck | null;
  profiles: PathProfile[];
  profileSkipped: string | null;
  prototypes: { noPktTypeDiffers: boolean; errors: string[] };
  /** Control plane (scripts/bench/control-plane.ts): null when not part of this run. */
  controlPlane: ControlPlaneResult | null;
  notes: string[];
}

const valuesOf = (ms: Measurement[], path: PathId, metric: MetricId) => ms.filter((m) => m.path === path).map((m) => METRICS[metric].of(m));

export function pathSummary(ms: Measurement[], path: PathId): Record<MetricId, Summary> {
  return Object.fromEntries(METRIC_IDS.map((k) => [k, summarize(valuesOf(ms, path, k))])) as Record<MetricId, Summary>;
}

export function ratio(ms: Measurement[], num: PathId, den: PathId, metric: MetricId): Ratio | null {
  const rounds = [...new Set(ms.map((m) => m.round))].sort((a, b) => a - b);
  const perRound: number[] = [];
  for (const r of rounds) {
    const x = ms.find((m) => m.round === r && m.path === num);
    const y = ms.find((m) => m.round === r && m.path === den);
    if (x && y) perRound.push(METRICS[metric].of(x) / METRICS[metric].of(y));
  }
  if (perRound.length === 0) return null;
  const sx = summarize(valuesOf(ms, num, metric));
  const sy = summarize(valuesOf(ms, den, metric));
  return { num, den, metric, perRound, paired: summarize(perRound), ofMedians: sx.median / sy.median };
}

export function ratios(ms: Measurement[], pairs: Array<[PathId, PathId]>): Ratio[] {
  return pairs.flatMap(([a, b]) => METRIC_IDS.map((k) => ratio(ms, a, b, k)).filter((r): r is Ratio => r !== null));
}

/**
 * Whether a paired ratio shows a difference at all: every round on the same
 * side of 1 (a sign test: with 5 rounds, 1 chance in 16 to happen by luck).
 */
export function consistent(x: Ratio | undefined): boolean {
  return !!x && x.perRound.length >= 3 && (x.paired.min > 1 || x.paired.max < 1);
}

export function findRatio(list: Ratio[], num: PathId, den: PathId, metric: MetricId): Ratio | undefined {
  return list.find((r) => r.num === num && r.den === den && r.metric === metric);
}

export function cpuEvidence(ms: Measurement[], path: PathId): CpuEvidence | null {
  const mine = ms.filter((m) => m.path === path);
  if (mine.length === 0) return null;
  const med = (f: (m: Measurement) => number) => summarize(mine.map(f)).median;
  const busyRr = (m: Measurement) => 1 - m.cpuRr.idle;
  const busyTput = (m: Measurement) => 1 - m.cpuTput.idle;
  const gbPerS = (m: Measurement) => m.tput.bitsPerSecond / 8e9;
  return {
    rr: {
      busy: med(busyRr),
      softirq: med((m) => m.cpuRr.softirq),
      system: med((m) => m.cpuRr.system),
      user: med((m) => m.cpuRr.user),
      steal: med((m) => m.cpuRr.steal),
      usPerRoundTrip: med((m) => (busyRr(m) * 1e6) / m.rr.totalRate),
      softirqUsPerRoundTrip: med((m) => (m.cpuRr.softirq * 1e6) / m.rr.totalRate),
    },
    tput: {
      busy: med(busyTput),
      softirq: med((m) => m.cpuTput.softirq),
      system: med((m) => m.cpuTput.system),
      user: med((m) => m.cpuTput.user),
      steal: med((m) => m.cpuTput.steal),
      msPerGB: med((m) => (busyTput(m) * 1000) / gbPerS(m)),
      softirqMsPerGB: med((m) => (m.cpuTput.softirq * 1000) / gbPerS(m)),
    },
    otherCpusBusy: med((m) => (m.otherBusyRr + m.otherBusyTput) / 2),
  };
}

export function targetsOf(list: Ratio[], quick: boolean): BenchResult['targets'] {
  return TARGETS.map((t) => {
    const r = findRatio(list, t.pair[0], t.pair[1], t.metric);
    const value = r ? r.paired.median : NaN;
    const met = quick || !r ? null : value >= t.min;
    return {
      name: `${t.pair[0]}/${t.pair[1]} ${METRICS[t.metric].label}`,
      pair: t.pair,
      metric: t.metric,
      min: t.min,
      value,
      met,
      everyRound: met === null ? null : met ? r!.paired.min >= t.min : r!.paired.max < t.min,
    };
  });
}

const finitePositive = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x > 0;

/** Problems with a result document (empty when it is well-formed). */
export function validate(r: BenchResult): string[] {
  const p: string[] = [];
  if (r.schema !== SCHEMA) p.push(`schema ${String(r.schema)}`);
  if (!r.date || Number.isNaN(Date.parse(r.date))) p.push('date');
  if (!Array.isArray(r.perPacket) || r.perPacket.length === 0) p.push('perPacket: empty');
  for (const at of r.perPacketAt ?? []) {
    if (at.cases.length !== r.perPacket.length || at.cases.some((c) => !Number.isFinite(c.deltaNs))) p.push(`perPacketAt ${at.endpoints} ${at.kind}: cases missing or not finite`);
  }
  for (const c of r.perPacket ?? []) {
    if (!finitePositive(c.nsPerPacket) || !finitePositive(c.baselineNs) || !Number.isFinite(c.deltaNs)) p.push(`perPacket ${c.program} ${c.frame}: not finite`);
  }
  for (const id of PRIMARY) {
    const s = r.summary[id];
    if (!s) {
      p.push(`summary: path ${id} missing`);
      continue;
    }
    for (const k of METRIC_IDS) if (!finitePositive(s[k]?.median)) p.push(`summary ${id} ${k}: ${s[k]?.median}`);
  }
  for (const m of r.measurements ?? []) {
    for (const k of METRIC_IDS) if (!finitePositive(METRICS[k].of(m))) p.push(`measurement ${m.path} round ${m.round} ${k}: not finite and positive`);
  }
  for (const [a, b] of PRIMARY_PAIRS) {
    for (const k of METRIC_IDS) {
      const x = findRatio(r.ratios ?? [], a, b, k);
      if (!x || !finitePositive(x.paired.median) || !finitePositive(x.ofMedians)) p.push(`ratio ${a}/${b} ${k} missing or not finite`);
    }
  }
  if ((r.targets ?? []).length !== TARGETS.length) p.push('targets: not all present');
  for (const t of r.targets ?? []) if (!finitePositive(t.value)) p.push(`target ${t.name}: ${t.value}`);
  const rounds = new Set((r.measurements ?? []).map((m) => m.round));
  if (rounds.size !== r.method?.rounds) p.push(`rounds: ${rounds.size} measured, ${r.method?.rounds} planned`);
  if (typeof r.verification?.all !== 'boolean') p.push('verification');
  return p;
}
