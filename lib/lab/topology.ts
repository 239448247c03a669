/**
 * Builds the lab's wiring: a client on "another node", the node, VM pods in
 * KubeVirt bridge binding and plain pods, the way Calico and KubeVirt set
 * them up (docs/design.md §3 and §4). Only namespaces, links, addresses,
 * routes and sysctls: processes (servers, QEMU) and BPF are other modules'.
 *
 *   client netns            node netns                      VM pod netns              guest netns
 *   eth0 198.18.0.2/24 ==== eth0 198.18.0.1/24
 *                           cali<11hex> ee:ee:.. ========== eth0-nic ─┐ k6t-eth0       (or a QEMU guest
 *                            proxy_arp, POD_IP/32 route                ├ bridge ─ tap0 == eth0 guest MAC
 *                                                                      eth0 (dummy, DOWN) POD_IP/32
 *                           cali<11hex> ================== eth0 (plain pod) POD_IP/32
 */
import { existsSync } from 'node:fs';
import {
  CLIENT_IF,
  CLIENT_IP,
  MAX_PODS_OF_A_KIND,
  NODE_UPLINK_IF,
  NODE_UPLINK_IP,
  POD_CIDR,
  POD_IF,
  UPLINK_PREFIX_LEN,
  VM_BRIDGE,
  VM_NIC,
  VM_TAP,
  caliName,
  normalizeMac,
  plainPodIp,
  randomMac,
  vmPodIp,
} from './addressing.js';
import { CommandError, ipBatch, runIn, sysctls } from './exec.js';
import { type NetnsRef, deleteNetns, netnsAddLines, netnsRef } from './netns.js';
import {
  type DummyKind,
  type Iface,
  type LinkInfo,
  NO_IPV6,
  type Sysctl,
  VM_POD_SYSCTLS,
  bridgeLines,
  caliNodeLines,
  caliSysctls,
  caliVethLine,
  dummyKind,
  dummyLines,
  guestVethLine,
  iface,
  links,
  podInterfaceLines,
  portsForwarding,
} from './wiring.js';

export type { Iface } from './wiring.js';

/** Something that can send and receive traffic: a netns with an address. */
export interface Endpoint {
  readonly label: string;
  readonly ns: NetnsRef;
  readonly ip: string;
}

export interface ClientHost extends Endpoint {
  readonly iface: Iface;
}

export interface NodeHost extends Endpoint {
  /** The uplink (eth0) of the node: where traffic from other nodes comes in. */
  readonly uplink: Iface;
}

export interface VmPodSpec {
  /** The guest's MAC (a VMI `macAddress`); default: the pod MAC, as KubeVirt does. */
  guestMac?: string;
  /** Netns guest (default) or a tap for a QEMU guest that another module starts. */
  guest: 'netns' | 'tap';
  /** tap: IFF_MULTI_QUEUE, as KubeVirt creates it. */
  multiQueue?: boolean;
}

export interface VmPod {
  readonly index: number;
  /** The virt-launcher pod's netns: where vmpeer's fixup attaches (eth0-nic ingress). */
  readonly podNs: NetnsRef;
  readonly podIp: string;
  /** The MAC the guest uses. */
  readonly guestMac: string;
  /** The MAC of the pod's dummy `eth0` (the CNI's pod MAC). */
  readonly dummyMac: string;
  /** The dummy's kind: a real dummy, or a DOWN bridge on kernels without the module. */
  readonly dummyKind: 'dummy' | 'bridge';
  /** KubeVirt turns tx checksum offload off on the bridge; false when ethtool is not installed. */
  readonly bridgeTxChecksumOff: boolean;
  /** eth0-nic, the bridge's uplink port (the pod end of the cali veth), in podNs. */
  readonly nic: Iface;
  readonly bridge: string;
  readonly tap: string;
  /** The cali veth in the node netns. */
  readonly hostVeth: Iface;
  /** The guest as a netns (null when a QEMU guest sits on a real tap). */
  readonly guest: Endpoint | null;
  readonly guestNs: NetnsRef | null;
}

export interface PlainPod extends Endpoint {
  readonly index: number;
  readonly podNs: NetnsRef;
  readonly podIp: string;
  readonly iface: Iface;
  readonly hostVeth: Iface;
}

export interface TopologySpec {
  /** Netns names start with this; unique per lab. */
  namePrefix: string;
  vmPods: VmPodSpec[];
  plainPods: number;
  /** Keep IPv6 (link-local addresses, DAD, MLD); off by default for quiet wires. */
  ipv6?: boolean;
}

export interface Topology {
  readonly client: ClientHost;
  readonly node: NodeHost;
  readonly vms: VmPod[];
  readonly plain: PlainPod[];
  /** Every netns of the lab, for teardown. */
  readonly namespaces: NetnsRef[];
}

/** `ethtool -K <dev> tx off`, as KubeVirt does on its bridge; false when ethtool is missing. */
async function txChecksumOff(ns: NetnsRef, dev: string): Promise<boolean> {
  try {
    await runIn(ns.path, 'ethtool', ['-K', dev, 'tx', 'off']);
    return true;
  } catch (e) {
    // nsenter exits 127 when it cannot find the command
    if (e instanceof CommandError && e.code === 127) return false;
    throw e;
  }
}

