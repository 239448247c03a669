#!/usr/bin/env node
// The kernel matrix: the suites that carry kernel-specific risk (scripts/test.mjs
// --kernel-suites) on Debian's 5.10 (bullseye), 6.1 and 6.12 (bookworm) and the
// newest sid kernel under QEMU (scripts/vmtest), one after the other, and on the
// host kernel, after the VM runner's own tests.
//
//   node scripts/test-kernels.mjs [--kernels 5.10,6.1,6.12,sid,host] [--no-runner-tests] [--update-readme]
//   node scripts/test-kernels.mjs --readme-from .cache/vmtest-results/latest.json   the README's table from a stored run
//
// Prints a table kernel × suite, stores it as JSON under .cache/vmtest-results/,
// and ends with one line: "N passed, N failed".
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const kernels = option('--kernels', '5.10,6.1,6.12,sid,host').split(',');
const SUITES = ['bpf', 'addon', 'kernel', 'fix', 'netkit', 'restart'];
/**
 * What runs on which kernel (scripts/test.mjs --kernel-suites --only ...). Every kernel runs
 * what each kernel decides for itself: its verifier on every program, BPF_PROG_TEST_RUN
 * cases, its attach modes, its pkt_type after a peer redirect (bpf, addon, kernel). The
 * end-to-end suites depend on the attach mode (clsact below 6.6, tcx from 6.6) and on which
 * pkt_type class a peer-redirected frame carries, so each runs once per attach mode, on
 * the oldest kernel of the mode or the newest, not on every kernel (CI time: each costs
 * minutes under emulation):
 *   fix (the fault and the fix on a live lab, past the bridge too): 5.10 (clsact) and sid (tcx);
 *   restart (the daemon's pinned filters or links, killed and upgraded): 5.10 and 6.12;
 *   netkit (a VM pod on a netkit pair, Linux 6.7+, drivers/net/netkit.c; Debian builds it
 *   in, the host kernel has none): 6.12, whose netkit.* facts must then be there.
 * The host kernel runs all but netkit natively, in seconds.
 */
const PLAN = {
  '5.10': ['bpf', 'addon', 'kernel', 'fix', 'restart'],
  '6.1': ['bpf', 'addon', 'kernel'],
  '6.12': ['bpf', 'addon', 'kernel', 'netkit', 'restart'],
  sid: ['bpf', 'addon', 'kernel', 'fix'],
  host: ['bpf', 'addon', 'kernel', 'fix', 'restart'],
};
/** The kernels of the matrix built with netkit (for the README's table). */
const NETKIT_BUILT_IN = ['6.12', 'sid'];
const NETKIT_FACTS = ['netkit.bridge_port', 'netkit.fault', 'netkit.fixed_tcx', 'netkit.fixed_clsact'];
const unplanned = kernels.filter((k) => !PLAN[k]);
if (unplanned.length > 0) {
  console.error(`test-kernels: no plan for kernel ${unplanned.join(', ')} (there are ${Object.keys(PLAN).join(', ')})`);
  process.exit(2);
}

/** Runs a command, streaming its output with a prefix, and returns the output and exit code. */
function run(label, cmd, argv) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(cmd, argv, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const relay = (stream) => (d) => {
      out += d.toString();
      for (const line of d.toString().split('\n')) if (line.trim()) stream.write(`[${label}] ${line}\n`);
    };
    child.stdout.on('data', relay(process.stdout));
    child.stderr.on('data', relay(process.stderr));
    child.on('close', (code) => resolve({ code: code ?? 1, out, seconds: Math.round((Date.now() - started) / 1000) }));
  });
}

/** "bpf      node 20    58 passed   0 failed   0 skipped" lines of scripts/test.mjs. */
function parseSuites(out) {
  const suites = {};
  for (const m of out.matchAll(/^(?:\[[^\]]*\] )?(\w+)\s+node \d+\s+(\d+) passed\s+(\d+) failed\s+(\d+) skipped(?:\s+(\d+) s)?$/gm)) {
    suites[m[1]] = { passed: Number(m[2]), failed: Number(m[3]), skipped: Number(m[4]), seconds: Number(m[5] ?? 0) };
  }
  return suites;
}

function parseFacts(out) {
  return Object.fromEntries([...out.matchAll(/kernel-fact: ([\w.]+)=(\S+)/g)].map((m) => [m[1], m[2]]));
}

const readmeFrom = option('--readme-from', null);
if (readmeFrom) {
  updateReadme(JSON.parse(fs.readFileSync(readmeFrom, 'utf8')));
  process.exit(0);
}

const results = { date: new Date().toISOString(), runner: null, kernels: [] };

if (!args.includes('--no-runner-tests')) {
  const r = await run('vmtest-runner', process.execPath, [path.join(root, 'node_modules/ava/entrypoints/cli.mjs'), '--timeout=10m', 'dist/test/vm/']);
  const passed = Math.max(Number(/(\d+) tests? passed/.exec(r.out)?.[1] ?? 0), (r.out.match(/^\s*✔ /gm) ?? []).length);
  const failed = Number(/(\d+) tests? failed/.exec(r.out)?.[1] ?? 0) || (r.code === 0 ? 0 : 1);
  results.runner = { passed, failed, seconds: r.seconds };
}

for (const kernel of kernels) {
  const plan = PLAN[kernel];
  const suiteRun = ['node', 'scripts/test.mjs', '--kernel-suites', '--only', plan.join(',')];
  const r = kernel === 'host'
    ? await run(kernel, process.execPath, suiteRun.slice(1))
    : await run(kernel, path.join(root, 'scripts/vmtest'), ['--kernel', kernel, '--timeout', '1500', '--mem', '3G', '--', ...suiteRun]);
  const suites = parseSuites(r.out);
  for (const name of plan) suites[name] ??= { passed: 0, failed: 1, skipped: 0, missing: true };
  const facts = parseFacts(r.out);
  // the netkit pod test did not run (or not to its end) where it must: its suite failed
  if (plan.includes('netkit') && !NETKIT_FACTS.every((f) => f in facts)) suites.netkit.failed += 1;
  results.kernels.push({ kernel, release: facts.release ?? kernel, exit: r.code, seconds: r.seconds, plan, suites, facts });
}

