/**
 * The benchmark's pure parts, without a lab: tool output parsers, the
 * result document's derived figures, the report and the chart.
 */
import test from 'ava';
import { chart } from '../../scripts/bench/chart.js';
import { cpuShare, readCpuSnapshot } from '../../scripts/bench/cpu.js';
import type { Measurement } from '../../scripts/bench/e2e.js';
import { PATHS, verify, type PathId } from '../../scripts/bench/paths.js';
import { bucketOf, parsePerfReport, summarizeProfile } from '../../scripts/bench/profile.js';
import { report } from '../../scripts/bench/report.js';
import { cpuEvidence, DIAGNOSTIC_PAIRS, pathSummary, PRIMARY_PAIRS, ratio, ratios, SCHEMA, targetsOf, validate, type BenchResult } from '../../scripts/bench/results.js';
import { parseIperf3, parseSockperf, ToolOutputError } from '../../scripts/bench/tools.js';

const SOCKPERF = `sockperf: == version #3.7-no.git ==
sockperf: Warmup stage (sending a few dummy messages)...
sockperf: Starting test...
sockperf: Test end (interrupted by timer)
sockperf: Test ended
sockperf: [Total Run] RunTime=1.000 sec; Warm up time=400 msec; SentMessages=75802; ReceivedMessages=75801
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=43467; ReceivedMessages=43467
sockperf: \x1b[2;35m====> avg-rtt=12.641 (std-dev=15.471)\x1b[0m
sockperf: Summary: Round trip is 12.641 usec
sockperf: ---> percentile 99.000 =   26.249
sockperf: ---> percentile 90.000 =   12.889
sockperf: ---> percentile 50.000 =   12.338
`;

test('sockperf ping-pong output: rate over the valid window, percentiles, total rate', (t) => {
  const r = parseSockperf(SOCKPERF);
  t.is(r.roundTrips, 43467);
  t.is(r.seconds, 0.55);
  t.true(Math.abs(r.rate - 43467 / 0.55) < 1e-6);
  t.is(r.p50Us, 12.338);
  t.is(r.p99Us, 26.249);
  t.is(r.avgUs, 12.641);
  t.true(Math.abs(r.totalRate - 75801) < 1e-6);
  t.throws(() => parseSockperf('sockperf: error'), { instanceOf: ToolOutputError });
});

test('iperf3 --json output: received bits per second, errors', (t) => {
  const ok = JSON.stringify({ end: { sum_received: { bytes: 5e9, seconds: 2, bits_per_second: 2e10 }, sum_sent: { retransmits: 3 }, cpu_utilization_percent: { host_total: 90, remote_total: 40 } } });
  t.like(parseIperf3(ok), { bitsPerSecond: 2e10, bytes: 5e9, retransmits: 3, cpuClientPct: 90 });
  t.throws(() => parseIperf3(JSON.stringify({ error: 'unable to connect to server' })), { message: /unable to connect/ });
  t.throws(() => parseIperf3('not json'), { instanceOf: ToolOutputError });
});

test('/proc/stat and /proc/softirqs deltas give shares of one CPU', (t) => {
  const stat = (u: number, sys: number, idle: number, si: number) => `cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 0 0 0 100 0 0 0 0 0 0\ncpu1 ${u} 0 ${sys} ${idle} 0 0 ${si} 0 0 0\n`;
  const soft = (rx: number) => `                    CPU0       CPU1\n          HI:          0          0\n      NET_RX:         10       ${rx}\n      NET_TX:          0          0\n`;
  const a = readCpuSnapshot(stat(100, 100, 100, 100), soft(5));
  const b = readCpuSnapshot(stat(150, 130, 110, 110), soft(25));
  const s = cpuShare(a, b, 1);
  t.true(Math.abs(s.user - 0.5) < 1e-9);
  t.true(Math.abs(s.system - 0.3) < 1e-9);
  t.true(Math.abs(s.softirq - 0.1) < 1e-9);
  t.true(Math.abs(s.idle - 0.1) < 1e-9);
  t.is(s.netRx, 20);
});

