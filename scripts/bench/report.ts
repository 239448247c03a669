/**
 * The benchmark report (bench/results/<date>.md) from a result document:
 * for operators, what was measured and how, every figure, the ratios against
 * the targets, and why the numbers are what they are, with the evidence.
 *
 * Every number and every comparison in the text is computed from the
 * document, so a new run re-writes a consistent report.
 */
import type { PathId } from './paths.js';
import { METRICS, METRIC_IDS, PRIMARY_PAIRS, TARGETS_TEXT, type BenchResult, type MetricId } from './results.js';
import { DIAG_MEANING, type Facts, type FocusRef, bypassed, cell, delta, facts, fx, p50Delta, pctOf, ratioCell, table } from './report-kit.js';
import { whySection } from './report-why.js';
import { perPacketSection } from './report-per-packet.js';
import { cpuSection, evidenceSection } from './report-evidence.js';

export type { FocusRef } from './report-kit.js';

export interface ReportLinks {
  svg: string;
  json: string;
}

// ------------------------------------------------------------------ sections

function summarySection(F: Facts, links: ReportLinks): string[] {
  const { r } = F;
  const out: string[] = [];
  const missed = r.targets.filter((x) => x.met === false);
  const bypass = F.has('Cb') && F.has('Db');
  out.push(
    (bypass
      ? `By default (the VM pod's bridge bypassed), a bridged KubeVirt VM with vmpeer runs at **${fx(F.q('Cb', 'A', 'rrRate'))}× (fixup, Cb) and ${fx(F.q('Db', 'A', 'rrRate'))}× (redirect, Db) the plain pod's request/response rate** ` +
        `and **${fx(F.q('Cb', 'A', 'throughputGbps'))}× / ${fx(F.q('Db', 'A', 'throughputGbps'))}× its bulk throughput** on the same fast path (A); `
      : 'A bridged KubeVirt VM with vmpeer runs ') +
      `with \`--keep-bridge\` (its traffic through the VM pod's bridge), at ${fx(F.q('C', 'A', 'rrRate'))}× (C) / ${fx(F.q('D', 'A', 'rrRate'))}× (D) the plain pod's rate and ${fx(F.q('C', 'A', 'throughputGbps'))}× / ${fx(F.q('D', 'A', 'throughputGbps'))}× its throughput. ` +
      (r.quick
        ? 'This is a quick run (a smoke test): the targets are not judged.'
        : missed.length === 0
          ? `Every target (${TARGETS_TEXT}) is met.`
          : `${missed.length} of ${r.targets.length} targets (${TARGETS_TEXT}) are missed: see [why](#why-the-numbers-are-what-they-are) and [next steps](#missed-targets-and-next-steps).`),
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
      "What separates the --keep-bridge paths (C, D) from a plain pod is the VM pod's own bridge (with bridge netfilter) in both directions, not vmpeer's programs: by default `vmpeer attach` takes it out of the guest's unicast IP traffic (Cb, Db), at the price of what that bridge would apply there (see [why](#why-the-numbers-are-what-they-are) and the README's \"Bridge bypass\").",
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
        return [t.name, bypassed(F, t.pair[0]) ? 'bypassed (the default)' : 'on the path (`--keep-bridge`)', `≥ ${t.min}`, ratioCell(x), fx(x?.ofMedians, 3), verdict];
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
  out.push('Every VM path against the plain pod (A) and against the kernel path (B), for every metric (latency ratios: lower is better; Cb and Db: the bridge bypassed, the default; C and D: `--keep-bridge`):');
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
      "By default (Cb, Db), `fixup` sends the guest's frames from `eth0-nic` straight to `tap0` and `from_guest` (at `tap0` ingress) sends the guest's frames for its gateway straight into the `cali…` veth: `k6t-eth0` is off the path of the guest's unicast IP traffic.",
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
          p.fixup ? `\`vmpeer attach --netns${p.bypass ? '' : ' --keep-bridge'}\`` : p.extra === 'fixup-no-pkt-type' ? 'fixup variant (in-process loader)' : p.extra === 'fixup-in-process' ? 'shipped fixup (in-process loader)' : p.fixup === null ? 'VM pod left as it is' : 'no fixup',
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
          ? `${t.metric === 'rrRate' ? 'Each round trip crosses the VM pod bridge twice' : 'Each super-frame crosses the VM pod bridge (with br_netfilter)'}; ${F.has(off) ? `with the bridge bypassed, the default (${off}), it is ${fx(F.q(off, 'A', t.metric), 3)}` : 'the default (the bridge bypass) takes it out'}; see [above]${why}.`
          : `The bridge is bypassed; its p50 is ${fx(p50Delta(F, vm, 'A'))} µs above A's, the guest's own device hop; see [above]${why} and below.`),
    );
  }
  out.push('');
  out.push(
    "`--keep-bridge` keeps the VM pod's bridge, and with it what an operator may rely on there (iptables/nftables rules for bridged traffic in the pod's netns, FDB learning, `tcpdump` on `k6t-eth0`): " +
      `that is the ${pctOf(Math.min(...cost))}–${pctOf(Math.max(...cost))} of request/response rate the --keep-bridge paths (C, D) give up against the plain pod. ` +
      `By default vmpeer takes the bridge out${F.has('Cb') ? ` (here Cb runs at ${fx(F.q('Cb', 'A', 'rrRate'))}× and Db at ${fx(F.q('Db', 'A', 'rrRate'))}× the plain pod's rate)` : ''} wherever that is safe (KubeVirt's bridge binding relies on the bridge only for broadcast and multicast, which still cross it); ` +
      "where something relies on it and the bridge is kept, `net.bridge.bridge-nf-call-iptables=0` in the VM pods gets the br_netfilter share back (Cn), if nothing relies on iptables seeing bridged traffic there.",
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
    '**Pending in this report.** Daemon cold start at 100 and 1000 VM pods, time to cover a new pod and a guest from its first frame, RSS, CPU, the cost of a /metrics scrape and leaks over 200 create/delete cycles are measured by `scripts/bench/control-plane.ts`; `npm run bench -- --control-plane` adds that run to this report (about 8 minutes more).',
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
    `Options: \`--rounds <n>\`, \`--cpu <n>\` (the CPU the traffic is pinned to, default the last), \`--no-profile\`, \`--control-plane\` (\`--control-plane-only\`: that part alone, into a temp dir or \`--out\`; \`--pods <n,...>\`: its populations). The lab's namespaces are named \`vpl<pid>-…\` and its vmpeer state lives in \`/sys/fs/bpf/vpl<pid>-…-vmpeer\`; both are removed at the end, also on failure or Ctrl-C.`,
  ];
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
