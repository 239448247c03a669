/** The report's per-packet section (BPF_PROG_TEST_RUN deltas), also at 250 and 1000 guests. */
import { type Facts, delta, fx, pctOf, table } from './report-kit.js';

export function perPacketSection(F: Facts): string[] {
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
  const columns = [{ endpoints: 2, kind: 'random', cases: F.r.perPacket }, ...at];
  const out = ['', '**At scale.** The same cases (delta over pass-through, ns) with the table holding more guests: random IPs, or IPs that shared home slots in the unkeyed table of layout 2 (16 per slot); the two measured guests are inserted last.', ''];
  out.push(
    ...table(
      ['program', 'frame', ...columns.map((c) => `${c.endpoints}${c.endpoints === 2 ? '' : ` ${c.kind}`}`), 'spread'],
      F.r.perPacket.map((c, i) => {
        const deltas = columns.map((col) => col.cases[i]!.deltaNs);
        return [`\`${c.program}\``, c.frame, ...deltas.map((d) => `+${fx(d, 1)}`), fx(Math.max(...deltas) - Math.min(...deltas), 1)];
      }),
      ['---', '---', ...columns.map(() => '---:'), '---:'],
    ),
  );
  return out;
}