const dir = path.join(root, '.cache/vmtest-results');
fs.mkdirSync(dir, { recursive: true });
// The README's table covers every kernel: one not in this run keeps its row of the last run that had it.
const previous = fs.existsSync(path.join(dir, 'latest.json')) ? JSON.parse(fs.readFileSync(path.join(dir, 'latest.json'), 'utf8')) : null;
fs.writeFileSync(path.join(dir, `${results.date.replace(/[:.]/g, '-')}.json`), JSON.stringify(results, null, 2));
fs.writeFileSync(path.join(dir, 'latest.json'), JSON.stringify({ ...results, runner: results.runner ?? previous?.runner ?? null,
  kernels: [...(previous?.kernels ?? []).filter((k) => !kernels.includes(k.kernel)), ...results.kernels] }, null, 2));

const cell = (s) => (!s ? '-' : s.missing ? 'missing' : `${s.failed ? 'FAILED' : 'passed'} ${s.passed}/${s.passed + s.failed}`);
console.log('\nkernel'.padEnd(34) + SUITES.map((s) => s.padEnd(14)).join('') + 'time');
for (const k of results.kernels) {
  console.log(`${k.release} (${k.kernel})`.padEnd(33) + SUITES.map((s) => cell(k.suites[s]).padEnd(14)).join('') + `${k.seconds} s`);
}
if (results.runner) console.log(`vmtest runner tests: ${results.runner.passed} passed, ${results.runner.failed} failed (${results.runner.seconds} s)`);

if (args.includes('--update-readme')) {
  const kept = (previous?.kernels ?? []).filter((k) => !kernels.includes(k.kernel));
  const order = (k) => ['5.10', '6.1', '6.12', 'sid', 'host'].indexOf(k.kernel) >>> 0;
  updateReadme({ ...results, runner: results.runner ?? previous?.runner ?? null, kernels: [...kept, ...results.kernels].sort((a, b) => order(a) - order(b)) });
}

let passed = results.runner?.passed ?? 0;
let failed = results.runner?.failed ?? 0;
for (const k of results.kernels) {
  for (const s of Object.values(k.suites)) {
    passed += s.passed;
    failed += s.failed + s.skipped;
  }
  if (k.exit !== 0 && Object.values(k.suites).every((s) => s.failed === 0)) failed += 1; // the VM itself failed
}
const seconds = (results.runner?.seconds ?? 0) + results.kernels.reduce((n, k) => n + k.seconds, 0);
console.log(`kernel matrix: ${seconds} s (${results.kernels.map((k) => `${k.kernel} ${k.seconds} s`).join(', ')})`);
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);

/** Rewrites the README's compatibility table from this run. */
function updateReadme(res) {
  const readme = path.join(root, 'README.md');
  const text = fs.readFileSync(readme, 'utf8');
  const insns = (k) => ['fixup', 'redirect', 'from_guest'].map((p) => k.facts[`verified_insns.${p}`] ?? '?').join(' / ');
  const rows = res.kernels.map((k) => {
    const ran = k.plan ?? Object.keys(k.suites);
    const ok = k.exit === 0 && ran.every((s) => k.suites[s] && k.suites[s].failed === 0 && !k.suites[s].missing);
    const total = ran.reduce((n, s) => n + (k.suites[s]?.passed ?? 0), 0);
    const nk = (f) => k.facts[`netkit.${f}`] ?? '?';
    const netkit = ran.includes('netkit')
      ? `bridge port; ${nk('fault')} → ${nk('fixed_tcx')} (tcx) / ${nk('fixed_clsact')} (clsact)`
      : NETKIT_BUILT_IN.includes(k.kernel) ? 'has netkit (the suite runs on 6.12)' : 'no netkit';
    const where = k.kernel === 'host' ? ' (host)' : ` (\`${k.kernel}\`)`;
    return `| ${k.release}${where} | ${k.facts.attach_mode ?? '?'} | ${k.facts.redirect_peer_pkt_type ?? '?'} → ${k.facts.after_fixup_pkt_type ?? '?'} | ${insns(k)} | ${k.facts.percpu_lookup ?? '?'} | ${netkit} | ${ran.join(', ')}: ${ok ? `passed (${total} tests)` : 'FAILED'} | ${k.seconds} s |`;
  });
  const runner = res.runner ? `The runner's own tests: ${res.runner.passed} passed, ${res.runner.failed} failed (${res.runner.seconds} s). ` : '';
  const seconds = (res.runner?.seconds ?? 0) + res.kernels.reduce((n, k) => n + k.seconds, 0);
  const table = [
    '<!-- kernel-matrix:start (generated by `npm run test:vm -- --update-readme`) -->',
    `Last run: ${res.date.slice(0, 10)}. ${runner}The whole matrix: ${seconds} s.`,
    '',
    '| kernel | attach mode (host interfaces) | pkt_type at the pod after a raw peer redirect → after fixup | instructions verified (fixup / redirect / from_guest) | per-CPU table lookup | netkit VM pod (L2): echoes answered after a peer redirect → with fixup | suites | time |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '<!-- kernel-matrix:end -->',
  ].join('\n');
  const updated = text.replace(/<!-- kernel-matrix:start[\s\S]*?<!-- kernel-matrix:end -->/, table);
  fs.writeFileSync(readme, updated);
}
