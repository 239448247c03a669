/** A human-readable summary of a lab (for `vmpeer demo` and test logs). */
import type { LabVm } from './lab-guests.js';
import type { ClientHost, NodeHost, PlainPod } from './topology.js';

export interface DescribedLab {
  readonly name: string;
  readonly client: ClientHost;
  readonly node: NodeHost;
  readonly vms: LabVm[];
  readonly plain: PlainPod[];
}

/** `emulator`: "attached (<mode>)" or "detached". */
export function describeLab(lab: DescribedLab, emulator: string): string {
  const lines = [
    `lab ${lab.name}: emulator ${emulator}`,
    `  client  ${lab.client.ip.padEnd(15)} netns ${lab.client.ns.name}`,
    `  node    ${lab.node.ip.padEnd(15)} netns ${lab.node.ns.name}  uplink ${lab.node.uplink.name} ${lab.node.uplink.mac}`,
  ];
  for (const v of lab.vms) {
    const guest = v.qemu ? `QEMU ${v.qemu.release} (${v.qemu.accel})` : `netns ${v.guestNs?.name}`;
    lines.push(
      `  vm${v.index}     ${v.podIp.padEnd(15)} pod netns ${v.podNs.name}  ${v.nic.name} ${v.nic.mac}  dummy ${v.dummyMac}  guest ${v.guestMac} (${guest})  host veth ${v.hostVeth.name}@${v.hostVeth.ifindex}`,
    );
  }
  for (const p of lab.plain) {
    lines.push(`  pod${p.index}    ${p.podIp.padEnd(15)} netns ${p.ns.name}  eth0 ${p.iface.mac}  host veth ${p.hostVeth.name}@${p.hostVeth.ifindex}`);
  }
  return lines.join('\n');
}
