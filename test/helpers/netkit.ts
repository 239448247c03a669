/**
 * A lab VM pod whose pod device is a netkit pair instead of a veth, as
 * Calico's netkit mode creates it (L2, policy PASS, the node end named
 * cali…, Calico's MAC on it), through test/helpers/netkit.py: bookworm's
 * iproute2 (6.1) cannot create netkit devices, and sid's needs glibc 2.38.
 */
import path from 'node:path';
import { CALICO_HOST_MAC, VM_BRIDGE, VM_NIC, VM_TAP, type Lab, type LabVm } from '../../lib/lab/index.js';
import { run, runIn } from '../../lib/lab/exec.js';
import { caliNodeLines, caliSysctls, iface, links, portsForwarding, type Iface, type LinkInfo } from '../../lib/lab/wiring.js';
import { packageRoot } from '../../lib/native.js';

const script = path.join(packageRoot, 'test', 'helpers', 'netkit.py');

export interface NetkitPod {
  /** The netkit primary in the node netns (where the veth's host end was, same name). */
  primary: Iface;
  /** The netkit peer in the pod netns: eth0-nic, the bridge's uplink port. */
  peer: Iface;
  /** `ip -d -j link` of the peer, as the kernel reports it. */
  peerInfo: { kind?: string; master?: string };
}

/**
 * Replaces `vm`'s cali veth by a netkit pair with the same names and MACs:
 * the primary gets the veth's route and proxy ARP back, the peer joins the
 * bridge as eth0-nic did (learning off). One shell in the node netns (each
 * process costs seconds in an emulated kernel-matrix VM). Throws with the
 * kernel's errno when the kernel cannot (no netkit, or netkit refused as a
 * bridge port).
 */
export async function netkitPodDevice(lab: Lab, vm: LabVm): Promise<NetkitPod> {
  const node = lab.node.ns;
  const cali = vm.hostVeth.name;
  const podLines = [`link set ${VM_NIC} master ${VM_BRIDGE}`, `link set ${VM_NIC} type bridge_slave learning off`, `link set ${VM_NIC} up`];
  const steps = [
    `ip link delete ${cali}`,
    `python3 ${script} ${cali} ${CALICO_HOST_MAC} ${VM_NIC} ${vm.nic.mac} ${vm.podNs.path} l2`,
    `printf '%s\\n' ${podLines.map((l) => `'${l}'`).join(' ')} | ip -n ${vm.podNs.name} -batch -`,
    ...caliNodeLines(cali, vm.podIp).map((l) => `ip ${l}`),
    `sysctl -q -w ${caliSysctls(cali).map(([k, v]) => `${k}=${v}`).join(' ')}`,
  ];
  await runIn(node.path, 'sh', ['-ec', steps.join('\n')]);
  await portsForwarding(vm.podNs, [VM_NIC, VM_TAP], 5000);
  const [nodeLinks, podLink] = await Promise.all([
    links(node),
    run('ip', ['-d', '-j', '-n', vm.podNs.name, 'link', 'show', VM_NIC]).then((r) => (JSON.parse(r.stdout) as Array<LinkInfo & { master?: string; linkinfo?: { info_kind?: string } }>)[0]!),
  ]);
  return {
    primary: iface(nodeLinks, cali),
    peer: { name: VM_NIC, ifindex: podLink.ifindex, mac: podLink.address },
    peerInfo: { kind: podLink.linkinfo?.info_kind, master: podLink.master },
  };
}

/**
 * Whether the pod's bridge takes a netkit device in L3 mode as a port: a
 * throwaway L3 pair in the pod netns, the bridge asked to enslave one end,
 * the pair deleted again. Returns ip's error ('' when it was taken).
 */
export async function netkitL3AsBridgePort(vm: LabVm): Promise<string> {
  const steps = [
    `python3 ${script} vptl3a - vptl3b - ${vm.podNs.path} l3`,
    `ip link set vptl3a master ${VM_BRIDGE} 2>&1 || true`,
    'ip link delete vptl3a',
    'exit 0',
  ];
  return (await runIn(vm.podNs.path, 'sh', ['-ec', steps.join('\n')])).stdout.trim();
}
