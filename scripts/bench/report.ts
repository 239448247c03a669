/**
 * The benchmark report (bench/results/<date>.md) from a result document:
 * for operators, what was measured and how, every figure, the ratios against
 * the targets, and why the numbers are what they are, with the evidence.
 *
 * Every number and every comparison in the text is computed from the
 * document, so a new run re-writes a consistent report.
 */
import { BUCKETS, type Bucket } from './profile.js';
import { PATHS, type PathId } from './paths.js';
import { consistent, findRatio, METRICS, METRIC_IDS, PRIMARY_PAIRS, TARGET_RATIO, type BenchResult, type MetricId, type Ratio } from './results.js';
import type { Summary } from './stats.js';
import { focusLines, type FocusResult } from './focus.js';

export interface ReportLinks {
  svg: string;
  json: string;
}

// ------------------------------------------------------------------ formatting

const fx = (x: number | undefined, d = 2) => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '–');
const kilo = (x: number) => (Number.isFinite(x) ? `${(x / 1000).toFixed(1)}k` : '–');
const pctOf = (share: number, d = 0) => (Number.isFinite(share) ? `${(share * 100).toFixed(d)} %` : '–');
/** A ratio as a signed percentage: 0.953 → "−4.7 %". */
const delta = (ratio: number, d = 1) => {
  if (!Number.isFinite(ratio)) return '–';
  const p = (ratio - 1) * 100;
  return `${p >= 0 ? '+' : '−'}${Math.abs(p).toFixed(d)} %`;
};

function valueOf(metric: MetricId, x: number): string {
  if (metric === 'rrRate') return kilo(x);
  return fx(x, 2);
}

function cell(metric: MetricId, s: Summary | undefined): string {
  if (!s || !Number.isFinite(s.median)) return '–';
  return `${valueOf(metric, s.median)} <sub>${valueOf(metric, s.min)}–${valueOf(metric, s.max)}</sub>`;
}

function ratioCell(r: Ratio | undefined): string {
  if (!r) return '–';
  return `**${fx(r.paired.median, 3)}** <sub>${fx(r.paired.min, 2)}–${fx(r.paired.max, 2)}</sub>`;
}

function table(head: string[], rows: string[][], align?: string[]): string[] {
  return [`| ${head.join(' | ')} |`, `|${(align ?? head.map((_, i) => (i === 0 ? '---' : '---:'))).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

// ------------------------------------------------------------------ facts used by the text

interface Facts {
  r: BenchResult;
  focus?: FocusRef[];
  ratio(num: PathId, den: PathId, metric: MetricId): Ratio | undefined;
  /** Paired median ratio (NaN when not measured). */
  q(num: PathId, den: PathId, metric: MetricId): number;
  has(id: PathId): boolean;
  med(id: PathId, metric: MetricId): number;
}

function facts(r: BenchResult): Facts {
  const all = [...r.ratios, ...r.diagnostics];
  return {
    r,
    ratio: (a, b, m) => findRatio(all, a, b, m),
    q: (a, b, m) => findRatio(all, a, b, m)?.paired.median ?? NaN,
    has: (id) => r.paths.some((p) => p.id === id),
    med: (id, m) => r.summary[id]?.[m]?.median ?? NaN,
  };
}

/** No measurable difference: the rounds fall on both sides of 1. */
function withinNoise(x: Ratio | undefined): boolean {
  return !consistent(x);
}

/** "no measurable effect" or "a consistent −4.2 % (every round)". */
function effect(x: Ratio | undefined): string {
  if (!x) return 'not measured';
  if (withinNoise(x)) return `**no measurable difference** (rounds on both sides of 1: ${fx(x.paired.min, 3)}–${fx(x.paired.max, 3)})`;
  return `a consistent ${delta(x.paired.median)} (every round: ${fx(x.paired.min, 3)}–${fx(x.paired.max, 3)})`;
}

/** Whether the path takes the VM pod's bridge out (a result document from before the bypass has no such paths). */
function bypassed(F: Facts, id: PathId): boolean {
  return F.r.paths.find((p) => p.id === id)?.bypass === true;
}

function p50Delta(F: Facts, a: PathId, b: PathId): number {
  return F.med(a, 'rrP50Us') - F.med(b, 'rrP50Us');
}

// ------------------------------------------------------------------ sections

function summarySection(F: Facts, links: ReportLinks): string[] {
  const { r } = F;
  const out: string[] = [];
  const missed = r.targets.filter((x) => x.met === false);
  const bypass = F.has('Cb') && F.has('Db');
  out.push(
    `A bridged KubeVirt VM with vmpeer runs at **${fx(F.q('C', 'A', 'rrRate'))}× (fixup, C) and ${fx(F.q('D', 'A', 'rrRate'))}× (redirect, D) the plain pod's request/response rate** ` +
      `and **${fx(F.q('C', 'A', 'throughputGbps'))}× / ${fx(F.q('D', 'A', 'throughputGbps'))}× its bulk throughput** on the same fast path (A), with its traffic through the VM pod's bridge (the default)` +
      (bypass
        ? `; **with \`--bypass-bridge\`, ${fx(F.q('Cb', 'A', 'rrRate'))}× / ${fx(F.q('Db', 'A', 'rrRate'))}× the plain pod's rate and ${fx(F.q('Cb', 'A', 'throughputGbps'))}× / ${fx(F.q('Db', 'A', 'throughputGbps'))}× its throughput** (Cb, Db). `
        : '. ') +
      (r.quick
        ? 'This is a quick run (a smoke test): the targets are not judged.'
        : missed.length === 0
          ? `Every target (≥ ${TARGET_RATIO}) is met.`
          : `${missed.length} of ${r.targets.length} targets (≥ ${TARGET_RATIO}) are missed: see [why](#why-the-numbers-are-what-they-are) and [next steps](#missed-targets-and-next-steps).`),
  );
  out.push('');
  const cb = F.q('C', 'B', 'rrRate');
  const db = F.q('D', 'B', 'rrRate');
  const cbt = F.q('C', 'B', 'throughputGbps');
  const dbt = F.q('D', 'B', 'throughputGbps');
  out.push(
    `Against the kernel path that VMs are left with today (B: \`bpfRedirectToPeer: Disabled\` or Calico's VM opt-out), vmpeer changes the request/response rate by ${delta(cb)} (C) and ${delta(db)} (D), ` +
      `and throughput by ${delta(cbt)} (C) and ${delta(dbt)} (D)` +
      (bypass ? `; with the bridge bypassed, the rate by ${delta(F.q('Cb', 'B', 'rrRate'))} (Cb) and ${delta(F.q('Db', 'B', 'rrRate'))} (Db)` : '') +
      '. Without vmpeer, a bridged VM behind the fast path gets nothing through after the first packet of each flow (the fault vmpeer fixes), so that configuration is not benchmarked.',
  );
  if (bypass) {
    out.push('');
    out.push(
      "What separates the default paths from a plain pod is the VM pod's own bridge (with bridge netfilter) in both directions, not vmpeer's programs: `vmpeer attach --bypass-bridge` takes it out of the guest's unicast IP traffic, at the price of what that bridge would apply there (see [why](#why-the-numbers-are-what-they-are)).",
    );
  }
  out.push('');
  out.push(`![vmpeer benchmark chart](${links.svg})`);
  out.push('');
  out.push(`Raw data: [${links.json}](${links.json}).`);
  return out;
}