interface VmPlan {
  i: number;
  spec: VmPodSpec;
  podNs: NetnsRef;
  guestNs: NetnsRef | null;
  podIp: string;
  dummyMac: string;
  guestMac: string;
  nicMac: string;
  cali: string;
}

interface PlainPlan {
  j: number;
  podNs: NetnsRef;
  podIp: string;
  mac: string;
  cali: string;
}

function planVm(prefix: string, vm: VmPodSpec, i: number): VmPlan {
  const dummyMac = randomMac(0x0a);
  return {
    i,
    spec: vm,
    podNs: netnsRef(`${prefix}-vm${i}`),
    guestNs: vm.guest === 'netns' ? netnsRef(`${prefix}-vm${i}g`) : null,
    podIp: vmPodIp(i),
    dummyMac,
    guestMac: vm.guestMac ? normalizeMac(vm.guestMac) : dummyMac,
    nicMac: randomMac(0x06),
    cali: caliName(),
  };
}

function planPlain(prefix: string, j: number): PlainPlan {
  return { j, podNs: netnsRef(`${prefix}-pod${j}`), podIp: plainPodIp(j), mac: randomMac(0x0a), cali: caliName() };
}

/** Step 1, one host `ip -batch`: the namespaces and every veth pair, each end created directly in its netns. */
function creationLines(namespaces: NetnsRef[], clientNs: NetnsRef, nodeNs: NetnsRef, vms: VmPlan[], plain: PlainPlan[]): string[] {
  return [
    ...netnsAddLines(namespaces.map((n) => n.name)),
    `link add ${NODE_UPLINK_IF} netns ${nodeNs.name} address ${randomMac(0x02)} type veth ` +
      `peer name ${CLIENT_IF} netns ${clientNs.name} address ${randomMac(0x02)}`,
    ...vms.flatMap((v) => [
      caliVethLine(v.cali, nodeNs, v.podNs, VM_NIC, v.nicMac),
      ...(v.guestNs ? [guestVethLine(v.podNs, v.guestNs, randomMac(0x0e), v.guestMac)] : []),
    ]),
    ...plain.map((q) => caliVethLine(q.cali, nodeNs, q.podNs, POD_IF, q.mac)),
  ];
}

/** The client on "another node": its uplink, and the pod CIDR routed via the node. */
async function wireClient(quiet: Quiet, clientNs: NetnsRef): Promise<void> {
  await ipBatch(
    [
      'link set lo up',
      `addr add ${CLIENT_IP}/${UPLINK_PREFIX_LEN} dev ${CLIENT_IF}`,
      `link set ${CLIENT_IF} up`,
      `route add ${POD_CIDR} via ${NODE_UPLINK_IP} dev ${CLIENT_IF}`,
    ],
    clientNs.name,
  );
  await quiet(clientNs);
}

/** The node: its uplink, a default route, and Calico's host side of every pod. */
async function wireNode(quiet: Quiet, nodeNs: NetnsRef, pods: Array<{ cali: string; ip: string }>): Promise<void> {
  await ipBatch(
    [
      'link set lo up',
      `addr add ${NODE_UPLINK_IP}/${UPLINK_PREFIX_LEN} dev ${NODE_UPLINK_IF}`,
      `link set ${NODE_UPLINK_IF} up`,
      // the node's default gateway; proxy ARP answers 169.254.1.1 because it routes elsewhere
      `route add default via ${CLIENT_IP} dev ${NODE_UPLINK_IF}`,
      ...pods.flatMap((c) => caliNodeLines(c.cali, c.ip)),
    ],
    nodeNs.name,
  );
  await quiet(nodeNs, [['net.ipv4.ip_forward', 1], ...pods.flatMap((c) => caliSysctls(c.cali))]);
}

/** virt-launcher's side of a VM pod: the tap (for QEMU), the bridge, the dummy. Returns whether tx checksumming went off. */
async function wireVmPod(quiet: Quiet, v: VmPlan, kind: DummyKind): Promise<boolean> {
  await ipBatch(
    [
      'link set lo up',
      ...(v.guestNs ? [] : [`tuntap add dev ${VM_TAP} mode tap${v.spec.multiQueue ? ' multi_queue' : ''}`]),
      // KubeVirt: the bridge and its uplink port share a MAC that is not the guest's
      ...bridgeLines(v.nicMac),
      ...dummyLines(v.dummyMac, v.podIp, kind),
    ],
    v.podNs.name,
  );
  await quiet(v.podNs, VM_POD_SYSCTLS);
  return txChecksumOff(v.podNs, VM_BRIDGE);
}

/** A netns guest, or a plain pod: its interface, the pod IP, the gateway. */
async function wirePodInterface(quiet: Quiet, ns: NetnsRef, podIp: string): Promise<void> {
  await ipBatch(podInterfaceLines(podIp), ns.name);
  await quiet(ns);
}

type Quiet = (ns: NetnsRef, extra?: Sysctl[]) => Promise<void>;