test('perf report lines parse and land in buckets', (t) => {
  const text = [' 5.28%  | 1264       |iperf3         |[k] handle_softirqs', ' 2.00%  | 400        |iperf3         |[k] br_nf_pre_routing', ' 1.00%  | 200        |qemu-system-x86|[.] cpu_exec', ' 1.00%  | 200        |iperf3         |[k] bpf_prog_f99bc08c711befe0_cni_emulator', '', '#'].join('\n');
  const samples = parsePerfReport(text);
  t.is(samples.length, 4);
  t.is(bucketOf('br_nf_pre_routing', false), 'netfilter hooks (bridge and IP)');
  t.is(bucketOf('br_handle_frame', false), 'bridge');
  t.is(bucketOf('bpf_prog_abc_fixup', false), 'tc/BPF programs and redirects');
  t.is(bucketOf('_copy_to_iter', false), 'data copies (user <-> kernel)');
  const p = summarizeProfile(samples, 1);
  t.is(p.totalSamples, 2064);
  t.is(p.benchSamples, 1864);
  t.true(Math.abs(p.buckets['netfilter hooks (bridge and IP)'] - 400 / 2064) < 1e-9);
});

test('path evidence: each expectation accepts the counters of its path and refuses the others', (t) => {
  const emu = (redirected: number, first = 3) => ({ first, expired: 0, redirected, optedOut: 0, other: redirected ? 10 : 0 });
  const none = { first: 0, expired: 0, redirected: 0, optedOut: 0, other: 0 };
  const vp = (fixed: number, redirected: number, passed: number, bypassedIn = 0, bypassedOut = 0) => ({ fixed, redirected, passed, bypassedIn, bypassedOut, stats: { passAddressed: passed } });
  t.true(verify('emulator', emu(5000), vp(0, 0, 0)).verified);
  t.false(verify('emulator', none, vp(0, 0, 0)).verified);
  t.true(verify('kernel', none, vp(0, 0, 0)).verified);
  t.false(verify('kernel', emu(5000), vp(0, 0, 0)).verified);
  t.true(verify('kernel+fixup', none, vp(0, 0, 4000)).verified);
  t.false(verify('kernel+fixup', none, vp(10, 0, 4000)).verified);
  t.true(verify('emulator+fixup', emu(5000), vp(5000, 0, 3)).verified);
  t.false(verify('emulator+fixup', emu(5000), vp(100, 0, 3)).verified, 'redirected frames were not re-addressed');
  t.false(verify('emulator+fixup', emu(5000), vp(5000, 0, 3, 5003, 4000)).verified, 'the bypass is on');
  t.true(verify('emulator+bypass', emu(5000), vp(5000, 0, 0, 5003, 4000)).verified);
  t.false(verify('emulator+bypass', emu(5000), vp(5000, 0, 3)).verified, 'the bypass is off');
  t.false(verify('emulator+bypass', emu(5000), vp(5000, 0, 0, 5003, 10)).verified, 'replies went through the bridge');
  t.true(verify('vmpeer-redirect', none, vp(0, 6000, 6000)).verified);
  t.false(verify('vmpeer-redirect', emu(10), vp(0, 6000, 6000)).verified);
  t.false(verify('vmpeer-redirect', none, vp(0, 6000, 0, 6000, 6000)).verified, 'the bypass is on');
  const db = verify('vmpeer-redirect+bypass', none, vp(0, 6000, 0, 6000, 6000));
  t.true(db.verified);
  t.is(db.fastShare, 1);
  t.false(verify('vmpeer-redirect+bypass', none, vp(0, 6000, 6000)).verified, 'the bypass is off');
});

