/**
 * `npm run bench`: vmpeer's benchmark, written as a dated markdown report,
 * its JSON and an SVG chart.
 *
 *   node dist/scripts/bench/main.js                 full run into bench/results/ (about 10 minutes)
 *   node dist/scripts/bench/main.js --quick         smoke test (under a minute) into a new temp dir
 *   node dist/scripts/bench/main.js --out <dir>     write there instead
 *   node dist/scripts/bench/main.js --from <json>   re-render the report and chart of a result document
 *   --control-plane   add the control-plane benchmark (scripts/bench/control-plane.ts, a few minutes)
 *   --rounds <n>, --cpu <n>, --no-profile
 *
 * Needs root (network namespaces, BPF), sockperf and iperf3 (scripts/bootstrap
 * installs them); perf and clang are optional (profiles, diagnostic paths).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../../lib/native.js';
import { chart } from './chart.js';
import { FOCUS_SCHEMA, focusFigures, focusReport, type FocusResult } from './focus.js';
import { endToEnd, type BenchLab, type E2eOptions } from './e2e.js';
import { DIAGNOSTIC, PATHS, PRIMARY, type PathId } from './paths.js';
import { perPacket } from './per-packet.js';
import { report } from './report.js';
import {
  cpuEvidence,
  DIAGNOSTIC_PAIRS,
  pathSummary,
  PRIMARY_PAIRS,
  ratios,
  SCHEMA,
  targetsOf,
  validate,
  type BenchResult,
} from './results.js';
import { RR_MESSAGE_BYTES } from './tools.js';

const RESULTS_DIR = path.join(packageRoot, 'bench', 'results');

/** What a run measures: the end-to-end knobs, the per-packet ones, and whether it is the smoke test. */
type Plan = Pick<
  E2eOptions,
  'rounds' | 'rrSeconds' | 'tputSeconds' | 'omitSeconds' | 'paths' | 'profilePaths' | 'profileMetrics' | 'profileSeconds' | 'unpinnedPaths' | 'unpinnedSeconds'
> & { quick: boolean; perPacket: { repeat: number; rounds: number } };

const FULL: Plan = {
  quick: false,
  rounds: 5,
  rrSeconds: 2,
  tputSeconds: 2,
  omitSeconds: 1,
  perPacket: { repeat: 1_000_000, rounds: 7 },
  paths: [...PRIMARY, ...DIAGNOSTIC],
  profilePaths: ['A', 'B', 'C', 'D', 'Cb', 'Db'],
  profileMetrics: ['throughput', 'rr'],
  profileSeconds: 2,
  unpinnedPaths: ['B', 'C'],
  unpinnedSeconds: 2,
};

const QUICK: Plan = {
  quick: true,
  rounds: 1,
  rrSeconds: 1,
  tputSeconds: 1,
  omitSeconds: 0,
  perPacket: { repeat: 20_000, rounds: 1 },
  // the diagnostic paths with set-up of their own; A0, Bf and Cn only differ in switches the others use
  paths: [...PRIMARY, 'Cv'],
  profilePaths: ['C'],
  profileMetrics: ['throughput'],
  profileSeconds: 1,
  unpinnedPaths: ['C'],
  unpinnedSeconds: 1,
};

