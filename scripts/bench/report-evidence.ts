/** The report's evidence: where the time of each path goes (softirq, profiles, CPU per round trip). */
import { BUCKETS, type Bucket } from './profile.js';
import { type Facts, fx, pctOf, table } from './report-kit.js';

export function evidenceSection(F: Facts): string[] {
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

export function cpuSection(F: Facts): string[] {
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