function targetsSection(F: Facts): string[] {
  const { r } = F;
  const out = ['## Targets', ''];
  out.push(
    ...table(
      ['target', "the VM pod's bridge", 'goal', 'measured: median of per-round ratios (min–max)', 'ratio of medians', ''],
      r.targets.map((t) => {
        const x = F.ratio(t.pair[0], t.pair[1], t.metric);
        const every = x ? (t.met ? x.paired.min >= t.min : x.paired.max < t.min) : false;
        const verdict = t.met === null ? '(quick run)' : `${t.met ? 'met' : '**missed**'}${every ? ' in every round' : ` on the median (rounds on both sides of ${t.min})`}`;
        return [t.name, bypassed(F, t.pair[0]) ? 'bypassed (`--bypass-bridge`)' : 'on the path (default)', `≥ ${t.min}`, ratioCell(x), fx(x?.ofMedians, 3), verdict];
      }),
      ['---', '---', '---', '---:', '---:', '---'],
    ),
  );
  const floor = (k: MetricId) => {
    const x = F.ratio('A2', 'A', k);
    return x ? `${fx(x.paired.min, 2)}–${fx(x.paired.max, 2)}` : null;
  };
  if (floor('rrRate')) {
    out.push('');
    out.push(
      `Noise floor: the same path (A) measured twice in every round, at different moments, differs by A2/A = ${floor('rrRate')} in request/response rate, ${floor('throughputGbps')} in throughput and ${floor('rrP50Us')} in p50 latency. ` +
        'A difference is called measurable below only when every round falls on the same side (a sign test: with 5 rounds, 1 chance in 16 by luck, so among the dozens of comparisons here a few pass by chance; the focused checks settle the ones that matter).',
    );
  }
  out.push('');
  out.push('Every VM path against the plain pod (A) and against the kernel path (B), for every metric (latency ratios: lower is better; Cb and Db: the bridge bypassed):');
  out.push('');
  const pairs = PRIMARY_PAIRS.filter(([a, b]) => F.has(a) && F.has(b));
  out.push(
    ...table(
      ['metric', ...pairs.map(([a, b]) => `${a}/${b}`)],
      METRIC_IDS.map((k) => [`${METRICS[k].label}${METRICS[k].better === 'lower' ? ' (lower is better)' : ''}`, ...pairs.map(([a, b]) => ratioCell(F.ratio(a, b, k)))]),
    ),
  );
  return out;
}

