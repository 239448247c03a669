/**
 * `npm run bench`: vmpeer's benchmark, written as a dated markdown report,
 * its JSON and an SVG chart.
 *
 *   node dist/scripts/bench/main.js                 full run into bench/results/ (about 10 minutes)
 *   node dist/scripts/bench/main.js --quick         smoke test (under a minute) into a new temp dir
 *   node dist/scripts/bench/main.js --out <dir>     write there instead
 *   node dist/scripts/bench/main.js --from <json>   re-render the report and chart of a result document
 *   --control-plane   add the control-plane benchmark (scripts/bench/control-plane.ts, about 8 minutes)
 *   --control-plane-only   only that benchmark: its JSON and report section into --out (default: a new temp dir)
 *   --pods <n,...>    the control-plane benchmark's VM pod populations (default 100,1000; --quick: 100)
 *   VMPEER_BENCH_DAEMON_NODE_ARGS='--cpu-prof --cpu-prof-dir=<dir>'   profiles the daemons it starts
 *   --rounds <n>, --cpu <n>, --no-profile
 *
 * Needs root (network namespaces, BPF), sockperf and iperf3 (scripts/bootstrap
 * installs them); perf and clang are optional (profiles, diagnostic paths).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { assemble } from './assemble.js';
import { endToEnd, type BenchLab, type E2eOptions } from './e2e.js';
import { focusRun } from './focus-run.js';
import { machine, preflight } from './machine.js';
import { baseName, RESULTS_DIR, writeIndex, writeOutputs } from './outputs.js';
import { PREVIOUS_OBJECT, perPacket, perPacketAtScale } from './per-packet.js';
import { FULL, QUICK, type Plan } from './plan.js';
import { validate, type BenchResult } from './results.js';

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
      'control-plane-only': { type: 'boolean' },
      pods: { type: 'string' },
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

  if (values['control-plane-only']) return controlPlaneOnly(Boolean(values.quick), values.pods, values.out);
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
  const pp = perPacket({ ...plan.perPacket, compare: PREVIOUS_OBJECT });
  for (const c of pp) {
    const before = c.compareDeltaNs === undefined ? '' : ` (layout 2 build: +${c.compareDeltaNs.toFixed(1)} ns)`;
    log(`  ${`${c.program}${c.pod ? ' (pod)' : ''}`.padEnd(16)} ${c.frame.padEnd(46)} +${c.deltaNs.toFixed(1)} ns${before}`);
  }
  const scale = perPacketAtScale(plan.perPacket);
  // the two-guest column of the at-scale table is measured in the same rounds as the populated ones
  const ppAt = [{ endpoints: 2, kind: 'random' as const, cases: scale.two }, ...scale.at];
  for (const at of ppAt) log(`  ${at.endpoints} guests (${at.kind} IPs): ${at.cases.map((c) => `+${c.deltaNs.toFixed(0)}`).join(' ')} ns`);

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
    controlPlane = await run({ quick: plan.quick, pods: podsOption(values.pods) });
  }

  const r = assemble({ plan, started, machine: mach, perPacket: pp, perPacketAt: ppAt, e2e, cpu, nice, controlPlane });
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

/** --pods: a list of VM pod populations, each at least 1. */
function podsOption(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const pods = text.split(',').map(Number);
  if (pods.length === 0 || pods.some((n) => !Number.isInteger(n) || n < 1 || n > 4000)) throw new Error(`bench: --pods ${text}: a comma-separated list of pod counts (1 to 4000)`);
  return pods;
}

/** --control-plane-only: the control-plane benchmark alone, its JSON and report section written to `out`. */
async function controlPlaneOnly(quick: boolean, pods: string | undefined, outOption: string | undefined): Promise<number> {
  const out = path.resolve(outOption ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vmpeer-bench-cp-')));
  if (out === RESULTS_DIR) throw new Error(`bench: --control-plane-only never writes into ${RESULTS_DIR} (a full run does)`);
  preflight();
  const { controlPlane: run, formatControlPlane } = await import('./control-plane.js');
  const r = await run({ quick, pods: podsOption(pods) });
  fs.mkdirSync(out, { recursive: true });
  const base = path.join(out, `control-plane-${r.date.slice(0, 19).replace(/:/g, '')}`);
  fs.writeFileSync(`${base}.json`, JSON.stringify(r, null, 1) + '\n');
  fs.writeFileSync(`${base}.md`, formatControlPlane(r));
  for (const t of r.targets) console.log(`target ${t.name} ${t.target}: ${t.value}${t.met === null ? '' : t.met ? ' met' : ' MISSED'}`);
  console.log(`wrote ${base}.md and ${base}.json`);
  return 0;
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
