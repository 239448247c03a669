/** The machine a benchmark runs on: its CPUs, kernel, tools, the checkout's commit, and what the run needs. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../lib/native.js';
import type { BenchResult } from './results.js';

export function sh(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

function firstLine(s: string): string {
  return s.replace(/\x1b\[[0-9;]*m/g, '').split('\n').find((l) => l.trim())?.trim() ?? '';
}

export function machine(): BenchResult['machine'] & { tools: Record<string, string> } {
  const lscpu = sh('lscpu', []);
  const hv = /Hypervisor vendor:\s*(.+)/.exec(lscpu.out)?.[1]?.trim() ?? null;
  const stat = sh('perf', ['stat', '-e', 'instructions', 'true']);
  const loads = os.loadavg().map((x) => Math.round(x * 100) / 100);
  return {
    cpus: os.cpus().length,
    model: os.cpus()[0]?.model ?? 'unknown',
    kernel: os.release(),
    node: process.version,
    hypervisor: hv,
    loadavgStart: loads,
    loadavgEnd: loads,
    hardwareCounters: stat.ok && !/not supported|not counted/.test(stat.out),
    tools: {
      sockperf: firstLine(sh('sockperf', ['--version']).out).replace(/^sockperf:\s*/, ''),
      iperf3: firstLine(sh('iperf3', ['--version']).out),
      perf: firstLine(sh('perf', ['--version']).out) || 'missing',
    },
  };
}

export function git(): { commit: string | null; dirty: boolean | null; dirtyFiles: string[] } {
  const head = sh('git', ['-C', packageRoot, 'rev-parse', 'HEAD']);
  if (!head.ok) return { commit: null, dirty: null, dirtyFiles: [] };
  // only what the numbers may depend on: the data path, the lab, the benchmark
  const st = sh('git', ['-C', packageRoot, 'status', '--porcelain', '--', 'bpf', 'lib', 'native', 'scripts/bench']);
  // porcelain lines are 'XY path'; sh() trimmed the first one's leading space
  const files = st.ok ? st.out.split('\n').map((l) => l.replace(/^\s*\S+\s+/, '')).filter(Boolean) : [];
  return { commit: head.out, dirty: st.ok ? files.length > 0 : null, dirtyFiles: files };
}

export function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error('bench: run as root (network namespaces, BPF)');
  for (const tool of ['sockperf', 'iperf3', 'nsenter', 'taskset', 'nice', 'ss']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`bench: ${tool} is missing: run scripts/bootstrap`);
  }
  if (!fs.existsSync(path.join(packageRoot, 'dist', 'lib', 'cli', 'bin.js'))) throw new Error('bench: not built: run scripts/bootstrap');
}