function methodSection(F: Facts): string[] {
  const { r } = F;
  const m = r.method;
  const out = ['## What was measured, and how', ''];
  out.push('The lab (`lib/lab`): network namespaces on this machine, wired as a Calico node with a KubeVirt VM pod in bridge binding and a plain pod; the client is on "another node".');
  out.push('');
  out.push('```');
  out.push('client netns ── veth ── node netns: eth0 (uplink) ─┬─ cali… veth ══ VM pod: eth0-nic ─ k6t-eth0 (bridge) ─ tap0 ══ guest netns (eth0)');
  out.push('                         [CNI emulator, vmpeer     │                [vmpeer fixup]                         [from_guest]  (a veth stands in for the tap)');
  out.push('                          redirect in mode D]      └─ cali… veth ══ plain pod: eth0');
  out.push('```');
  out.push('');
  if (F.has('Cb')) {
    out.push(
      "With `--bypass-bridge` (Cb, Db), `fixup` sends the guest's frames from `eth0-nic` straight to `tap0` and `from_guest` (at `tap0` ingress) sends the guest's frames for its gateway straight into the `cali…` veth: `k6t-eth0` is off the path of the guest's unicast IP traffic.",
    );
    out.push('');
  }
  out.push(
    'The CNI emulator (`bpf/cni_emulator.bpf.c`) is a peer-redirecting fast path reduced to what breaks bridged VMs: at tc ingress of the uplink and the host veths, the first packet of a flow takes the kernel path, every later one goes through `bpf_redirect_peer()` with the Ethernet header untouched. Its flow timeout is one hour here, so every measured flow stays on the fast path after its first packet.',
  );
  out.push('');
  out.push(
    ...table(
      ['path', 'what', 'configuration', 'evidence required'],
      r.paths.map((p) => [
        `**${p.id}**${p.role === 'diagnostic' ? ' (diagnostic)' : ''}`,
        p.description,
        [
          p.emulator ? 'emulator on' : 'emulator off',
          p.fixup ? `\`vmpeer attach --netns${p.bypass ? ' --bypass-bridge' : ''}\`` : p.extra === 'fixup-no-pkt-type' ? 'fixup variant (in-process loader)' : p.extra === 'fixup-in-process' ? 'shipped fixup (in-process loader)' : p.fixup === null ? 'VM pod left as it is' : 'no fixup',
          p.accelerate ? '`vmpeer attach --accelerate --host-dev eth0`' : '',
          p.bridgeNf ? '' : 'bridge-nf-call-iptables=0',
          `→ ${p.target === 'vm' ? 'VM guest' : 'plain pod'}`,
        ]
          .filter(Boolean)
          .join(', '),
        {
          emulator: 'emulator redirects, vmpeer untouched',
          kernel: 'no program redirects or rewrites',
          'kernel+fixup': 'fixup passes frames already addressed to the guest',
          'emulator+fixup': 'emulator redirects; fixup re-addresses ≥ 98 % of those frames; nothing bypasses the bridge',
          'emulator+bypass': 'emulator redirects; fixup re-addresses ≥ 98 % of those frames and sends them past the bridge; from_guest sends replies past it',
          'vmpeer-redirect': 'vmpeer redirect carries the traffic; emulator idle; nothing bypasses the bridge',
          'vmpeer-redirect+bypass': 'vmpeer redirect carries the traffic; emulator idle; fixup and from_guest send it past the bridge both ways',
        }[p.expect],
      ]),
      ['---', '---', '---', '---'],
    ),
  );
  out.push('');
  out.push(
    `**Rounds.** ${m.rounds} rounds; in each, every path once, in a new random order (${r.orders.map((o) => o.join(' ')).join(' / ')}). ` +
      `For each path: the lab is reconfigured (the CNI emulator attached or detached in-process, vmpeer with its CLI, \`vmpeer attach\`/\`detach\`), three pings settle neighbours and the bridge's FDB, then ` +
      `**request/response**: \`sockperf ping-pong --tcp -m ${m.rrMessageBytes} --full-rtt\` for ${m.rrSeconds} s (sockperf's 0.4 s warm-up excluded): round trips per second and the round-trip time's p50/p99; ` +
      `then **bulk**: \`iperf3\` one TCP stream for ${m.tputSeconds} s after ${m.omitSeconds} s omitted, received bits per second. ` +
      `Ratios are taken within a round (both paths measured minutes apart at most), then the median over rounds; the spread is the min–max over rounds.`,
  );
  out.push('');
  out.push(
    `**CPU.** The servers (in the guest or the plain pod) and the clients all run on CPU ${m.cpu} (\`taskset\`) at nice ${m.nice}: a measurement is what the whole round trip (client stack, node, pod, guest stack) costs one core, ` +
      `and other work on this shared machine is pushed to the other CPU. (Client and server on different CPUs made every path's latency 2–3× higher and the spread much wider: a cross-CPU wake-up in this KVM guest costs more than the paths differ.)`,
  );
  out.push('');
  out.push(
    `**Per packet.** \`scripts/bench/per-packet.ts\`: BPF_PROG_TEST_RUN with repeat ${m.perPacket.repeat.toLocaleString('en-US')}, ${m.perPacket.rounds} rounds, each program paired with a pass-through program loaded in the same run, in random order; ns per packet and the delta over the baseline (median of the per-round deltas).`,
  );
  out.push('');
  const busy = F.r.paths.map((p) => F.r.cpu[p.id]?.otherCpusBusy ?? NaN).filter(Number.isFinite);
  out.push(
    `**Machine.** ${r.machine.cpus} × ${r.machine.model}${r.machine.hypervisor ? ` (${r.machine.hypervisor} guest)` : ''}, Linux ${r.machine.kernel}, Node.js ${r.machine.node}; ` +
      `${Object.entries(m.tools)
        .map(([k, v]) => `${k} ${v.replace(/^(sockperf|iperf|perf)[, ]*(version )?/i, '')}`)
        .join(', ')}. ` +
      `CNI emulator and fixup attached with ${m.lab.emulatorMode}${m.lab.fixupMode ? `/${m.lab.fixupMode}` : ''}. ` +
      `Load average ${r.machine.loadavgStart.join(' ')} at the start, ${r.machine.loadavgEnd.join(' ')} at the end; the other CPU was ${pctOf(Math.min(...busy))}–${pctOf(Math.max(...busy))} busy with other work during the measurements (median per path). ` +
      `Commit ${r.commit ?? 'unknown'}${r.dirty ? ` with uncommitted changes in ${(r.dirtyFiles ?? []).map((f) => `\`${f}\``).join(', ') || 'bpf/, lib/, native/ or scripts/bench/'}` : ''}; the run took ${Math.round(r.durationS / 60)} min.`,
  );
  return out;
}

function perPacketSection(F: Facts): string[] {
  const out = ['## Per-packet cost', ''];
  out.push(
    ...table(
      ['program', 'frame', 'arrives as', 'ns/packet', 'pass-through', 'delta (min–max)'],
      F.r.perPacket.map((c) => [
        `\`${c.program}\``,
        c.frame,
        c.pktType === 'host' ? 'PACKET_HOST' : 'PACKET_OTHERHOST',
        fx(c.nsPerPacket, 1),
        fx(c.baselineNs, 1),
        `**+${fx(c.deltaNs, 1)}** <sub>${fx(c.spreadNs[0], 1)}–${fx(c.spreadNs[1], 1)}</sub>`,
      ]),
      ['---', '---', '---', '---:', '---:', '---:'],
    ),
  );
  const worst = Math.max(...F.r.perPacket.map((c) => c.deltaNs));
  const rt = F.med('C', 'rrP50Us');
  out.push('');
  out.push(
    `The most expensive case costs ${fx(worst, 1)} ns per frame: against a ${fx(rt, 1)} µs round trip on path C that is ${pctOf((2 * worst) / (rt * 1000), 1)} even if both directions paid it (only the direction to the guest does). ` +
      `A TSO super-frame of up to 64 KB is one frame to these programs, so in bulk transfer the cost disappears.`,
  );
  return out;
}

