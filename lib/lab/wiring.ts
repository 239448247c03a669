/**
 * The parts a lab pod is wired from, as `ip -batch` lines and small steps:
 * the CNI's veth and its host side (route, proxy ARP), virt-launcher's dummy
 * and bridge, a netns guest, a plain pod's interface (docs/design.md §3, §4).
 * topology.ts (the lab's own pods), dynamic.ts (pods that come and go) and
 * the control-plane benchmark (hundreds of pods) build from these, each in
 * its own order and batching.
 */
import {
  BRIDGE_IP,
  CALICO_HOST_MAC,
  GATEWAY_IP,
  POD_IF,
  VM_BRIDGE,
  VM_NIC,
  VM_TAP,
} from './addressing.js';
import { run, runIn } from './exec.js';
import type { NetnsRef } from './netns.js';

export interface Iface {
  readonly name: string;
  readonly ifindex: number;
  readonly mac: string;
}

export type Sysctl = [string, string | number];

/** IPv6 off in a netns: no link-local addresses, DAD or MLD on quiet wires. */
export const NO_IPV6: Sysctl[] = [
  ['net.ipv6.conf.all.disable_ipv6', 1],
  ['net.ipv6.conf.default.disable_ipv6', 1],
];

/** KubeVirt's virt-launcher pod: the pod's own `eth0` (the dummy) must not answer ARP for the guest. */
export const VM_POD_SYSCTLS: Sysctl[] = [['net.ipv4.conf.all.arp_ignore', 1]];

/** The CNI's veth: `cali` in the node netns (Calico's MAC), `peer` in the pod netns. */
export function caliVethLine(cali: string, node: NetnsRef, pod: NetnsRef, peer: string, peerMac: string): string {
  return `link add ${cali} netns ${node.name} address ${CALICO_HOST_MAC} type veth peer name ${peer} netns ${pod.name} address ${peerMac}`;
}

/** A netns guest's link: `tap0` in the pod (a veth standing in for the tap), the guest's `eth0` with its MAC. */
export function guestVethLine(pod: NetnsRef, guest: NetnsRef, tapMac: string, guestMac: string): string {
  return `link add ${VM_TAP} netns ${pod.name} address ${tapMac} type veth peer name ${POD_IF} netns ${guest.name} address ${guestMac}`;
}

/** The node side of a pod (Calico): the host veth up and a /32 route to the pod over it. */
export function caliNodeLines(cali: string, podIp: string, verb: 'add' | 'replace' = 'add'): string[] {
  return [`link set ${cali} up`, `route ${verb} ${podIp}/32 dev ${cali} scope link`];
}

/** Calico answers the pod's gateway (169.254.1.1) by proxy ARP on the host veth, at once. */
export function caliSysctls(cali: string): Sysctl[] {
  return [
    [`net.ipv4.conf.${cali}.proxy_arp`, 1],
    [`net.ipv4.neigh.${cali}.proxy_delay`, 0],
  ];
}

/** An interface that a pod or guest talks through: the pod IP, the gateway on-link, the default route via it. */
export function podInterfaceLines(podIp: string): string[] {
  return ['link set lo up', `link set ${POD_IF} up`, `addr add ${podIp}/32 dev ${POD_IF}`, `route add ${GATEWAY_IP} dev ${POD_IF} scope link`, `route add default via ${GATEWAY_IP} dev ${POD_IF}`];
}

export type DummyKind = 'dummy' | 'bridge';

let dummySupported: boolean | undefined;

/**
 * The kind of a VM pod's `eth0`: a dummy, or a DOWN bridge where the kernel
 * has no dummy driver (the kernel matrix's minimal kernels). Probed once in
 * `ns`, which is left as it was.
 */
export async function dummyKind(ns: NetnsRef): Promise<DummyKind> {
  if (dummySupported === undefined) {
    const probe = await run('ip', ['-n', ns.name, 'link', 'add', 'vptprobe', 'type', 'dummy'], { allowFail: true });
    dummySupported = probe.code === 0;
    if (dummySupported) await run('ip', ['-n', ns.name, 'link', 'delete', 'vptprobe']);
  }
  return dummySupported ? 'dummy' : 'bridge';
}

/** virt-launcher's `eth0`: the pod's original MAC and IP, down. */
export function dummyLines(mac: string, podIp: string, kind: DummyKind): string[] {
  return [`link add ${POD_IF} address ${mac} type ${kind}`, `addr add ${podIp}/32 dev ${POD_IF}`];
}

/**
 * virt-launcher's bridge: `k6t-eth0` with the uplink port's MAC (not the
 * guest's) and 169.254.75.10, `eth0-nic` a port with learning off, `tap0`
 * the guest's port. `ageingTimeCs`: FDB ageing in centiseconds (default the
 * kernel's 300 s).
 */
export function bridgeLines(nicMac: string, options: { ageingTimeCs?: number } = {}): string[] {
  const ageing = options.ageingTimeCs === undefined ? '' : ` ageing_time ${options.ageingTimeCs}`;
  return [
    `link add ${VM_BRIDGE} address ${nicMac} type bridge${ageing}`,
    `addr add ${BRIDGE_IP}/32 dev ${VM_BRIDGE}`,
    `link set ${VM_NIC} master ${VM_BRIDGE}`,
    `link set ${VM_NIC} type bridge_slave learning off`,
    `link set ${VM_TAP} master ${VM_BRIDGE}`,
    `link set ${VM_BRIDGE} up`,
    `link set ${VM_NIC} up`,
    `link set ${VM_TAP} up`,
  ];
}

/**
 * Waits until the bridge ports `ports` in `ns` forward with carrier: the
 * kernel processes a port's carrier in linkwatch, up to a second late.
 */
export async function portsForwarding(ns: NetnsRef, ports: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { stdout } = await runIn(ns.path, 'bridge', ['-j', 'link', 'show']);
    const state = new Map((JSON.parse(stdout || '[]') as Array<{ ifname: string; state?: string; flags?: string[] }>).map((p) => [p.ifname, p]));
    if (ports.every((p) => state.get(p)?.state === 'forwarding' && state.get(p)?.flags?.includes('LOWER_UP'))) return;
    if (Date.now() > deadline) {
      throw new Error(`lab: bridge ports in ${ns.name} not forwarding: ${ports.map((p) => `${p} ${state.get(p)?.state} ${state.get(p)?.flags?.join(',')}`).join('; ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export interface LinkInfo {
  ifname: string;
  ifindex: number;
  address: string;
  /** A veth's peer ifindex (in the peer's netns). */
  link_index?: number;
}

/** The links of a netns as the kernel assigned them (ifindexes, MACs), by name. */
export async function links(ns: NetnsRef): Promise<Map<string, LinkInfo>> {
  const { stdout } = await run('ip', ['-j', '-n', ns.name, 'link', 'show']);
  return new Map((JSON.parse(stdout) as LinkInfo[]).map((l) => [l.ifname, l]));
}

export function iface(map: Map<string, LinkInfo>, name: string): Iface {
  const l = map.get(name);
  if (!l) throw new Error(`lab: ${name} is missing`);
  return { name, ifindex: l.ifindex, mac: l.address };
}