function sh(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

function firstLine(s: string): string {
  return s.replace(/\x1b\[[0-9;]*m/g, '').split('\n').find((l) => l.trim())?.trim() ?? '';
}

function machine(): BenchResult['machine'] & { tools: Record<string, string> } {
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

function git(): { commit: string | null; dirty: boolean | null; dirtyFiles: string[] } {
  const head = sh('git', ['-C', packageRoot, 'rev-parse', 'HEAD']);
  if (!head.ok) return { commit: null, dirty: null, dirtyFiles: [] };
  // only what the numbers may depend on: the data path, the lab, the benchmark
  const st = sh('git', ['-C', packageRoot, 'status', '--porcelain', '--', 'bpf', 'lib', 'native', 'scripts/bench']);
  // porcelain lines are 'XY path'; sh() trimmed the first one's leading space
  const files = st.ok ? st.out.split('\n').map((l) => l.replace(/^\s*\S+\s+/, '')).filter(Boolean) : [];
  return { commit: head.out, dirty: st.ok ? files.length > 0 : null, dirtyFiles: files };
}

function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error('bench: run as root (network namespaces, BPF)');
  for (const tool of ['sockperf', 'iperf3', 'nsenter', 'taskset', 'nice', 'ss']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`bench: ${tool} is missing: run scripts/bootstrap`);
  }
  if (!fs.existsSync(path.join(packageRoot, 'dist', 'lib', 'cli', 'bin.js'))) throw new Error('bench: not built: run scripts/bootstrap');
}

/** Assembles the result document from the measured parts. */
function assemble(parts: {
  plan: Plan;
  started: number;
  machine: ReturnType<typeof machine>;
  perPacket: BenchResult['perPacket'];
  e2e: Awaited<ReturnType<typeof endToEnd>>;
  cpu: number;
  nice: number;
  controlPlane: BenchResult['controlPlane'];
}): BenchResult {
  const { plan, e2e } = parts;
  const ms = e2e.measurements;
  const ids = e2e.paths.map((p) => p.id);
  const { tools, ...mach } = parts.machine;
  const r: BenchResult = {
    schema: SCHEMA,
    quick: plan.quick,
    date: new Date(parts.started).toISOString(),
    durationS: Math.round((Date.now() - parts.started) / 1000),
    ...git(),
    machine: { ...mach, loadavgEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    method: {
      rounds: plan.rounds,
      rrSeconds: plan.rrSeconds,
      tputSeconds: plan.tputSeconds,
      omitSeconds: plan.omitSeconds,
      cpu: parts.cpu,
      nice: parts.nice,
      rrMessageBytes: RR_MESSAGE_BYTES,
      tools,
      perPacket: plan.perPacket,
      lab: e2e.lab,
      profileSeconds: plan.profileSeconds,
    },
    perPacket: parts.perPacket,
    paths: e2e.paths,
    skipped: e2e.skipped,
    orders: e2e.orders,
    measurements: ms,
    unpinned: e2e.unpinned,
    summary: Object.fromEntries(ids.map((id) => [id, pathSummary(ms, id)])),
    cpu: Object.fromEntries(ids.map((id) => [id, cpuEvidence(ms, id)]).filter(([, v]) => v !== null)),
    ratios: ratios(ms, PRIMARY_PAIRS),
    diagnostics: ratios(ms, DIAGNOSTIC_PAIRS),
    targets: [],
    verification: {
      all: ms.every((m) => m.evidence.verified),
      failures: ms.filter((m) => !m.evidence.verified).map((m) => `${m.path} round ${m.round + 1}: ${m.evidence.why}`),
    },
    statusCheck: e2e.statusCheck,
    profiles: e2e.profiles,
    profileSkipped: e2e.profileSkipped,
    prototypes: e2e.prototypes,
    controlPlane: parts.controlPlane,
    notes: [],
  };
  r.targets = targetsOf(r.ratios, plan.quick);
  if (plan.quick) r.notes.push('quick run: a smoke test of the benchmark (1 round, 1-second measurements); its numbers are not compared with the targets');
  for (const s of e2e.skipped) r.notes.push(`path ${s.path} skipped: ${s.why}`);
  if (e2e.statusCheck && !e2e.statusCheck.equal) r.notes.push(`the counters read from vmpeer's pinned maps (${JSON.stringify(e2e.statusCheck.pinned)}) differ from \`vmpeer status --json\` (${JSON.stringify(e2e.statusCheck.status)})`);
  if (!r.verification.all) r.notes.push(`${r.verification.failures.length} measurement(s) could not be shown to have taken their path: ${r.verification.failures.join('; ')}`);
  if (e2e.prototypes.errors.length > 0) r.notes.push(`diagnostic BPF: ${e2e.prototypes.errors.join('; ')}`);
  return r;
}

async function writeOutputs(r: BenchResult, dir: string, base: string): Promise<{ json: string; md: string; svg: string }> {
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
function baseName(dir: string, started: number): string {
  const day = new Date(started).toISOString().slice(0, 10);
  if (!fs.existsSync(path.join(dir, `${day}.json`))) return day;
  const t = new Date(started).toISOString().slice(11, 16).replace(':', '');
  return `${day}-${t}`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      out: { type: 'string' },
      from: { type: 'string' },
      rounds: { type: 'string' },
      cpu: { type: 'string' },
      'no-profile': { type: 'boolean' },
      'control-plane': { type: 'boolean' },
      focus: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(fs.readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*?|^ \* ?/gm, ''));
    return 0;
  }
  if (values.from) {
    const r = JSON.parse(fs.readFileSync(values.from, 'utf8')) as BenchResult;
    const problems = validate(r);
    if (problems.length > 0) console.error(`bench: ${values.from}: ${problems.join('; ')}`);
    const dir = values.out ?? path.dirname(values.from);
    const files = await writeOutputs(r, dir, path.basename(values.from, '.json'));
    if (path.resolve(dir) === RESULTS_DIR && !r.quick) writeIndex(r, path.basename(values.from, '.json'));
    console.log(`bench: re-rendered ${files.md} and ${files.svg}`);
    return problems.length > 0 ? 1 : 0;
  }

  if (values.focus) return focusRun(values.focus, values.rounds ? Number(values.rounds) : 12, values.out, values.cpu);

  const plan: Plan = { ...(values.quick ? QUICK : FULL) };
  if (values.rounds) plan.rounds = Math.max(1, Number(values.rounds));
  if (values['no-profile']) plan.profilePaths = [];
  let out = values.out ? path.resolve(values.out) : values.quick ? fs.mkdtempSync(path.join(os.tmpdir(), 'vmpeer-bench-')) : RESULTS_DIR;
  if (plan.quick && path.resolve(out) === RESULTS_DIR) throw new Error(`bench: --quick never writes into ${RESULTS_DIR}`);
  out = path.resolve(out);

  preflight();
  const started = Date.now();
  const cpus = os.cpus().length;
  const cpu = values.cpu !== undefined ? Number(values.cpu) : cpus - 1;
  if (!Number.isInteger(cpu) || cpu < 0 || cpu >= cpus) throw new Error(`bench: --cpu ${values.cpu}: this machine has CPUs 0-${cpus - 1}`);
  const nice = -20;
  const log = (s: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${s}`);
  const mach = machine();
  log(`${plan.quick ? 'quick' : 'full'} run: ${mach.cpus} CPUs (${mach.model}), Linux ${mach.kernel}, load ${mach.loadavgStart.join(' ')}; traffic pinned to CPU ${cpu} at nice ${nice}`);

  let bench: BenchLab | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: cleaning up`);
    // the measurement in flight fails as the lab goes; main() waits for this, then exits 130
    interrupted = (bench?.close() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  log(`per-packet cost: repeat ${plan.perPacket.repeat}, ${plan.perPacket.rounds} rounds`);
  const pp = perPacket(plan.perPacket);
  for (const c of pp) log(`  ${c.program.padEnd(8)} ${c.frame.padEnd(42)} +${c.deltaNs.toFixed(1)} ns`);

  const o: E2eOptions = {
    rounds: plan.rounds,
    rrSeconds: plan.rrSeconds,
    tputSeconds: plan.tputSeconds,
    omitSeconds: plan.omitSeconds,
    paths: plan.paths,
    profilePaths: plan.profilePaths,
    profileMetrics: plan.profileMetrics,
    profileSeconds: plan.profileSeconds,
    unpinnedPaths: plan.unpinnedPaths,
    unpinnedSeconds: plan.unpinnedSeconds,
    cpu,
    nice,
    labPrefix: 'vpl',
    log,
  };
  log(`end-to-end: ${plan.paths.join(', ')}; ${plan.rounds} rounds, shuffled`);
  const e2e = await endToEnd(o, (b) => (bench = b));
  bench = null;

  let controlPlane: BenchResult['controlPlane'] = null;
  if (values['control-plane']) {
    log('control plane (scripts/bench/control-plane.ts)');
    const { controlPlane: run } = await import('./control-plane.js');
    controlPlane = await run({ quick: plan.quick });
  }

  const r = assemble({ plan, started, machine: mach, perPacket: pp, e2e, cpu, nice, controlPlane });
  const problems = validate(r);
  const base = baseName(out, started);
  const files = await writeOutputs(r, out, base);
  if (!plan.quick && out === RESULTS_DIR) writeIndex(r, base);
  for (const t of r.targets) log(`target ${t.name} ≥ ${t.min}: ${t.value.toFixed(3)}${t.met === null ? '' : t.met ? ' met' : ' MISSED'}`);
  log(`wrote ${files.md}, ${files.json}, ${files.svg}`);
  if (problems.length > 0) {
    console.error(`bench: the result is not well-formed: ${problems.join('; ')}`);
    return 1;
  }
  return 0;
}

/** `--focus Cv/C`: two paths, many rounds, one question. */
async function focusRun(spec: string, rounds: number, outOpt: string | undefined, cpuOpt: string | undefined): Promise<number> {
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

/** bench/README.md: the latest full run, the list of runs and of focused checks. */
function writeIndex(r: BenchResult, base: string): void {
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
      `a bridged VM with vmpeer runs at ${figures('C/A', 'D/A')} on the same fast path` +
      `${bypass ? `; with \`--bypass-bridge\`, at ${figures('Cb/A', 'Db/A')}` : ''} (targets: 0.97).`,
    '',
    `![chart](results/${base}.svg)`,
    '',
    'Reproduce with `npm run bench` (root; about 10 minutes; writes `bench/results/<date>.{md,json,svg}`); `npm run bench -- --focus Cb/C --rounds 12` runs a focused check of two paths. `npm run bench -- --quick --out <dir>` is the smoke test the test suite runs.',
    '',
    '## Paths',
    '',
    "C and D keep the VM pod's bridge on the guest's path, as `vmpeer attach` does by default; Cb and Db take it out with `--bypass-bridge`. The targets (≥ 0.97 of A's request/response rate and throughput) apply to all four.",
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

/** Set by SIGINT/SIGTERM: the clean-up under way. */
let interrupted: Promise<void> | null = null;

main().then(
  (code) => process.exit(code),
  async (e: unknown) => {
    if (interrupted) {
      await interrupted;
      process.exit(130);
    }
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(1);
  },
);
