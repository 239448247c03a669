/**
 * Where the CPU time goes during a measurement: per-CPU time from /proc/stat
 * (user, system, softirq, steal, idle ...) and NET_RX/NET_TX softirq counts
 * from /proc/softirqs, as deltas between two snapshots.
 *
 * This kernel has no IRQ time accounting (CONFIG_IRQ_TIME_ACCOUNTING unset),
 * so the split is tick-sampled: a tick that lands in softirq context counts
 * as softirq. Over seconds of traffic that is a fair share estimate.
 */
import fs from 'node:fs';

/** /proc/stat counts in USER_HZ, which is 100 on Linux. */
export const USER_HZ = 100;
const FIELDS = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'] as const;
type Field = (typeof FIELDS)[number];

export type CpuTimes = Record<Field, number>;

export interface CpuSnapshot {
  /** cpuN -> times in seconds. */
  cpus: CpuTimes[];
  netRx: number[];
  netTx: number[];
  at: number;
}

export interface CpuShare {
  /** Seconds of wall time between the snapshots. */
  seconds: number;
  /** Shares of that CPU's time, 0..1 (they add up to ~1). */
  user: number;
  system: number;
  softirq: number;
  irq: number;
  steal: number;
  idle: number;
  /** NET_RX / NET_TX softirq runs on that CPU. */
  netRx: number;
  netTx: number;
}

export function readCpuSnapshot(statText = fs.readFileSync('/proc/stat', 'utf8'), softirqText = fs.readFileSync('/proc/softirqs', 'utf8')): CpuSnapshot {
  const cpus: CpuTimes[] = [];
  for (const line of statText.split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const v = m[2]!.trim().split(/\s+/).map(Number);
    const t = Object.fromEntries(FIELDS.map((f, i) => [f, (v[i] ?? 0) / USER_HZ])) as CpuTimes;
    cpus[Number(m[1])] = t;
  }
  const row = (name: string): number[] => {
    const line = softirqText.split('\n').find((l) => l.trim().startsWith(`${name}:`));
    return line ? line.trim().split(/\s+/).slice(1).map(Number) : cpus.map(() => 0);
  };
  return { cpus, netRx: row('NET_RX'), netTx: row('NET_TX'), at: performance.now() };
}

/** What CPU `cpu` did between two snapshots. */
export function cpuShare(a: CpuSnapshot, b: CpuSnapshot, cpu: number): CpuShare {
  const x = a.cpus[cpu];
  const y = b.cpus[cpu];
  if (!x || !y) throw new RangeError(`no CPU ${cpu} in /proc/stat`);
  const d = Object.fromEntries(FIELDS.map((f) => [f, Math.max(0, y[f] - x[f])])) as CpuTimes;
  const total = FIELDS.reduce((s, f) => s + d[f], 0) || 1;
  return {
    seconds: (b.at - a.at) / 1000,
    user: (d.user + d.nice) / total,
    system: d.system / total,
    softirq: d.softirq / total,
    irq: d.irq / total,
    steal: d.steal / total,
    idle: (d.idle + d.iowait) / total,
    netRx: (b.netRx[cpu] ?? 0) - (a.netRx[cpu] ?? 0),
    netTx: (b.netTx[cpu] ?? 0) - (a.netTx[cpu] ?? 0),
  };
}

/** Busy share (1 - idle) of every CPU but `except`, averaged: the machine's other work. */
export function otherCpusBusy(a: CpuSnapshot, b: CpuSnapshot, except: number): number {
  const others = a.cpus.map((_, i) => i).filter((i) => i !== except && a.cpus[i] && b.cpus[i]);
  if (others.length === 0) return 0;
  return others.reduce((s, i) => s + (1 - cpuShare(a, b, i).idle), 0) / others.length;
}
