/**
 * The report's "why the numbers are what they are": the VM pod's bridge, the
 * fast path against the kernel path, and the prototype's C-below-B gap, each
 * figure computed from the result document.
 */
import { BUCKETS } from './profile.js';
import type { PathId } from './paths.js';
import { METRICS, METRIC_IDS, type MetricId } from './results.js';
import type { Summary } from './stats.js';
import { DIAG_MEANING, delta, effect, type Facts, type FocusRef, fx, p50Delta, pctOf, table, withinNoise } from './report-kit.js';

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

/** C/A and D/A against Cb/A and Db/A: what the VM pod's bridge costs, and the bypass. */
function bridgeWhy(F: Facts): string[] {
  const out: string[] = [];
  out.push("### The VM pod's bridge (C/A and D/A vs Cb/A and Db/A)");
  out.push('');
  const cA = F.q('C', 'A', 'rrRate');
  out.push(
    `On the plain pod (A) the emulator's \`bpf_redirect_peer()\` lands the frame in the pod's \`eth0\` and the pod's TCP stack takes it. On the VM paths that keep the bridge (C, D: \`--keep-bridge\`) the frame lands on \`eth0-nic\`, a port of the pod's bridge \`k6t-eth0\`: ` +
      'bridge input, bridge netfilter (`br_nf_pre_routing`, `br_nf_forward_ip`, `br_nf_post_routing`: `net.bridge.bridge-nf-call-iptables` is 1 in every new netns on this kernel), forwarding to `tap0`, and one more device hop to the guest. ' +
      'Every reply from the guest crosses the same bridge the other way. None of this is vmpeer\'s doing, and the kernel path (B) pays it too. ' +
      `With the bridge kept on the path, C runs at ${fx(cA, 3)}× and D at ${fx(F.q('D', 'A', 'rrRate'), 3)}× the plain pod's request/response rate.`,
  );
  out.push('');
  if (F.has('Cb')) {
    out.push(
      "By default `vmpeer attach` (Cb, Db) takes the bridge out of the guest's unicast IP traffic in both directions: `fixup` sends the frames for the guest from `eth0-nic` straight to `tap0` (`bpf_redirect()`), and `from_guest`, at `tap0` ingress, sends the guest's frames for its gateway straight into the host veth (`bpf_redirect_peer()`), where the CNI's programs (policy) still see them. " +
        "It skips what the bridge would apply to that traffic: rules in the pod's netns that br_netfilter hands bridged frames to (iptables/nftables; KubeVirt's bridge binding puts none there, yet the hooks cost with no rule loaded, see Cn), and the bridge's FDB learning from unicast frames; `tcpdump -i k6t-eth0` no longer sees it. ARP, DHCP, IPv6 neighbour discovery and other broadcast or multicast frames still cross the bridge (each checked in test/cli/bypass-default); a bridge with a second guest port keeps the bridge, and `--keep-bridge` keeps it for every pod.",
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
  return out;
}

/** C/B and D/B: what the fast path saves against the kernel path on this lab node. */
function fastPathWhy(F: Facts): string[] {
  const { r } = F;
  const out: string[] = [];
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
  return out;
}

/** The focused checks (`--focus`): each question's two paths alone, many rounds, an exact sign test. */
function focusChecks(F: Facts): string[] {
  const out: string[] = [];
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
  return out;
}

/** The prototype's "C 5-10 % below B in throughput": each candidate cause, measured, and the focused checks. */
function prototypeGapWhy(F: Facts): string[] {
  const { r } = F;
  const out: string[] = [];
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
  out.push(...focusChecks(F));
  const cbFocus = (F.focus ?? []).filter((f) => f.result.num === 'C' && f.result.den === 'B').at(-1)?.result;
  out.push('');
  out.push(
    `**Verdict:** ${withinNoise(cbT) ? 'C and B do not differ measurably in throughput in this run' : `C/B throughput is ${fx(cbT?.paired.median, 3)}, ${cbT!.paired.median >= 1 ? 'C ahead' : 'C behind'} in every round`}` +
      `${cbFocus ? ` (focused check: throughput ${fx(cbFocus.ratios.find((x) => x.metric === 'throughputGbps')?.paired.median, 3)}, ${cbFocus.signs.throughputGbps.p < 0.05 ? 'measurable' : 'not measurable'}; request/response rate ${fx(cbFocus.ratios.find((x) => x.metric === 'rrRate')?.paired.median, 3)}, ${cbFocus.signs.rrRate.p < 0.05 ? `C ahead in ${cbFocus.signs.rrRate.above} of ${cbFocus.signs.rrRate.n} rounds` : 'not measurable'})` : ''}: C is not slower than B; ` +
      `${noCost(F, 'Cv', 'C') && noCost(F, 'Bf', 'B') ? `neither the pkt_type choice nor the extra program shows a measurable cost${(F.focus ?? []).length > 0 ? ' (decided by the focused checks: Cv/Cs for pkt_type, the same loader on both sides, and Bf/B)' : ''}, and the prototype's gap is explained by noise. Nothing to fix in \`bpf/\` for it.` : 'see the pkt_type and extra-program figures above for what is measurable.'}`,
  );
  return out;
}

export function whySection(F: Facts): string[] {
  return ['## Why the numbers are what they are', '', ...bridgeWhy(F), ...fastPathWhy(F), ...prototypeGapWhy(F)];
}

/** No measurable difference between a variant and its reference: the focused check decides when there is one, else this run's sign test. */
function noCost(F: Facts, num: PathId, den: PathId): boolean {
  const pick = (a: PathId, b: PathId) => (F.focus ?? []).filter((x) => x.result.num === a && x.result.den === b).at(-1);
  // pkt_type: the check with the same loader on both sides is the clean one
  const f = (num === 'Cv' ? pick('Cv', 'Cs') : undefined) ?? pick(num, den);
  if (f) return Object.values(f.result.signs).every((s) => s.p >= 0.05);
  return withinNoise(F.ratio(num, den, 'throughputGbps')) && withinNoise(F.ratio(num, den, 'rrRate'));
}