/** A synthetic full run: every path, 5 rounds, numbers shaped like this machine's. */
function synthetic(): BenchResult {
  const base: Record<PathId, [number, number, number]> = {
    A: [13.0, 16.5, 1],
    A2: [13.1, 16.4, 1],
    B: [16.2, 15.2, 1],
    C: [15.6, 15.3, 1],
    D: [15.5, 15.0, 1],
    Cb: [13.1, 16.4, 1],
    Db: [13.9, 16.4, 1],
    A0: [13.6, 16.8, 1],
    Bf: [16.3, 15.1, 1],
    Cv: [15.6, 15.2, 1],
    Cs: [15.6, 15.3, 1],
    Cn: [14.6, 15.9, 1],
  };
  const ids = Object.keys(base) as PathId[];
  const ms: Measurement[] = [];
  for (let round = 0; round < 5; round++) {
    ids.forEach((id, slot) => {
      const [p50, gbps] = base[id];
      const j = 1 + 0.01 * Math.sin(round * 7 + slot);
      const share = { seconds: 1, user: 0.3, system: 0.4, softirq: 0.25, irq: 0, steal: 0, idle: 0.05, netRx: 1000, netTx: 0 };
      ms.push({
        path: id,
        round,
        slot,
        rr: { rate: 1e6 / (p50 * j), p50Us: p50 * j, p99Us: p50 * 1.4 * j, avgUs: p50 * j, roundTrips: 100000, seconds: 1.55, totalRate: 1e6 / (p50 * j) },
        tput: { bitsPerSecond: gbps * 1e9 * j, bytes: gbps * 2.5e8, seconds: 2, retransmits: 0, cpuClientPct: 90, cpuServerPct: 50 },
        cpuRr: share,
        cpuTput: share,
        otherBusyRr: 0.5,
        otherBusyTput: 0.5,
        evidence: verify(
          PATHS[id].expect,
          { first: 3, expired: 0, redirected: 9000, optedOut: 0, other: 10 },
          { fixed: 9000, redirected: 0, passed: 3, bypassedIn: PATHS[id].bypass ? 9003 : 0, bypassedOut: PATHS[id].bypass ? 9000 : 0, stats: {} },
        ),
      });
    });
  }
  const r: BenchResult = {
    schema: SCHEMA,
    quick: false,
    date: '2026-01-02T03:04:05.000Z',
    durationS: 540,
    commit: 'abc',
    dirty: false,
    machine: { cpus: 2, model: 'AMD EPYC', kernel: '6.18.0', node: 'v20.0.0', hypervisor: 'KVM', loadavgStart: [1, 1, 1], loadavgEnd: [1, 1, 1], hardwareCounters: false },
    method: {
      rounds: 5,
      rrSeconds: 2,
      tputSeconds: 2,
      omitSeconds: 1,
      cpu: 1,
      nice: -20,
      rrMessageBytes: 64,
      tools: { sockperf: '3.7', iperf3: 'iperf 3.12' },
      perPacket: { repeat: 1_000_000, rounds: 7 },
      lab: { name: 'vpl1-abcdef', emulatorMode: 'tcx', fixupMode: 'tcx', vmGuest: 'netns', describe: '' },
      profileSeconds: 2,
    },
    perPacket: [
      { program: 'fixup', frame: 'IPv4 TCP, node MAC (re-addressed)', rewrites: true, pktType: 'host', nsPerPacket: 60, baselineNs: 47, deltaNs: 13, spreadNs: [11, 15] },
      { program: 'redirect', frame: 'IPv4 TCP to a guest (redirected)', rewrites: true, pktType: 'host', nsPerPacket: 62, baselineNs: 47, deltaNs: 15, spreadNs: [12, 17] },
    ],
    paths: ids.map((id) => PATHS[id]),
    skipped: [],
    orders: [ids, ids, ids, ids, ids],
    measurements: ms,
    unpinned: [0, 1, 2, 3, 4].flatMap((round) => [
      { path: 'B' as PathId, round, gbps: 12 + round, verified: true },
      { path: 'C' as PathId, round, gbps: 16 - round, verified: true },
    ]),
    summary: Object.fromEntries(ids.map((id) => [id, pathSummary(ms, id)])),
    cpu: Object.fromEntries(ids.map((id) => [id, cpuEvidence(ms, id)!])),
    ratios: ratios(ms, PRIMARY_PAIRS),
    diagnostics: ratios(ms, DIAGNOSTIC_PAIRS),
    targets: [],
    verification: { all: true, failures: [] },
    profiles: [],
    profileSkipped: 'not requested',
    prototypes: { noPktTypeDiffers: true, errors: [] },
    controlPlane: null,
    notes: [],
  };
  r.targets = targetsOf(r.ratios, false);
  return r;
}

