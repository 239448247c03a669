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
  BRIDGE_IP,
  CALICO_HOST_MAC,
  CLIENT_IF,
  CLIENT_IP,
  GATEWAY_IP,
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
import { CommandError, ipBatch, run, runIn, sysctls } from './exec.js';
import { type NetnsRef, deleteNetns, netnsAddLines, netnsRef } from './netns.js';

export interface Iface {
  readonly name: string;
  readonly ifindex: number;
  readonly mac: string;
}

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

let dummySupported: boolean | undefined;

/** Creates the dummy `eth0` of a VM pod; a DOWN bridge where the kernel has no dummy driver. */
async function addDummy(podNs: NetnsRef, mac: string): Promise<'dummy' | 'bridge'> {
  if (dummySupported !== false) {
    try {
      await run('ip', ['-n', podNs.name, 'link', 'add', POD_IF, 'address', mac, 'type', 'dummy']);
      dummySupported = true;
      return 'dummy';
    } catch (e) {
      if (!(e instanceof CommandError) || dummySupported === true) throw e;
      dummySupported = false;
    }
  }
  await run('ip', ['-n', podNs.name, 'link', 'add', POD_IF, 'address', mac, 'type', 'bridge']);
  return 'bridge';
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

/** Waits until the bridge ports `ports` in `ns` are in the forwarding state. */
export async function portsForwarding(ns: NetnsRef, ports: string[], timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { stdout } = await runIn(ns.path, 'bridge', ['-j', 'link', 'show']);
    const states = new Map((JSON.parse(stdout || '[]') as Array<{ ifname: string; state?: string }>).map((p) => [p.ifname, p.state]));
    if (ports.every((p) => states.get(p) === 'forwarding')) return;
    if (Date.now() > deadline) {
      throw new Error(`lab: bridge ports in ${ns.name} not forwarding: ${ports.map((p) => `${p} ${states.get(p)}`).join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface LinkInfo {
  ifname: string;
  ifindex: number;
  address: string;
}

async function links(ns: NetnsRef): Promise<Map<string, LinkInfo>> {
  const { stdout } = await run('ip', ['-j', '-n', ns.name, 'link', 'show']);
  const list = JSON.parse(stdout) as LinkInfo[];
  return new Map(list.map((l) => [l.ifname, l]));
}

function iface(map: Map<string, LinkInfo>, name: string): Iface {
  const l = map.get(name);
  if (!l) throw new Error(`lab: ${name} is missing`);
  return { name, ifindex: l.ifindex, mac: l.address };
}

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
  const vmPlans = spec.vmPods.map((vm, i) => {
    const dummyMac = randomMac(0x0a);
    return {
      i,
      spec: vm,
      podNs: netnsRef(`${p}-vm${i}`),
      guestNs: vm.guest === 'netns' ? netnsRef(`${p}-vm${i}g`) : null,
      podIp: vmPodIp(i),
      dummyMac,
      guestMac: vm.guestMac ? normalizeMac(vm.guestMac) : dummyMac,
      nicMac: randomMac(0x06),
      cali: caliName(),
    };
  });
  const plainPlans = Array.from({ length: spec.plainPods }, (_, j) => ({
    j,
    podNs: netnsRef(`${p}-pod${j}`),
    podIp: plainPodIp(j),
    mac: randomMac(0x0a),
    cali: caliName(),
  }));
  const namespaces = [
    clientNs,
    nodeNs,
    ...vmPlans.flatMap((v) => (v.guestNs ? [v.podNs, v.guestNs] : [v.podNs])),
    ...plainPlans.map((q) => q.podNs),
  ];

  const taken = namespaces.filter((n) => existsSync(n.path));
  if (taken.length > 0) throw new Error(`lab: netns ${taken.map((n) => n.name).join(', ')} already exist`);

  try {
    // 1. namespaces and veth pairs, each end created directly in its netns
    const host = netnsAddLines(namespaces.map((n) => n.name));
    host.push(
      `link add ${NODE_UPLINK_IF} netns ${nodeNs.name} address ${randomMac(0x02)} type veth ` +
        `peer name ${CLIENT_IF} netns ${clientNs.name} address ${randomMac(0x02)}`,
    );
    for (const v of vmPlans) {
      host.push(
        `link add ${v.cali} netns ${nodeNs.name} address ${CALICO_HOST_MAC} type veth ` +
          `peer name ${VM_NIC} netns ${v.podNs.name} address ${v.nicMac}`,
      );
      if (v.guestNs) {
        host.push(
          `link add ${VM_TAP} netns ${v.podNs.name} address ${randomMac(0x0e)} type veth ` +
            `peer name ${POD_IF} netns ${v.guestNs.name} address ${v.guestMac}`,
        );
      }
    }
    for (const q of plainPlans) {
      host.push(
        `link add ${q.cali} netns ${nodeNs.name} address ${CALICO_HOST_MAC} type veth ` +
          `peer name ${POD_IF} netns ${q.podNs.name} address ${q.mac}`,
      );
    }
    await ipBatch(host);

    // 2. inside each netns, in parallel
    const quiet = (ns: NetnsRef, extra: Array<[string, string | number]> = []) =>
      sysctls(ns.path, [
        ...(spec.ipv6
          ? []
          : ([
              ['net.ipv6.conf.all.disable_ipv6', 1],
              ['net.ipv6.conf.default.disable_ipv6', 1],
            ] as Array<[string, number]>)),
        ...extra,
      ]);

    const jobs: Array<Promise<unknown>> = [];
    jobs.push(
      ipBatch(
        [
          'link set lo up',
          `addr add ${CLIENT_IP}/${UPLINK_PREFIX_LEN} dev ${CLIENT_IF}`,
          `link set ${CLIENT_IF} up`,
          `route add ${POD_CIDR} via ${NODE_UPLINK_IP} dev ${CLIENT_IF}`,
        ],
        clientNs.name,
      ).then(() => quiet(clientNs)),
    );

    const cali = [...vmPlans.map((v) => ({ cali: v.cali, ip: v.podIp })), ...plainPlans.map((q) => ({ cali: q.cali, ip: q.podIp }))];
    jobs.push(
      ipBatch(
        [
          'link set lo up',
          `addr add ${NODE_UPLINK_IP}/${UPLINK_PREFIX_LEN} dev ${NODE_UPLINK_IF}`,
          `link set ${NODE_UPLINK_IF} up`,
          // the node's default gateway; proxy ARP answers 169.254.1.1 because it routes elsewhere
          `route add default via ${CLIENT_IP} dev ${NODE_UPLINK_IF}`,
          ...cali.flatMap((c) => [`link set ${c.cali} up`, `route add ${c.ip}/32 dev ${c.cali} scope link`]),
        ],
        nodeNs.name,
      ).then(() =>
        quiet(nodeNs, [
          ['net.ipv4.ip_forward', 1],
          ...cali.flatMap(
            (c) =>
              [
                [`net.ipv4.conf.${c.cali}.proxy_arp`, 1],
                [`net.ipv4.neigh.${c.cali}.proxy_delay`, 0],
              ] as Array<[string, number]>,
          ),
        ]),
      ),
    );

    const dummyKinds: Array<'dummy' | 'bridge'> = [];
    const txOff: boolean[] = [];
    for (const v of vmPlans) {
      jobs.push(
        (async () => {
          const lines = ['link set lo up'];
          if (!v.guestNs) {
            lines.push(`tuntap add dev ${VM_TAP} mode tap${v.spec.multiQueue ? ' multi_queue' : ''}`);
          }
          lines.push(
            // KubeVirt: the bridge and its uplink port share a MAC that is not the guest's
            `link add ${VM_BRIDGE} address ${v.nicMac} type bridge`,
            `addr add ${BRIDGE_IP}/32 dev ${VM_BRIDGE}`,
            `link set ${VM_NIC} master ${VM_BRIDGE}`,
            `link set ${VM_NIC} type bridge_slave learning off`,
            `link set ${VM_TAP} master ${VM_BRIDGE}`,
            `link set ${VM_BRIDGE} up`,
            `link set ${VM_NIC} up`,
            `link set ${VM_TAP} up`,
          );
          await ipBatch(lines, v.podNs.name);
          dummyKinds[v.i] = await addDummy(v.podNs, v.dummyMac);
          await ipBatch([`addr add ${v.podIp}/32 dev ${POD_IF}`], v.podNs.name);
          await quiet(v.podNs, [['net.ipv4.conf.all.arp_ignore', 1]]);
          txOff[v.i] = await txChecksumOff(v.podNs, VM_BRIDGE);
        })(),
      );
      if (v.guestNs) {
        const g = v.guestNs;
        jobs.push(
          ipBatch(
            [
              'link set lo up',
              `link set ${POD_IF} up`,
              `addr add ${v.podIp}/32 dev ${POD_IF}`,
              `route add ${GATEWAY_IP} dev ${POD_IF} scope link`,
              `route add default via ${GATEWAY_IP} dev ${POD_IF}`,
            ],
            g.name,
          ).then(() => quiet(g)),
        );
      }
    }
    for (const q of plainPlans) {
      jobs.push(
        ipBatch(
          [
            'link set lo up',
            `link set ${POD_IF} up`,
            `addr add ${q.podIp}/32 dev ${POD_IF}`,
            `route add ${GATEWAY_IP} dev ${POD_IF} scope link`,
            `route add default via ${GATEWAY_IP} dev ${POD_IF}`,
          ],
          q.podNs.name,
        ).then(() => quiet(q.podNs)),
      );
    }
    await settleAll(jobs);
    // bridge ports forward once the kernel has processed their carrier (linkwatch: up to 1 s late)
    await Promise.all(vmPlans.filter((v) => v.guestNs).map((v) => portsForwarding(v.podNs, [VM_NIC, VM_TAP])));

    // 3. what the kernel assigned (ifindexes, veth MACs)
    const [clientLinks, nodeLinks, ...podLinks] = await Promise.all([
      links(clientNs),
      links(nodeNs),
      ...vmPlans.map((v) => links(v.podNs)),
      ...plainPlans.map((q) => links(q.podNs)),
    ]);
    const client: ClientHost = { label: 'client', ns: clientNs, ip: CLIENT_IP, iface: iface(clientLinks!, CLIENT_IF) };
    const node: NodeHost = { label: 'node', ns: nodeNs, ip: NODE_UPLINK_IP, uplink: iface(nodeLinks!, NODE_UPLINK_IF) };
    const vms: VmPod[] = vmPlans.map((v) => ({
      index: v.i,
      podNs: v.podNs,
      podIp: v.podIp,
      guestMac: v.guestMac,
      dummyMac: v.dummyMac,
      dummyKind: dummyKinds[v.i]!,
      bridgeTxChecksumOff: txOff[v.i]!,
      nic: iface(podLinks[v.i]!, VM_NIC),
      bridge: VM_BRIDGE,
      tap: VM_TAP,
      hostVeth: iface(nodeLinks!, v.cali),
      guest: v.guestNs ? { label: `vm${v.i}`, ns: v.guestNs, ip: v.podIp } : null,
      guestNs: v.guestNs,
    }));
    const plain: PlainPod[] = plainPlans.map((q) => ({
      label: `pod${q.j}`,
      index: q.j,
      ns: q.podNs,
      podNs: q.podNs,
      ip: q.podIp,
      podIp: q.podIp,
      iface: iface(podLinks[vmPlans.length + q.j]!, POD_IF),
      hostVeth: iface(nodeLinks!, q.cali),
    }));
    return { client, node, vms, plain, namespaces };
  } catch (e) {
    await deleteNetns(namespaces.map((n) => n.name));
    throw e;
  }
}

/** Like Promise.all, but waits for every job before rejecting with the first error. */
async function settleAll(jobs: Array<Promise<unknown>>): Promise<void> {
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