function resultsSection(F: Facts): string[] {
  const { r } = F;
  const out = ['## End-to-end results', ''];
  out.push('Medians over rounds, min–max in small print.');
  out.push('');
  out.push(
    ...table(
      ['path', 'request/response, round trips/s', 'round trip p50, µs', 'round trip p99, µs', 'throughput, Gbit/s'],
      r.paths.map((p) => [
        `**${p.id}** ${p.title}`,
        cell('rrRate', r.summary[p.id]?.rrRate),
        cell('rrP50Us', r.summary[p.id]?.rrP50Us),
        cell('rrP99Us', r.summary[p.id]?.rrP99Us),
        cell('throughputGbps', r.summary[p.id]?.throughputGbps),
      ]),
    ),
  );
  if (r.diagnostics.length > 0) {
    out.push('');
    out.push('Diagnostic comparisons (median of per-round ratios, min–max):');
    out.push('');
    const pairs = [...new Set(r.diagnostics.map((d) => `${d.num}/${d.den}`))];
    out.push(
      ...table(
        ['comparison', 'what it isolates', 'rate', 'throughput', 'p50 (lower is better)', 'p99 (lower is better)'],
        pairs.map((key) => {
          const [a, b] = key.split('/') as [PathId, PathId];
          return [
            `${a}/${b}`,
            DIAG_MEANING[key] ?? '',
            ratioCell(F.ratio(a, b, 'rrRate')),
            ratioCell(F.ratio(a, b, 'throughputGbps')),
            ratioCell(F.ratio(a, b, 'rrP50Us')),
            ratioCell(F.ratio(a, b, 'rrP99Us')),
          ];
        }),
        ['---', '---', '---:', '---:', '---:', '---:'],
      ),
    );
  }
  return out;
}

const DIAG_MEANING: Record<string, string> = {
  'B/A': 'VM on the kernel path vs the ceiling',
  'A/A0': 'what the fast path buys a plain pod here',
  'Bf/B': 'the fixup program on its own (kernel path, frames only classified)',
  'Cv/C': "the fixup's pkt_type choice",
  'Cn/C': 'bridge netfilter in the VM pod',
  'Cb/C': "the VM pod's bridge, both directions (fixup)",
  'Db/D': "the VM pod's bridge, both directions (redirect)",
  'D/C': "vmpeer's redirect vs the CNI's redirect + fixup",
  'Cv/Cs': 'pkt_type, with the same loader',
  'Cs/C': 'how the fixup was loaded (in-process vs the CLI)',
};

function evidenceSection(F: Facts): string[] {
  const { r } = F;
  const out = ['## Evidence that each measurement took its path', ''];
  out.push(
    'Counters read before and after each path\'s measurements in every round: the CNI emulator\'s map, and vmpeer\'s per-endpoint and per-outcome counters from the maps it pins (what `vmpeer status` shows; read directly, because a `vmpeer status` process loads and frees the whole BPF object next to the measurement' +
      (F.r.statusCheck ? `; a cross-check after the rounds found them ${F.r.statusCheck.equal ? 'identical to' : '**different from**'} \`vmpeer status --json\`` : '') +
      '). They count skbs: a TSO super-frame counts once. Medians per round:',
  );
  out.push('');
  const med = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? s[s.length >> 1]! : NaN;
  };
  out.push(
    ...table(
      ['path', 'verified', 'emulator: first / redirected', 'vmpeer: fixed / redirected / passed', 'fixup: already addressed', 'past the bridge: to / from the guest', 'on the fast path'],
      r.paths.map((p) => {
        const ms = r.measurements.filter((m) => m.path === p.id);
        const ok = ms.filter((m) => m.evidence.verified).length;
        const e = (f: (m: (typeof ms)[number]) => number) => med(ms.map(f)).toLocaleString('en-US');
        const share = med(ms.map((m) => m.evidence.fastShare ?? NaN).filter(Number.isFinite));
        return [
          `**${p.id}**`,
          `${ok}/${ms.length}`,
          `${e((m) => m.evidence.emulator.first)} / ${e((m) => m.evidence.emulator.redirected)}`,
          `${e((m) => m.evidence.vmpeer.fixed)} / ${e((m) => m.evidence.vmpeer.redirected)} / ${e((m) => m.evidence.vmpeer.passed)}`,
          e((m) => m.evidence.vmpeer.stats.passAddressed ?? 0),
          `${e((m) => m.evidence.vmpeer.bypassedIn ?? 0)} / ${e((m) => m.evidence.vmpeer.bypassedOut ?? 0)}`,
          Number.isFinite(share) ? pctOf(share, 2) : '–',
        ];
      }),
      ['---', '---:', '---:', '---:', '---:', '---:', '---:'],
    ),
  );
  if (!r.verification.all) {
    out.push('');
    out.push(`**Not verified:** ${r.verification.failures.join('; ')}.`);
  }
  return out;
}

