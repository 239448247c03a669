/** Where a run's report, JSON and chart go, and bench/README.md, the index of the runs. */
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { chart } from './chart.js';
import { FOCUS_SCHEMA, type FocusResult } from './focus.js';
import { PATHS } from './paths.js';
import { report } from './report.js';
import { TARGETS_TEXT, type BenchResult } from './results.js';

export const RESULTS_DIR = path.join(packageRoot, 'bench', 'results');

export async function writeOutputs(r: BenchResult, dir: string, base: string): Promise<{ json: string; md: string; svg: string }> {
  fs.mkdirSync(dir, { recursive: true });
  const format = r.controlPlane ? (await import('./control-plane.js')).formatControlPlane : undefined;
  // focused checks of the same day, next to the report
  const day = r.date.slice(0, 10);
  const focus = fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => f.startsWith(`${day}-focus-`) && f.endsWith('.json'))
        .sort()
        .map((f) => ({ file: f.replace(/\.json$/, '.md'), result: JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as FocusResult }))
        .filter((x) => x.result.schema === FOCUS_SCHEMA)
    : [];
  const files = { json: path.join(dir, `${base}.json`), md: path.join(dir, `${base}.md`), svg: path.join(dir, `${base}.svg`) };
  fs.writeFileSync(files.json, JSON.stringify(r, null, 1) + '\n');
  fs.writeFileSync(files.svg, chart(r) + '\n');
  fs.writeFileSync(files.md, report(r, { svg: path.basename(files.svg), json: path.basename(files.json) }, format, focus));
  return files;
}

/** A base name for the day's files that does not overwrite an earlier run's. */
export function baseName(dir: string, started: number): string {
  const day = new Date(started).toISOString().slice(0, 10);
  if (!fs.existsSync(path.join(dir, `${day}.json`))) return day;
  const t = new Date(started).toISOString().slice(11, 16).replace(':', '');
  return `${day}-${t}`;
}

/** bench/README.md: the latest full run, the list of runs and of focused checks. */
export function writeIndex(r: BenchResult, base: string): void {
  const md = fs.readdirSync(RESULTS_DIR).filter((f) => f.endsWith('.md')).sort().reverse();
  const runs = md.filter((f) => !f.includes('-focus-'));
  const focus = md.filter((f) => f.includes('-focus-'));
  const t = (pair: string, metric: string) => r.targets.find((x) => x.name.startsWith(`${pair} `) && x.metric === metric)?.value ?? NaN;
  const figures = (c: string, d: string) =>
    `${t(c, 'rrRate').toFixed(2)}× (fixup) / ${t(d, 'rrRate').toFixed(2)}× (redirect) the plain pod's request/response rate and ${t(c, 'throughputGbps').toFixed(2)}× / ${t(d, 'throughputGbps').toFixed(2)}× its throughput`;
  const bypass = r.targets.some((x) => x.pair[0] === 'Cb');
  const lines = [
    '# Benchmarks',
    '',
    `Latest full run: [results/${base}.md](results/${base}.md) (${r.date.slice(0, 10)}, ${r.machine.cpus} CPUs, Linux ${r.machine.kernel}): ` +
      (bypass ? `a bridged VM with vmpeer runs at ${figures('Cb/A', 'Db/A')} by default (the bridge bypassed), ` : 'a bridged VM with vmpeer runs ') +
      `at ${figures('C/A', 'D/A')} with \`--keep-bridge\`, on the same fast path (targets: ${TARGETS_TEXT}).`,
    '',
    `![chart](results/${base}.svg)`,
    '',
    'Reproduce with `npm run bench` (root; about 10 minutes; writes `bench/results/<date>.{md,json,svg}`); `npm run bench -- --focus Cb/C --rounds 12` runs a focused check of two paths. `npm run bench -- --quick --out <dir>` is the smoke test the test suite runs.',
    '',
    "The per-packet part (BPF_PROG_TEST_RUN, `scripts/bench/per-packet.ts`) measures each case with the two measured guests alone in the endpoint table, interleaved with the previous release's build (endpoint-table layout 2) in the same rounds, then again with 250 and 1000 guests in it (random IPs, and IPs that shared home slots in layout 2's unkeyed table, 16 per slot; the measured guests inserted last): the report's \"At scale\" table gives each delta and their spread (target: within 3 ns).",
    '',
    '## Paths',
    '',
    `Cb and Db are the default: \`vmpeer attach\` takes the VM pod's bridge out of the guest's unicast IP traffic. C and D keep it on the path (\`--keep-bridge\`; before the bypass became the default, they were the default paths). The targets (${TARGETS_TEXT}) apply to all four.`,
    '',
    ...Object.values(PATHS).map((p) => `- **${p.id}**${p.role === 'diagnostic' ? ' (diagnostic)' : ''}: ${p.description}.`),
    '',
    '## Runs',
    '',
    ...runs.map((f) => `- [${f.replace(/\.md$/, '')}](results/${f})`),
    '',
    ...(focus.length > 0 ? ['## Focused checks', '', ...focus.map((f) => `- [${f.replace(/\.md$/, '')}](results/${f})`), ''] : []),
  ];
  fs.writeFileSync(path.join(packageRoot, 'bench', 'README.md'), lines.join('\n'));
}