test('paired ratios, targets and validation of a full result', (t) => {
  const r = synthetic();
  t.deepEqual(validate(r), []);
  const ca = ratio(r.measurements, 'C', 'A', 'rrRate')!;
  t.is(ca.perRound.length, 5);
  t.true(ca.paired.median > 0.8 && ca.paired.median < 0.9);
  t.deepEqual(
    Object.fromEntries(r.targets.map((x) => [x.name, x.met])),
    {
      'C/A request/response rate': false,
      'C/A bulk throughput': false,
      'D/A request/response rate': false,
      'D/A bulk throughput': false,
      'Cb/A request/response rate': true,
      'Cb/A bulk throughput': true,
      'Db/A request/response rate': false,
      'Db/A bulk throughput': true,
    },
    'C and D built 7–17 % below A, Cb 1 %, Db 6 % in rate',
  );
  const broken = { ...r, summary: { ...r.summary, D: undefined } } as unknown as BenchResult;
  t.true(validate(broken).some((p) => /path D missing/.test(p)));
});

test('the report and the chart render every figure of a full result', (t) => {
  const r = synthetic();
  const md = report(r, { svg: 'x.svg', json: 'x.json' });
  t.notRegex(md, /NaN|undefined|\[object/);
  t.regex(md, /## Missed targets and next steps/);
  t.regex(md, /\*\*missed\*\*/);
  t.regex(md, /Pending in this report/);
  for (const id of ['A', 'B', 'C', 'D', 'Cb', 'Db', 'A0', 'Bf', 'Cv', 'Cn']) t.true(md.includes(`**${id}**`), id);
  t.regex(md, /By default \(the VM pod's bridge bypassed\), .* runs at \*\*\d\.\d\d× \(fixup, Cb\) and \d\.\d\d× \(redirect, Db\) the plain pod's request\/response rate/, 'the summary states both');
  t.regex(md, /with `--keep-bridge` \(its traffic through the VM pod's bridge\), at \d\.\d\d× \(C\) \/ \d\.\d\d× \(D\) the plain pod's rate/, 'and the paths that keep the bridge');
  // issue #16's goals: 0.95 of the plain pod's rate, 0.97 of its throughput
  for (const pair of ['C/A', 'D/A', 'Cb/A', 'Db/A']) {
    t.regex(md, new RegExp(`\\| ${pair} request/response rate \\| .+ \\| ≥ 0\\.95 \\|`), `target ${pair}`);
    t.regex(md, new RegExp(`\\| ${pair} bulk throughput \\| .+ \\| ≥ 0\\.97 \\|`), `target ${pair} throughput`);
  }
  t.regex(md, /\| metric \| C\/A \| D\/A \| Cb\/A \| Db\/A \| C\/B \| D\/B \| Cb\/B \| Db\/B \|/);
  t.regex(md, /\*\*Db\/A request\/response rate: 0\.\d+ < 0\.95\.\*\* The bridge is bypassed; its p50 is \d\.\d\d µs above A's/);
  t.regex(md, /Cb\/C \| the VM pod's bridge/);
  const svg = chart(r);
  t.true(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'));
  t.notRegex(svg, /NaN|undefined/);
  for (const pair of ['C/A', 'D/A', 'Cb/A', 'Db/A', 'Cb/B', 'Db/B']) t.true(svg.includes(`>${pair}  `), pair);
});

test('the report shows the control-plane section of a run that has one', (t) => {
  const r: BenchResult = { ...synthetic(), controlPlane: {} as NonNullable<BenchResult['controlPlane']> };
  const md = report(r, { svg: 'x.svg', json: 'x.json' }, () => '## Control plane\n\nmeasured\n');
  t.regex(md, /\n## Control plane\n\nmeasured\n\n## Reproduce\n/);
  t.notRegex(md, /Pending in this report/);
});

test('the report tabulates the per-packet cases at 250 and 1000 guests, with their spread', (t) => {
  const r = synthetic();
  const at = (endpoints: number, kind: 'random' | 'colliding', extra: number) => ({ endpoints, kind, cases: r.perPacket.map((c) => ({ ...c, deltaNs: c.deltaNs + extra })) });
  r.perPacketAt = [at(250, 'random', 1), at(250, 'colliding', 2), at(1000, 'random', 0.5), at(1000, 'colliding', 3)];
  t.deepEqual(validate(r), []);
  const md = report(r, { svg: 'x.svg', json: 'x.json' });
  t.regex(md, /\| program \| frame \| 2 \| 250 random \| 250 colliding \| 1000 random \| 1000 colliding \| spread \|/);
  t.regex(md, /\| `fixup` \| IPv4 TCP, node MAC \(re-addressed\) \| \+13\.0 \| \+14\.0 \| \+15\.0 \| \+13\.5 \| \+16\.0 \| 3\.0 \|/);
  t.regex(md, /Target: every case within 3 ns across the columns; \*\*met\*\* \(widest spread 3\.0 ns\)/);
  r.perPacketAt[3]!.cases[0]!.deltaNs += 1;
  t.regex(report(r, { svg: 'x.svg', json: 'x.json' }), /\*\*missed\*\* by 1 of 2 cases \(widest spread 4\.0 ns\)/);
  // a run whose columns shared their rounds brings its own two-guest column: that one is shown
  r.perPacketAt.unshift(at(2, 'random', 0.25));
  t.regex(report(r, { svg: 'x.svg', json: 'x.json' }), /\| `fixup` \| IPv4 TCP, node MAC \(re-addressed\) \| \+13\.3 \| \+14\.0 \| \+15\.0 \| \+13\.5 \| \+17\.0 \| 3\.8 \|/);
  r.perPacketAt.shift();
  r.perPacketAt[0]!.cases.pop();
  t.deepEqual(validate(r), ['perPacketAt 250 random: cases missing or not finite']);
});

test('the per-packet table: each case against its target, and the previous release measured beside it', (t) => {
  const r = synthetic();
  let md = report(r, { svg: 'x.svg', json: 'x.json' });
  t.regex(md, /Every case is within its target/);
  t.regex(md, /\| `fixup` \| IPv4 TCP, node MAC \(re-addressed\) \| PACKET_HOST \| 60\.0 \| 47\.0 \| \*\*\+13\.0\*\* <sub>11\.0–15\.0<\/sub> \| ≤ \+20 met \|$/m);
  t.notRegex(md, /layout 2 build/);
  // fixup over its 20 ns, redirect within its 30 ns; the layout-2 build's figures in their own column
  r.perPacket = r.perPacket.map((c) => ({ ...c, deltaNs: c.deltaNs + 10, compareDeltaNs: c.deltaNs - 1 }));
  md = report(r, { svg: 'x.svg', json: 'x.json' });
  t.regex(md, /1 of 2 cases are over their target .*`fixup` IPv4 TCP, node MAC \(re-addressed\)\./);
  t.regex(md, /\| `fixup` \| .* \| ≤ \+20 \*\*missed\*\* \| \+12\.0 \|$/m);
  t.regex(md, /\| `redirect` \| .* \| ≤ \+30 met \| \+14\.0 \|$/m);
  t.deepEqual(validate(r), []);
});

test('a result document from before the bridge bypass still renders', (t) => {
  const r = synthetic();
  const old: BenchResult = {
    ...r,
    paths: r.paths.filter((p) => p.id !== 'Cb' && p.id !== 'Db'),
    measurements: r.measurements.filter((m) => m.path !== 'Cb' && m.path !== 'Db'),
    ratios: r.ratios.filter((x) => x.num !== 'Cb' && x.num !== 'Db'),
    diagnostics: r.diagnostics.filter((x) => x.num !== 'Cb' && x.num !== 'Db'),
    targets: r.targets.filter((x) => x.pair[0] !== 'Cb' && x.pair[0] !== 'Db'),
  };
  const md = report(old, { svg: 'x.svg', json: 'x.json' });
  t.notRegex(md, /NaN|undefined|\[object|–×/);
  t.notRegex(md, /\| Cb\/A|Cb\/A \|/, 'no bypass targets or ratio columns');
  const svg = chart(old);
  t.notRegex(svg, /NaN|undefined|Cb\/A/);
});

test('focused checks: exact sign test and the lines the report quotes', async (t) => {
  const { signTest } = await import('../../scripts/bench/focus.js');
  t.is(signTest([1.1, 1.2, 1.05, 1.01, 1.3]).p, 2 / 32);
  t.true(Math.abs(signTest([...Array(10).fill(1.1), 0.9, 0.9]).p - (2 * (66 + 12 + 1)) / 4096) < 1e-12);
  t.is(signTest([1.1, 0.9]).p, 1);
  t.is(signTest([]).p, 1);
});
