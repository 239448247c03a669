/** The report's per-packet section (BPF_PROG_TEST_RUN deltas), also at 250 and 1000 guests. */
import { AT_SCALE_SPREAD_NS, perPacketTargetNs } from './per-packet.js';
import { type Facts, fx, pctOf, table } from './report-kit.js';

export function perPacketSection(F: Facts): string[] {
  const out = ['## Per-packet cost', ''];
  const cases = F.r.perPacket;
  const compared = cases.some((c) => c.compareDeltaNs !== undefined);
  const missed = cases.filter((c) => c.deltaNs > perPacketTargetNs(c));
  out.push(
    missed.length === 0
      ? `Every case is within its target (a frame rewritten ≤ +20 ns, also sent on by the program itself ≤ +30 ns; a passed frame ≤ +10 ns).`
      : `${missed.length} of ${cases.length} cases are over their target (a frame rewritten ≤ +20 ns, also sent on by the program itself ≤ +30 ns; a passed frame ≤ +10 ns): ${missed.map((c) => `\`${c.program}\` ${c.frame}`).join('; ')}.`,
  );
  if (cases.some((c) => c.pod)) {
    out.push(
      '',
      "`(pod)`: the pod's own instance of the program (its netns in `vmpeer_pod`), the one the default bridge bypass runs: `fixup` re-addresses the frame and sends it to the guest port (`bpf_redirect()`), `from_guest` sends the guest's frame into the host veth (`bpf_redirect_peer()`). The other `fixup` rows are the shared program of pods that keep their bridge.",
    );
  }
  if (compared) {
    out.push(
      '',
      'The last column is the previous release\'s data path (the frozen build of endpoint-table layout 2, `bpf/test/v2_vmpeer.bpf.c`: unkeyed table, 16 probes, no per-pod bypass constant) measured in the same rounds, interleaved with this build and the baseline: what this release changed, apart from how fast the machine was that day.',
    );
  }
  out.push('');
  out.push(
    ...table(
      ['program', 'frame', 'arrives as', 'ns/packet', 'pass-through', 'delta (min–max)', 'target', ...(compared ? ['layout 2 build'] : [])],
      cases.map((c) => [
        `\`${c.program}\`${c.pod ? ' (pod)' : ''}`,
        c.frame,
        c.pktType === 'host' ? 'PACKET_HOST' : 'PACKET_OTHERHOST',
        fx(c.nsPerPacket, 1),
        fx(c.baselineNs, 1),
        `**+${fx(c.deltaNs, 1)}** <sub>${fx(c.spreadNs[0], 1)}–${fx(c.spreadNs[1], 1)}</sub>`,
        `≤ +${perPacketTargetNs(c)}${c.deltaNs > perPacketTargetNs(c) ? ' **missed**' : ' met'}`,
        ...(compared ? [c.compareDeltaNs === undefined ? '' : `+${fx(c.compareDeltaNs, 1)}`] : []),
      ]),
      ['---', '---', '---', '---:', '---:', '---:', '---', ...(compared ? ['---:'] : [])],
    ),
  );
  out.push(...perPacketAtSection(F));
  const worst = Math.max(...F.r.perPacket.map((c) => c.deltaNs));
  const rt = F.med('C', 'rrP50Us');
  out.push('');
  out.push(
    `The most expensive case costs ${fx(worst, 1)} ns per frame: against a ${fx(rt, 1)} µs round trip on path C that is ${pctOf((2 * worst) / (rt * 1000), 1)} even if both directions paid it (only the direction to the guest does). ` +
      `A TSO super-frame of up to 64 KB is one frame to these programs, so in bulk transfer the cost disappears.`,
  );
  return out;
}

/** The delta of each case with 2, 250 and 1000 guests in the table, and how far apart they are. */
function perPacketAtSection(F: Facts): string[] {
  const at = F.r.perPacketAt ?? [];
  if (at.length === 0) return [];
  // runs since the at-scale columns share their rounds carry their own two-guest column
  const columns = at.some((c) => c.endpoints === 2) ? at : [{ endpoints: 2, kind: 'random', cases: F.r.perPacket }, ...at];
  const spreads = F.r.perPacket.map((_, i) => {
    const deltas = columns.map((col) => col.cases[i]!.deltaNs);
    return Math.max(...deltas) - Math.min(...deltas);
  });
  const worst = Math.max(...spreads);
  const out = [
    '',
    `**At scale.** The same cases (delta over pass-through, ns) with the table holding more guests: random IPs, or IPs that shared home slots in the unkeyed table of layout 2 (16 per slot); the two measured guests are inserted last. ${at.some((c) => c.endpoints === 2) ? 'Every column was measured in the same rounds, interleaved with one baseline (the two-guest column again, so it can differ a little from the table above). ' : ''}Target: every case within ${AT_SCALE_SPREAD_NS} ns across the columns; ${worst <= AT_SCALE_SPREAD_NS ? `**met** (widest spread ${fx(worst, 1)} ns)` : `**missed** by ${spreads.filter((s) => s > AT_SCALE_SPREAD_NS).length} of ${spreads.length} cases (widest spread ${fx(worst, 1)} ns)`}.`,
    '',
  ];
  out.push(
    ...table(
      ['program', 'frame', ...columns.map((c) => `${c.endpoints}${c.endpoints === 2 ? '' : ` ${c.kind}`}`), 'spread'],
      F.r.perPacket.map((c, i) => {
        const deltas = columns.map((col) => col.cases[i]!.deltaNs);
        return [`\`${c.program}\`${c.pod ? ' (pod)' : ''}`, c.frame, ...deltas.map((d) => `+${fx(d, 1)}`), fx(Math.max(...deltas) - Math.min(...deltas), 1)];
      }),
      ['---', '---', ...columns.map(() => '---:'), '---:'],
    ),
  );
  return out;
}