/**
 * Builds the topology. On failure everything created so far is deleted
 * before the error is rethrown.
 */
export async function buildTopology(spec: TopologySpec): Promise<Topology> {
  if (spec.vmPods.length > MAX_PODS_OF_A_KIND || spec.plainPods > MAX_PODS_OF_A_KIND) {
    throw new RangeError(`lab: at most ${MAX_PODS_OF_A_KIND} pods of each kind`);
  }
  const p = spec.namePrefix;
  const clientNs = netnsRef(`${p}-cl`);
  const nodeNs = netnsRef(`${p}-node`);
  const vmPlans = spec.vmPods.map((vm, i) => planVm(p, vm, i));
  const plainPlans = Array.from({ length: spec.plainPods }, (_, j) => planPlain(p, j));
  const namespaces = [
    clientNs,
    nodeNs,
    ...vmPlans.flatMap((v) => (v.guestNs ? [v.podNs, v.guestNs] : [v.podNs])),
    ...plainPlans.map((q) => q.podNs),
  ];

  const taken = namespaces.filter((n) => existsSync(n.path));
  if (taken.length > 0) throw new Error(`lab: netns ${taken.map((n) => n.name).join(', ')} already exist`);

  const quiet: Quiet = (ns, extra = []) => sysctls(ns.path, [...(spec.ipv6 ? [] : NO_IPV6), ...extra]);
  try {
    await ipBatch(creationLines(namespaces, clientNs, nodeNs, vmPlans, plainPlans));

    // 2. inside each netns, in parallel
    const kind = await dummyKind(nodeNs);
    const txOff: boolean[] = [];
    const pods = [...vmPlans.map((v) => ({ cali: v.cali, ip: v.podIp })), ...plainPlans.map((q) => ({ cali: q.cali, ip: q.podIp }))];
    await settleAll([
      wireClient(quiet, clientNs),
      wireNode(quiet, nodeNs, pods),
      ...vmPlans.map(async (v) => {
        txOff[v.i] = await wireVmPod(quiet, v, kind);
      }),
      ...vmPlans.flatMap((v) => (v.guestNs ? [wirePodInterface(quiet, v.guestNs, v.podIp)] : [])),
      ...plainPlans.map((q) => wirePodInterface(quiet, q.podNs, q.podIp)),
    ]);
    // bridge ports forward once the kernel has processed their carrier (linkwatch: up to 1 s late)
    await Promise.all(vmPlans.filter((v) => v.guestNs).map((v) => portsForwarding(v.podNs, [VM_NIC, VM_TAP], 5000)));

    // 3. what the kernel assigned (ifindexes, veth MACs)
    const [clientLinks, nodeLinks, ...podLinks] = await Promise.all([
      links(clientNs),
      links(nodeNs),
      ...vmPlans.map((v) => links(v.podNs)),
      ...plainPlans.map((q) => links(q.podNs)),
    ]);
    const client: ClientHost = { label: 'client', ns: clientNs, ip: CLIENT_IP, iface: iface(clientLinks!, CLIENT_IF) };
    const node: NodeHost = { label: 'node', ns: nodeNs, ip: NODE_UPLINK_IP, uplink: iface(nodeLinks!, NODE_UPLINK_IF) };
    const vms = vmPlans.map((v) => vmPodOf(v, kind, txOff[v.i]!, podLinks[v.i]!, nodeLinks!));
    const plain = plainPlans.map((q) => plainPodOf(q, podLinks[vmPlans.length + q.j]!, nodeLinks!));
    return { client, node, vms, plain, namespaces };
  } catch (e) {
    await deleteNetns(namespaces.map((n) => n.name));
    throw e;
  }
}

function vmPodOf(v: VmPlan, kind: DummyKind, txOff: boolean, podLinks: Map<string, LinkInfo>, nodeLinks: Map<string, LinkInfo>): VmPod {
  return {
    index: v.i,
    podNs: v.podNs,
    podIp: v.podIp,
    guestMac: v.guestMac,
    dummyMac: v.dummyMac,
    dummyKind: kind,
    bridgeTxChecksumOff: txOff,
    nic: iface(podLinks, VM_NIC),
    bridge: VM_BRIDGE,
    tap: VM_TAP,
    hostVeth: iface(nodeLinks, v.cali),
    guest: v.guestNs ? { label: `vm${v.i}`, ns: v.guestNs, ip: v.podIp } : null,
    guestNs: v.guestNs,
  };
}

function plainPodOf(q: PlainPlan, podLinks: Map<string, LinkInfo>, nodeLinks: Map<string, LinkInfo>): PlainPod {
  return {
    label: `pod${q.j}`,
    index: q.j,
    ns: q.podNs,
    podNs: q.podNs,
    ip: q.podIp,
    podIp: q.podIp,
    iface: iface(podLinks, POD_IF),
    hostVeth: iface(nodeLinks, q.cali),
  };
}

/** Like Promise.all, but waits for every job before rejecting with the first error. */
async function settleAll(jobs: Array<Promise<unknown>>): Promise<void> {
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