function cpuSection(F: Facts): string[] {
  const { r } = F;
  const out = ['## Where the time goes', ''];
  out.push(
    `Per-CPU time of CPU ${r.method.cpu} from \`/proc/stat\` during each measurement (tick-sampled: this kernel has no IRQ time accounting), and NET_RX softirq counts from \`/proc/softirqs\`. ` +
      'CPU per unit of work = busy share of the core ÷ rate. Medians over rounds:',
  );
  out.push('');
  out.push(
    ...table(
      ['path', 'RR: core busy', 'RR: softirq share', 'RR: CPU µs per round trip', 'of it softirq', 'bulk: core busy', 'bulk: softirq share', 'bulk: CPU ms per GB', 'of it softirq', 'steal'],
      r.paths.map((p) => {
        const c = r.cpu[p.id];
        if (!c) return [p.id, '–', '–', '–', '–', '–', '–', '–', '–', '–'];
        return [
          `**${p.id}**`,
          pctOf(c.rr.busy),
          pctOf(c.rr.softirq),
          fx(c.rr.usPerRoundTrip, 2),
          fx(c.rr.softirqUsPerRoundTrip, 2),
          pctOf(c.tput.busy),
          pctOf(c.tput.softirq),
          fx(c.tput.msPerGB, 1),
          fx(c.tput.softirqMsPerGB, 1),
          pctOf(Math.max(c.rr.steal, c.tput.steal), 1),
        ];
      }),
    ),
  );
  out.push('');
  if (r.profiles.length === 0) {
    out.push(`No perf profile in this run: ${r.profileSkipped ?? 'not requested'}.`);
    return out;
  }
  out.push(
    `**Profiles.** \`perf record -e cpu-clock -F 2000 -C ${r.method.cpu}\` for ${r.method.profileSeconds} s in the middle of a bulk run and of a request/response run per path, samples of sockperf/iperf3 (and softirq work they ran) grouped by kernel function. ` +
      `${r.machine.hardwareCounters ? '' : 'This KVM guest has no PMU (`perf stat -e instructions` says "not supported"), so there are no cycle or instruction counts: cpu-clock samples are time, and time spent with interrupts off is charged where they are turned back on (its own row). '}` +
      'CPU time per unit of work, by bucket:',
  );
  for (const metric of ['rr', 'throughput'] as const) {
    const ps = r.profiles.filter((p) => p.metric === metric);
    if (ps.length === 0) continue;
    const unit = metric === 'rr' ? 'µs per round trip' : 'ms per GB';
    const per = (share: number, rate: number) => (metric === 'rr' ? (share * 1e6) / rate : (share * 1000) / (rate / 8e9));
    out.push('');
    out.push(`${metric === 'rr' ? 'Request/response' : 'Bulk'}, ${unit}:`);
    out.push('');
    const rows: string[][] = BUCKETS.map((b: Bucket) => [b, ...ps.map((p) => fx(per(p.profile.buckets[b], p.rate), metric === 'rr' ? 2 : 1))]);
    rows.push(['**all (benchmark processes)**', ...ps.map((p) => `**${fx(per(p.profile.benchShare, p.rate), metric === 'rr' ? 2 : 1)}**`)]);
    rows.push(['other work on this CPU (share of its time)', ...ps.map((p) => pctOf(1 - p.profile.benchShare, 1))]);
    out.push(...table(['bucket', ...ps.map((p) => `**${p.path}**`)], rows));
  }
  const top = r.profiles.filter((p) => p.metric === 'rr');
  if (top.length > 0) {
    out.push('');
    out.push('<details><summary>Heaviest kernel functions per path (request/response, share of the CPU)</summary>');
    out.push('');
    for (const p of top) out.push(`- **${p.path}**: ${p.profile.top.map(([s, v]) => `\`${s}\` ${pctOf(v, 1)}`).join(', ')}`);
    out.push('');
    out.push('</details>');
  }
  return out;
}

/** The bucket deltas between two profiled paths, biggest first: "bridge +0.31 µs, netfilter +0.22 µs". */
function bucketDiff(F: Facts, a: PathId, b: PathId, metric: 'rr' | 'throughput', n = 3): string {
  const pa = F.r.profiles.find((p) => p.path === a && p.metric === metric);
  const pb = F.r.profiles.find((p) => p.path === b && p.metric === metric);
  if (!pa || !pb) return '';
  const per = (share: number, rate: number) => (metric === 'rr' ? (share * 1e6) / rate : (share * 1000) / (rate / 8e9));
  const unit = metric === 'rr' ? 'µs' : 'ms/GB';
  const diffs = BUCKETS.map((k) => [k, per(pa.profile.buckets[k], pa.rate) - per(pb.profile.buckets[k], pb.rate)] as const)
    .filter(([, d]) => Number.isFinite(d))
    .sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]))
    .slice(0, n);
  return diffs.map(([k, d]) => `${k} ${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(metric === 'rr' ? 2 : 1)} ${unit}`).join(', ');
}

function whySection(F: Facts): string[] {
  const { r } = F;
  const out = ['## Why the numbers are what they are', ''];

  // 1. VM vs plain pod: the pod's bridge
  out.push("### The VM pod's bridge (C/A and D/A vs Cb/A and Db/A)");
  out.push('');
  const cA = F.q('C', 'A', 'rrRate');
  out.push(
    `On the plain pod (A) the emulator's \`bpf_redirect_peer()\` lands the frame in the pod's \`eth0\` and the pod's TCP stack takes it. On the default VM paths (C, D) the frame lands on \`eth0-nic\`, a port of the pod's bridge \`k6t-eth0\`: ` +
      'bridge input, bridge netfilter (`br_nf_pre_routing`, `br_nf_forward_ip`, `br_nf_post_routing`: `net.bridge.bridge-nf-call-iptables` is 1 in every new netns on this kernel), forwarding to `tap0`, and one more device hop to the guest. ' +
      'Every reply from the guest crosses the same bridge the other way. None of this is vmpeer\'s doing, and the kernel path (B) pays it too. ' +
      `By default vmpeer keeps that bridge on the path: C runs at ${fx(cA, 3)}× and D at ${fx(F.q('D', 'A', 'rrRate'), 3)}× the plain pod's request/response rate.`,
  );
  out.push('');
  if (F.has('Cb')) {
    out.push(
      "`vmpeer attach --bypass-bridge` (Cb, Db) takes the bridge out of the guest's unicast IP traffic in both directions: `fixup` sends the frames for the guest from `eth0-nic` straight to `tap0` (`bpf_redirect()`), and `from_guest`, at `tap0` ingress, sends the guest's frames for its gateway straight into the host veth (`bpf_redirect_peer()`), where the CNI's programs (policy) still see them. " +
        "It skips what the bridge would apply to that traffic: rules in the pod's netns that br_netfilter hands bridged frames to (iptables/nftables; KubeVirt's bridge binding puts none there, yet the hooks cost with no rule loaded, see Cn), and the bridge's FDB learning from unicast frames; `tcpdump -i k6t-eth0` no longer sees it. ARP, DHCP and other broadcast or multicast frames still cross the bridge. It is opt-in for that reason.",
    );
    out.push('');
  }
  const lines: string[] = [];
  lines.push(`- C vs A: ${fx(F.med('C', 'rrP50Us'))} µs vs ${fx(F.med('A', 'rrP50Us'))} µs per round trip (p50, +${fx(p50Delta(F, 'C', 'A'))} µs), rate ${delta(cA)}, throughput ${delta(F.q('C', 'A', 'throughputGbps'))}.`);
  const prof = bucketDiff(F, 'C', 'A', 'rr');
  if (prof) lines.push(`- Profile, C minus A per round trip: ${prof}.`);
  for (const [on, off] of [['C', 'Cb'], ['D', 'Db']] as Array<[PathId, PathId]>) {
    if (!F.has(off)) continue;
    lines.push(
      `- Bridge bypassed (${off}): p50 ${fx(F.med(off, 'rrP50Us'))} µs, rate ${fx(F.q(off, 'A', 'rrRate'), 3)}× A, throughput ${fx(F.q(off, 'A', 'throughputGbps'), 3)}× A; against ${on}: rate ${effect(F.ratio(off, on, 'rrRate'))}, throughput ${effect(F.ratio(off, on, 'throughputGbps'))}.`,
    );
  }
  const bridgeProf = bucketDiff(F, 'C', 'Cb', 'rr');
  if (bridgeProf) lines.push(`- Profile, C minus Cb per round trip (the bridge): ${bridgeProf}.`);
  if (F.has('Cn')) {
    const gap = p50Delta(F, 'C', 'A');
    const cut = -p50Delta(F, 'Cn', 'C');
    lines.push(
      `- Bridge netfilter off in the VM pod (Cn), the bridge kept: p50 ${fx(F.med('Cn', 'rrP50Us'))} µs, ${fx(cut)} µs less than C, ${pctOf(Math.max(0, cut) / Math.max(1e-9, gap))} of the C–A gap: p50 ratio ${effect(F.ratio('Cn', 'C', 'rrP50Us'))}. ` +
        `br_netfilter costs this with no rule loaded in the pod; rate ${effect(F.ratio('Cn', 'C', 'rrRate'))}, throughput ${effect(F.ratio('Cn', 'C', 'throughputGbps'))}.`,
    );
  }
  if (F.has('Cb')) {
    const rest = bucketDiff(F, 'Cb', 'A', 'rr');
    lines.push(
      `- What is left with the bridge bypassed (+${fx(p50Delta(F, 'Cb', 'A'))} µs p50 for Cb over A${rest ? `; profile, Cb minus A: ${rest}` : ''}) is the guest's own device hop (tap0 ⇄ guest eth0, one more device and backlog enqueue each way), which a real VM has as well (as the tap and virtio, a costlier one).`,
    );
  }
  out.push(...lines);
  out.push('');
  if (F.has('Cb')) {
    out.push(`With the bridge bypassed, against the kernel path: Cb/B rate ${delta(F.q('Cb', 'B', 'rrRate'))}, throughput ${delta(F.q('Cb', 'B', 'throughputGbps'))}; Db/B rate ${delta(F.q('Db', 'B', 'rrRate'))}, throughput ${delta(F.q('Db', 'B', 'throughputGbps'))}.`);
    out.push('');
  }

  // 2. fast path vs kernel path
  out.push('### The fast path vs the kernel path (C/B, D/B)');
  out.push('');
  const aa0 = F.ratio('A', 'A0', 'rrRate');
  out.push(
    `The fast path saves the node's part of the kernel path: \`ip_rcv\` → route lookup → \`ip_forward\` → neighbour output → the host veth's transmit and one backlog enqueue. ` +
      `On this lab node that part is cheap: the node netns has no netfilter rules and one route per pod (a real Calico node has thousands of iptables/nftables rules on that path, and conntrack). ` +
      (aa0 ? `Even a plain pod gains only ${delta(aa0.paired.median)} in request/response rate (A vs A0, p50 ${fx(F.med('A', 'rrP50Us'))} vs ${fx(F.med('A0', 'rrP50Us'))} µs) and ${delta(F.q('A', 'A0', 'throughputGbps'))} in throughput from it here. ` : '') +
      `For the VM, C changes the rate by ${delta(F.q('C', 'B', 'rrRate'))} and throughput by ${delta(F.q('C', 'B', 'throughputGbps'))} against B; D by ${delta(F.q('D', 'B', 'rrRate'))} and ${delta(F.q('D', 'B', 'throughputGbps'))}.`,
  );
  out.push('');
  const cbProf = bucketDiff(F, 'C', 'B', 'rr');
  if (cbProf) out.push(`- Profile, C minus B per round trip: ${cbProf}.`);
  const bulk = r.profiles.filter((p) => p.metric === 'throughput');
  if (bulk.length >= 2) {
    const copies = bulk.map((p) => (p.profile.buckets['data copies (user <-> kernel)'] * 1000) / (p.rate / 8e9));
    out.push(
      `- Bulk profiles do not resolve differences of this size: the copies between user space and sockets, the same bytes on every path, cost ${fx(Math.min(...copies), 0)}–${fx(Math.max(...copies), 0)} ms per GB from one profile to the next. ` +
        'One core moving ~2 GB/s is bound by memory and cache, which the other CPU\'s work on this machine shares; the request/response profiles above are the stable ones.',
    );
  }
  const cpuC = r.cpu.C;
  const cpuB = r.cpu.B;
  if (cpuC && cpuB) {
    out.push(
      `- Softirq time per round trip: ${fx(cpuB.rr.softirqUsPerRoundTrip)} µs (B) vs ${fx(cpuC.rr.softirqUsPerRoundTrip)} µs (C); per GB of bulk: ${fx(cpuB.tput.softirqMsPerGB, 1)} vs ${fx(cpuC.tput.softirqMsPerGB, 1)} ms. ` +
        'In bulk transfer the work per byte is dominated by the copies into and out of the sockets and by TCP, which both paths share; per-packet savings are spread over 64 KB TSO super-frames.',
    );
  }
  out.push('');

  // 3. the prototype's C-below-B observation
  out.push('### "C 5–10 % below B in throughput" (the prototype run)');
  out.push('');
  const cbT = F.ratio('C', 'B', 'throughputGbps');
  const cv = F.ratio('Cv', 'C', 'throughputGbps');
  const bf = F.ratio('Bf', 'B', 'throughputGbps');
  out.push(
    `Here C/B throughput is ${fx(cbT?.paired.median, 3)} (per round: ${cbT?.perRound.map((x) => x.toFixed(2)).join(', ') ?? '–'}). Three candidate causes, each measured:`,
  );
  out.push('');
  out.push(
    `- **The fixup's \`pkt_type\` choice.** \`fixup\` sets PACKET_OTHERHOST on the frames it re-addresses, as \`eth_type_trans()\` does for a frame to the guest's MAC on a bridge port; the kernel path's frames arrive that way too. ` +
      'In br_netfilter, PACKET_OTHERHOST only sets a flag (`pkt_otherhost`) that the hook restores after the IP hooks; bridge forwarding does not look at it, and the guest\'s device re-derives it. ' +
      (F.has('Cv')
        ? `Measured in this run: a fixup built without \`bpf_skb_change_type()\` (Cv) vs C: throughput ${effect(cv)}; rate ${effect(F.ratio('Cv', 'C', 'rrRate'))}; p50 ${effect(F.ratio('Cv', 'C', 'rrP50Us'))}${(F.focus ?? []).some((f) => f.result.num === 'Cv') ? ' (the focused checks below settle it)' : ''}.` +
          (r.prototypes.noPktTypeDiffers ? '' : ' (The variant did not differ from the shipped object: the comparison is void.)')
        : 'Not measured in this run.'),
  );
  out.push(
    `- **The extra program.** The per-packet cost above (tens of ns) against a 64 KB super-frame is noise. ` +
      (F.has('Bf')
        ? `Measured in this run: B with fixup attached (Bf) vs B: throughput ${effect(bf)}; rate ${effect(F.ratio('Bf', 'B', 'rrRate'))}; p50 ${effect(F.ratio('Bf', 'B', 'rrP50Us'))}.`
        : 'Not measured in this run.'),
  );
  const spreads = ['A', 'B', 'C', 'D'].map((id) => r.summary[id as PathId]?.throughputGbps).filter((s): s is Summary => !!s);
  const worstSpread = Math.max(...spreads.map((s) => (s.max - s.min) / s.median));
  const un = r.unpinned ?? [];
  const unC = un.filter((u) => u.path === 'C').map((u) => u.gbps);
  const unB = un.filter((u) => u.path === 'B').map((u) => u.gbps);
  const unRatios = [...new Set(un.map((u) => u.round))]
    .map((round) => {
      const c = un.find((u) => u.round === round && u.path === 'C');
      const b = un.find((u) => u.round === round && u.path === 'B');
      return c && b ? c.gbps / b.gbps : NaN;
    })
    .filter(Number.isFinite);
  const range = (xs: number[], d = 2) => (xs.length ? `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}` : '–');
  out.push(
    `- **Noise.** On this shared 2-CPU machine other jobs come and go, and with client and servers free to run anywhere the scheduler decides per run whether they share a CPU. ` +
      (unRatios.length > 0
        ? `After each round, C and B were also run the way the prototype did (unpinned, default priority, ${r.method.tputSeconds > 0 ? 'same tools' : ''}): C ${range(unC)} Gbit/s, B ${range(unB)} Gbit/s, C/B per round ${unRatios.map((x) => x.toFixed(2)).join(', ')}, ` +
          `while pinned and paired C/B stayed within ${range(cbT?.perRound ?? [], 3)}. `
        : '') +
      `Pinned, one path's throughput still spans ${pctOf(worstSpread)} (max−min over median) across rounds here${F.ratio('A2', 'A', 'throughputGbps') ? `, and the same path measured twice in a round differs by ${fx(F.ratio('A2', 'A', 'throughputGbps')!.paired.min, 2)}–${fx(F.ratio('A2', 'A', 'throughputGbps')!.paired.max, 2)}` : ''}. ` +
      'A 5–10 % gap between two unpinned single runs is inside that noise.',
  );
  if (F.has('D')) {
    out.push(
      `- **C against D**, both vmpeer, the prototype's other comparison: D/C throughput ${effect(F.ratio('D', 'C', 'throughputGbps'))}; rate ${effect(F.ratio('D', 'C', 'rrRate'))}; p50 ${effect(F.ratio('D', 'C', 'rrP50Us'))}.`,
    );
  }
  const focus = F.focus ?? [];
  if (focus.length > 0) {
    out.push('');
    out.push(
      'Five rounds inside a full run can only hint at differences of a few percent, so each question also got a **focused check**: the two paths alone, 12–16 rounds, in a run of its own (`--focus`), judged by an exact sign test. Median ratio, rounds above 1 of all, p:',
    );
    out.push('');
    const sign = (f: FocusRef, k: MetricId) => {
      const x = f.result.ratios.find((q) => q.metric === k);
      const t = f.result.signs[k];
      const c = `${fx(x?.paired.median, 3)} (${t.above}/${t.n}, p ${fx(t.p, 2)})`;
      return t.p < 0.05 ? `**${c}**` : c;
    };
    out.push(
      ...table(
        ['check', 'what it isolates', 'rate', 'throughput', 'p50', 'p99', 'rounds'],
        focus.map((f) => [
          `[${f.result.num}/${f.result.den}](${f.file})`,
          DIAG_MEANING[`${f.result.num}/${f.result.den}`] ?? (f.result.num === 'C' && f.result.den === 'B' ? "the prototype's C vs B" : ''),
          sign(f, 'rrRate'),
          sign(f, 'throughputGbps'),
          sign(f, 'rrP50Us'),
          sign(f, 'rrP99Us'),
          String(f.result.rounds),
        ]),
        ['---', '---', '---:', '---:', '---:', '---:', '---:'],
      ),
    );
    const tests = focus.flatMap((f) => METRIC_IDS.map((k) => ({ f, k, t: f.result.signs[k] })));
    const hits = tests.filter((x) => x.t.p < 0.05);
    out.push('');
    out.push(
      `${hits.length} of the ${tests.length} sign tests reach p < 0.05 (about ${fx(tests.length * 0.05, 1)} would by chance alone)` +
        (hits.length > 0 ? `: ${hits.map((x) => `${x.f.result.num}/${x.f.result.den} ${METRICS[x.k].label}`).join(', ')}.` : '.'),
    );
  }
  const cbFocus = (F.focus ?? []).filter((f) => f.result.num === 'C' && f.result.den === 'B').at(-1)?.result;
  out.push('');
  out.push(
    `**Verdict:** ${withinNoise(cbT) ? 'C and B do not differ measurably in throughput in this run' : `C/B throughput is ${fx(cbT?.paired.median, 3)}, ${cbT!.paired.median >= 1 ? 'C ahead' : 'C behind'} in every round`}` +
      `${cbFocus ? ` (focused check: throughput ${fx(cbFocus.ratios.find((x) => x.metric === 'throughputGbps')?.paired.median, 3)}, ${cbFocus.signs.throughputGbps.p < 0.05 ? 'measurable' : 'not measurable'}; request/response rate ${fx(cbFocus.ratios.find((x) => x.metric === 'rrRate')?.paired.median, 3)}, ${cbFocus.signs.rrRate.p < 0.05 ? `C ahead in ${cbFocus.signs.rrRate.above} of ${cbFocus.signs.rrRate.n} rounds` : 'not measurable'})` : ''}: C is not slower than B; ` +
      `${noCost(F, 'Cv', 'C') && noCost(F, 'Bf', 'B') ? `neither the pkt_type choice nor the extra program shows a measurable cost${(F.focus ?? []).length > 0 ? ' (decided by the focused checks: Cv/Cs for pkt_type, the same loader on both sides, and Bf/B)' : ''}, and the prototype's gap is explained by noise. Nothing to fix in \`bpf/\` for it.` : 'see the pkt_type and extra-program figures above for what is measurable.'}`,
  );
  return out;
}

