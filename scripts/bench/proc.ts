/** A process tree's CPU time and memory, from /proc (the daemon under benchmark and its children). */
import fs from 'node:fs';
import { childrenOf } from '../../lib/testkit/daemon-process.js';
import { round } from './util.js';

const TICK_MS = 1000 / 100; // USER_HZ is 100 on Linux

/** utime, stime, cutime, cstime of a process, in clock ticks; null when it is gone. */
function statTimes(pid: number): { own: number; reaped: number } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { own: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) };
  } catch {
    return null;
  }
}

/** Every descendant of a process (children of all its threads, recursively). */
export function descendants(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const kids = new Set<number>();
  for (const tid of tasks) {
    if (Number(tid) === pid) for (const c of childrenOf(pid)) kids.add(c);
    else {
      try {
        for (const c of fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) kids.add(Number(c));
      } catch {
        // the thread ended
      }
    }
  }
  return [...kids].flatMap((c) => [c, ...descendants(c)]);
}

/**
 * CPU time of a process tree in ms: the process itself, the children it
 * has waited for (cutime/cstime), and the ones still running.
 */
export function treeCpuMs(pid: number): { total: number; children: number } {
  const self = statTimes(pid);
  if (!self) return { total: 0, children: 0 };
  let live = 0;
  for (const c of descendants(pid)) live += statTimes(c)?.own ?? 0;
  return { total: (self.own + self.reaped + live) * TICK_MS, children: (self.reaped + live) * TICK_MS };
}

export function statusKb(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export function pssKb(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export const mb = (kb: number) => round(kb / 1024, 1);
