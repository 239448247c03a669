/**
 * The end-to-end benchmark (`npm run bench`) in its quick form: it runs from
 * start to end and writes a well-formed report, JSON and chart, and leaves
 * nothing behind. Not a timing test: the numbers come from full runs.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { packageRoot } from '../../lib/native.js';
import { METRIC_IDS, PRIMARY_PAIRS, TARGETS, validate, type BenchResult } from '../../scripts/bench/results.js';

const MAIN = path.join(packageRoot, 'dist', 'scripts', 'bench', 'main.js');

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; pid: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGINT'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, pid: child.pid!, out });
    });
  });
}

const finitePositive = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x > 0;

test('npm run bench -- --quick: runs end to end, well-formed report, JSON and chart, nothing left behind', async (t) => {
  t.timeout(180_000);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'vpt-bench-'));
  t.teardown(() => fs.rmSync(out, { recursive: true, force: true }));

  const started = Date.now();
  const r = await run(['--quick', '--out', out], 170_000);
  t.log(`quick run: ${((Date.now() - started) / 1000).toFixed(0)} s`);
  t.is(r.code, 0, r.out);

  const files = fs.readdirSync(out).sort();
  const json = files.find((f) => f.endsWith('.json'));
  t.truthy(json, `no JSON in ${files.join(', ')}`);
  const base = json!.replace(/\.json$/, '');
  t.deepEqual(files, [`${base}.json`, `${base}.md`, `${base}.svg`]);

  const result = JSON.parse(fs.readFileSync(path.join(out, json!), 'utf8')) as BenchResult;
  t.deepEqual(validate(result), [], 'the result document is well-formed');
  t.true(result.quick);
  for (const id of ['A', 'B', 'C', 'D'] as const) {
    for (const k of METRIC_IDS) t.true(finitePositive(result.summary[id]?.[k]?.median), `${id} ${k}`);
  }
  for (const [a, b] of PRIMARY_PAIRS) {
    for (const k of METRIC_IDS) {
      const x = result.ratios.find((q) => q.num === a && q.den === b && q.metric === k);
      t.true(finitePositive(x?.paired.median), `${a}/${b} ${k}`);
    }
  }
  t.is(result.targets.length, TARGETS.length);
  t.true(result.targets.every((x) => x.met === null), 'quick runs are not judged');
  t.true(result.perPacket.length >= 9);
  t.deepEqual(result.perPacketAt?.map((x) => [x.endpoints, x.kind, x.cases.length]), [[2, 'random', result.perPacket.length], ...[250, 1000].flatMap((n) => [[n, 'random', result.perPacket.length], [n, 'colliding', result.perPacket.length]])], 'the per-packet cases with 2, 250 and 1000 guests, in the same rounds');
  // (its build has no pod instances: the default path's `pod` cases are this build's alone)
  t.true(result.perPacket.every((c) => c.pod === true || Number.isFinite(c.compareDeltaNs)), "the previous release's build measured beside this one");
  t.true(result.perPacket.filter((c) => c.pod).length >= 3, "the default path's programs measured");
  t.true(result.verification.all, result.verification.failures.join('; '));
  t.true(result.measurements.every((m) => m.evidence.verified));
  for (const id of ['Cb', 'Db'] as const) {
    const m = result.measurements.find((x) => x.path === id);
    t.truthy(m, `path ${id} measured`);
    t.true(m!.evidence.vmpeer.bypassedIn > 0 && m!.evidence.vmpeer.bypassedOut > 0, `${id}: frames past the bridge both ways`);
  }
  t.like(result.statusCheck, { path: 'Cb', equal: true }, 'pinned-map counters match vmpeer status --json');

  const md = fs.readFileSync(path.join(out, `${base}.md`), 'utf8');
  t.regex(md, /^# vmpeer benchmark, \d{4}-\d{2}-\d{2} \(quick run\)/);
  for (const heading of ['## Targets', '## Per-packet cost', '## End-to-end results', '## Evidence', '## Where the time goes', '## Why the numbers', '## Control plane', '## Reproduce']) {
    t.true(md.includes(heading), heading);
  }
  t.true(md.includes(`](${base}.svg)`), 'the report shows the chart');
  t.notRegex(md, /NaN|undefined|\[object/);
  t.regex(md, /By default \(the VM pod's bridge bypassed\), .* runs at \*\*\d\.\d\d× \(fixup, Cb\) and \d\.\d\d× \(redirect, Db\) the plain pod's request\/response rate/, 'the summary states the bypass paths');
  t.regex(md, /with `--keep-bridge` \(its traffic through the VM pod's bridge\), at \d\.\d\d× \(C\) \/ \d\.\d\d× \(D\) the plain pod's rate/, 'and the paths that keep the bridge');
  for (const pair of ['C/A', 'D/A', 'Cb/A', 'Db/A']) t.true(md.includes(`| ${pair} request/response rate |`), `target ${pair}`);

  const svg = fs.readFileSync(path.join(out, `${base}.svg`), 'utf8').trim();
  t.true(svg.startsWith('<svg') && svg.endsWith('</svg>'));
  t.is((svg.match(/<svg\b/g) ?? []).length, 1);
  t.notRegex(svg, /NaN|undefined/);
  // tags balance (every element is self-closed or closed)
  const tags = svg.match(/<(rect|text|line|title|svg)(\s[^>]*)?>/g) ?? [];
  const opened = tags.filter((x) => !x.endsWith('/>')).length;
  const closed = (svg.match(/<\/(rect|text|line|title|svg)>/g) ?? []).length;
  t.is(opened, closed, 'balanced SVG elements');

  // nothing left: the lab's namespaces, vmpeer state, BPF build and perf dirs, servers
  const tag = `vpl${r.pid}-`;
  t.deepEqual(fs.readdirSync('/var/run/netns').filter((n) => n.startsWith(tag)), [], 'netns left behind');
  t.deepEqual(fs.readdirSync('/sys/fs/bpf').filter((n) => n.startsWith(tag)), [], 'bpffs state left behind');
  t.deepEqual(
    fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(`vmpeer-bench-bpf-${r.pid}-`) || n.startsWith(`vmpeer-perf-${r.pid}-`)),
    [],
    'temporary files left behind',
  );
  // servers of this run outlived it when they match and no live benchmark is their parent (another run's are)
  const read = (file: string) => {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  const servers = fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map((p) => ({ cmd: read(`/proc/${p}/cmdline`).replace(/\0/g, ' '), ppid: read(`/proc/${p}/stat`).split(') ')[1]?.split(' ')[1] ?? '' }))
    .filter((x) => /sockperf server --tcp -p 11111|iperf3 --server -p 520[12]/.test(x.cmd))
    .filter((x) => !read(`/proc/${x.ppid}/cmdline`).includes('scripts/bench/main.js'))
    .map((x) => x.cmd);
  t.deepEqual(servers, [], 'benchmark servers left running');
});

test('--quick never writes into bench/results', async (t) => {
  const r = await run(['--quick', '--out', path.join(packageRoot, 'bench', 'results')], 30_000);
  t.not(r.code, 0);
  t.regex(r.out, /--quick never writes into/);
});