/** No measurable difference between a variant and its reference: the focused check decides when there is one, else this run's sign test. */
function noCost(F: Facts, num: PathId, den: PathId): boolean {
  const pick = (a: PathId, b: PathId) => (F.focus ?? []).filter((x) => x.result.num === a && x.result.den === b).at(-1);
  // pkt_type: the check with the same loader on both sides is the clean one
  const f = (num === 'Cv' ? pick('Cv', 'Cs') : undefined) ?? pick(num, den);
  if (f) return Object.values(f.result.signs).every((s) => s.p >= 0.05);
  return withinNoise(F.ratio(num, den, 'throughputGbps')) && withinNoise(F.ratio(num, den, 'rrRate'));
}

function missedSection(F: Facts): string[] {
  const { r } = F;
  const out = ['## Missed targets and next steps', ''];
  const missed = r.targets.filter((t) => t.met === false);
  if (r.quick) {
    out.push('Quick run: targets are not judged.');
    return out;
  }
  if (missed.length === 0) {
    out.push('None.');
    return out;
  }
  const why = '(#the-vm-pods-bridge-ca-and-da-vs-cba-and-dba)';
  const cost = [1 - F.q('C', 'A', 'rrRate'), 1 - F.q('D', 'A', 'rrRate')];
  for (const t of missed) {
    const [vm] = t.pair;
    const off = vm === 'C' ? 'Cb' : vm === 'D' ? 'Db' : null;
    out.push(
      `- **${t.name}: ${fx(t.value, 3)} < ${t.min}.** ` +
        (off
          ? `${t.metric === 'rrRate' ? 'Each round trip crosses the VM pod bridge twice' : 'Each super-frame crosses the VM pod bridge (with br_netfilter)'}; ${F.has(off) ? `with \`--bypass-bridge\` (${off}) it is ${fx(F.q(off, 'A', t.metric), 3)}` : '`--bypass-bridge` takes it out'}; see [above]${why}.`
          : `The bridge is bypassed; its p50 is ${fx(p50Delta(F, vm, 'A'))} µs above A's, the guest's own device hop; see [above]${why} and below.`),
    );
  }
  out.push('');
  out.push(
    "The default keeps the VM pod's bridge, and with it what an operator may rely on there (iptables/nftables rules for bridged traffic in the pod's netns, FDB learning, `tcpdump` on `k6t-eth0`): " +
      `that is the ${pctOf(Math.min(...cost))}–${pctOf(Math.max(...cost))} of request/response rate the default paths (C, D) give up against the plain pod. ` +
      `\`vmpeer attach --bypass-bridge\` takes the bridge out${F.has('Cb') ? ` (here Cb runs at ${fx(F.q('Cb', 'A', 'rrRate'))}× and Db at ${fx(F.q('Db', 'A', 'rrRate'))}× the plain pod's rate)` : ''} where nothing relies on it for the guest's unicast IP traffic (KubeVirt's bridge binding does not); ` +
      "where something does, `net.bridge.bridge-nf-call-iptables=0` in the VM pods gets the br_netfilter share back (Cn), if nothing relies on iptables seeing bridged traffic there.",
  );
  if (missed.some((t) => bypassed(F, t.pair[0]))) {
    out.push('');
    out.push(
      "What remains with the bypass is the tap hop: the VM's own device, which vmpeer cannot remove. The target is then better stated against a plain pod with one device more.",
    );
  }
  return out;
}

function controlPlaneSection(F: Facts, format?: (r: NonNullable<BenchResult['controlPlane']>) => string): string[] {
  if (F.r.controlPlane && format) return [format(F.r.controlPlane).trimEnd()];
  return [
    '## Control plane',
    '',
    '**Pending in this report.** Daemon cold start, time to cover a new pod, RSS and CPU are measured by `scripts/bench/control-plane.ts`; `npm run bench -- --control-plane` adds that run to this report (a few minutes more).',
  ];
}

function reproduceSection(F: Facts): string[] {
  return [
    '## Reproduce',
    '',
    '```sh',
    'npm run bench                       # as root: builds, then about 10 minutes; writes bench/results/<date>.{md,json,svg}',
    'npm run bench -- --quick --out /tmp/b   # the smoke test (under a minute) that test/bench runs',
    'node dist/scripts/bench/main.js --from bench/results/<date>.json   # re-render the report and chart',
    '```',
    '',
    `Options: \`--rounds <n>\`, \`--cpu <n>\` (the CPU the traffic is pinned to, default the last), \`--no-profile\`, \`--control-plane\`. The lab's namespaces are named \`vpl<pid>-…\` and its vmpeer state lives in \`/sys/fs/bpf/vpl<pid>-…-vmpeer\`; both are removed at the end, also on failure or Ctrl-C.`,
  ];
}

export interface FocusRef {
  /** The focused check's markdown, next to the report. */
  file: string;
  result: FocusResult;
}

export function report(
  r: BenchResult,
  links: ReportLinks,
  formatControlPlane?: (c: NonNullable<BenchResult['controlPlane']>) => string,
  focus: FocusRef[] = [],
): string {
  const F = facts(r);
  F.focus = focus;
  const sections: string[][] = [
    [`# vmpeer benchmark, ${r.date.slice(0, 10)}${r.quick ? ' (quick run)' : ''}`, ''],
    summarySection(F, links),
    targetsSection(F),
    methodSection(F),
    perPacketSection(F),
    resultsSection(F),
    evidenceSection(F),
    cpuSection(F),
    whySection(F),
    missedSection(F),
    controlPlaneSection(F, formatControlPlane),
    reproduceSection(F),
  ];
  if (r.notes.length > 0) sections.push(['## Notes', '', ...r.notes.map((n) => `- ${n}`)]);
  return sections.map((s) => s.join('\n')).join('\n\n') + '\n';
}
