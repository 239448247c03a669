/** `npm run bench -- --focus <num>/<den>`: two paths, many rounds, one question. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { endToEnd } from './e2e.js';
import { FOCUS_SCHEMA, focusFigures, focusReport, type FocusResult } from './focus.js';
import { git, machine, preflight } from './machine.js';
import { RESULTS_DIR } from './outputs.js';
import { PATHS, type PathId } from './paths.js';
import { FULL } from './plan.js';

/** `--focus Cv/C`: two paths, many rounds, one question. */
export async function focusRun(spec: string, rounds: number, outOpt: string | undefined, cpuOpt: string | undefined): Promise<number> {
  const m = /^(\w+)\/(\w+)$/.exec(spec);
  const ids = Object.keys(PATHS);
  if (!m || !ids.includes(m[1]!) || !ids.includes(m[2]!) || m[1] === m[2]) throw new Error(`bench: --focus <num>/<den> with two of ${ids.join(', ')}, e.g. --focus Cv/C`);
  const [num, den] = [m[1] as PathId, m[2] as PathId];
  preflight();
  const started = Date.now();
  const cpus = os.cpus().length;
  const cpu = cpuOpt !== undefined ? Number(cpuOpt) : cpus - 1;
  const nice = -20;
  const out = path.resolve(outOpt ?? RESULTS_DIR);
  const log = (s: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${s}`);
  const mach = machine();
  log(`focused check ${num}/${den}: ${rounds} rounds; load ${mach.loadavgStart.join(' ')}`);
  const e2e = await endToEnd({
    ...FULL,
    rounds,
    paths: [den, num],
    profilePaths: [],
    profileMetrics: [],
    profileSeconds: 0,
    unpinnedPaths: [],
    unpinnedSeconds: 0,
    cpu,
    nice,
    labPrefix: 'vpl',
    log,
  });
  if (e2e.skipped.length > 0) throw new Error(`bench: ${e2e.skipped.map((x) => `${x.path}: ${x.why}`).join('; ')}`);
  const ms = e2e.measurements;
  const f: FocusResult = {
    schema: FOCUS_SCHEMA,
    date: new Date(started).toISOString(),
    num,
    den,
    rounds,
    method: { rrSeconds: FULL.rrSeconds, tputSeconds: FULL.tputSeconds, omitSeconds: FULL.omitSeconds, cpu, nice },
    machine: { cpus, kernel: mach.kernel, loadavgStart: mach.loadavgStart, loadavgEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    commit: git().commit,
    measurements: ms,
    ...focusFigures(ms, num, den),
    verification: {
      all: ms.every((x) => x.evidence.verified),
      failures: ms.filter((x) => !x.evidence.verified).map((x) => `${x.path} round ${x.round + 1}: ${x.evidence.why}`),
    },
  };
  fs.mkdirSync(out, { recursive: true });
  const base = path.join(out, `${f.date.slice(0, 10)}-focus-${num}-${den}`);
  fs.writeFileSync(`${base}.json`, JSON.stringify(f, null, 1) + '\n');
  const md = focusReport(f);
  fs.writeFileSync(`${base}.md`, md);
  for (const l of md.split('\n').filter((x) => x.startsWith('- '))) log(l.slice(2).replace(/<\/?sub>/g, ''));
  log(`wrote ${base}.md, ${base}.json`);
  return f.verification.all ? 0 : 1;
}
