/**
 * Finding the bridged VM interfaces of a pod, as KubeVirt's bridge binding
 * lays them out (docs/design.md §3):
 *
 *   node netns          pod netns
 *   cali… (veth) <====> eth0-nic ─┐ bridge k6t-eth0 ┌─ tap0 ── guest
 *                       eth0 (dummy, DOWN): pod MAC + pod IP
 *
 * The uplink port is the bridge port whose veth peer is in this (the node's)
 * netns (or a netkit pair's peer, whose primary is in the node: Calico's
 * netkit mode, L2; see POD_DEVICE_KINDS); the guest MAC is what the guest uses (learned by the bridge on the
 * guest port, or answered to the node's ARP), never the dummy's MAC, which
 * differs with a VMI macAddress and on a migration target.
 *
 * The guest IP is one the node routes to the pod's host veth (ownership.ts):
 * the dummy's address only picks among those; one the node routes elsewhere
 * is a refused claim, reported and never used.
 */
import { UsageError, VmpeerError } from '../errors.js';
import { parseMac, type Mac } from '../validate.js';
import { iproute as defaultIproute, type IpRoute, type Link } from './iproute.js';
import { guestIpNotRouted, ownedAddresses, routedDevice, type RefusedClaim } from './ownership.js';

export class NotAVmPodError extends UsageError {
  override name = 'NotAVmPodError';
}

export interface VmInterface {
  netns: string;
  bridge: string;
  uplink: { ifname: string; ifindex: number };
  guestPorts: string[];
  /** The guest port (tap0) when the bridge has exactly one: the bridge bypass needs it. */
  guestPort: { ifname: string; ifindex: number } | null;
  /** The pod device's node end: a veth, or a netkit primary (`kind`). */
  hostVeth: { ifname: string; ifindex: number; mac: Mac; kind?: string };
  guestIp: string;
  guestMac: Mac;
  guestMacFrom: 'fdb' | 'neighbour' | 'override';
  /** Guest IPs the pod claimed that the node routes elsewhere: not used. */
  refused: RefusedClaim[];
}

export interface Overrides {
  dev?: string; // the uplink port
  guestMac?: Mac;
  guestIp?: string;
  /** Use guestIp even when the node does not route it to the pod (the operator vouches for it). */
  trustGuestIp?: boolean;
}

/** The pod claims only guest IPs the node routes elsewhere: it owns none. */
export class ClaimRefusedError extends NotAVmPodError {
  override name = 'ClaimRefusedError';
  constructor(
    message: string,
    readonly refused: RefusedClaim[],
  ) {
    super(message);
  }
}


/** The pod is a VM pod, but the guest has not shown its MAC yet (it has sent nothing). */
export class GuestMacUnknownError extends VmpeerError {
  override name = 'GuestMacUnknownError';
  /** MACs the bridge learned on the guest ports (several: the guest is not telling which is its own). */
  learnedMacs = 0;
}

/**
 * The kinds of a CNI's pod device: a veth pair, or a netkit pair (Linux 6.7,
 * drivers/net/netkit.c; Calico's `device_type: netkit`). In L2 mode netkit is
 * an Ethernet device with a MAC and ARP, so KubeVirt can make its pod end a
 * bridge port (in L3 mode its MAC is zero and the bridge refuses it). Its
 * ifindex and link-netnsid point at its other end, as a veth's do, and
 * `bpf_redirect_peer()` switches into the pod at the peer's ingress, Ethernet
 * header untouched (netkit's ndo_get_peer_dev): the same fault, the same fix.
 * Both ends must be the same kind.
 */
export const POD_DEVICE_KINDS: readonly string[] = ['veth', 'netkit'];

/** A link that is one end of a pod device pair (veth or netkit). */
export const isPodDevice = (l: Link): boolean => POD_DEVICE_KINDS.includes(l.linkinfo?.info_kind ?? '');

/** A VM interface whose guest MAC may not be known yet (the guest has not sent a frame). */
export interface VmPort extends Omit<VmInterface, 'guestMac' | 'guestMacFrom'> {
  guestMac: Mac | null;
  guestMacFrom: VmInterface['guestMacFrom'] | null;
  /** Why the guest MAC is unknown, when it is. */
  guestMacUnknown?: string;
  /** MACs the bridge learned on the guest ports: many means a guest sending from many (a flood). */
  learnedMacs?: number;
  /**
   * The pod claims this one guest IP, but the node routes it to another
   * pod's veth (a live-migration target before its activation, or a VM
   * recreated before the old pod is gone): the port waits for the route.
   * The daemon attaches fixup to it and writes no endpoint; when the route
   * moves here, frames the CNI sends to the pod are fixed from the first
   * one on, with the MAC of the endpoint the route's owner has (a migrating
   * guest keeps its MAC).
   */
  standby?: RefusedClaim;
}

export async function discoverVmInterfaces(netns: string, overrides: Overrides = {}, ip: IpRoute = defaultIproute): Promise<VmInterface[]> {
  return (await discover(netns, overrides, ip, false)) as VmInterface[];
}

/**
 * Like discoverVmInterfaces, but a guest whose MAC cannot be told yet is
 * reported with `guestMac: null` instead of failing the pod: the daemon
 * attaches first and writes the endpoint when the MAC shows.
 */
export function discoverVmPorts(netns: string, ip: IpRoute = defaultIproute): Promise<VmPort[]> {
  return discover(netns, {}, ip, true);
}

async function discover(netns: string, overrides: Overrides, ip: IpRoute, tolerateUnknownMac: boolean): Promise<VmPort[]> {
  const [podLinks, nodeLinks] = await Promise.all([ip.links(netns), ip.links(undefined)]);
  const found: VmPort[] = [];
  const refusedOnly: RefusedClaim[] = [];

  for (const bridge of podLinks.filter((l) => l.linkinfo?.info_kind === 'bridge')) {
    const ports = podLinks.filter((l) => l.master === bridge.ifname);
    const uplink = ports.find((p) => isPodDevice(p) && p.link_netnsid !== undefined && peerInNode(p, nodeLinks));
    if (!uplink || (overrides.dev && uplink.ifname !== overrides.dev)) continue;
    const guestLinks = ports.filter((p) => p !== uplink);
    const guestPorts = guestLinks.map((p) => p.ifname);
    if (guestPorts.length === 0) continue;
    const guestPort = guestLinks.length === 1 ? { ifname: guestLinks[0]!.ifname, ifindex: guestLinks[0]!.ifindex } : null;
    const host = peerInNode(uplink, nodeLinks)!;
    const hostVeth = { ifname: host.ifname, ifindex: host.ifindex, mac: parseMac(host.address ?? '', `MAC of ${host.ifname}`), kind: host.linkinfo?.info_kind };

    const { guestIp: owned, refused } = await guestIpOf(netns, bridge.ifname, hostVeth.ifname, ip, overrides);
    // the daemon's discovery: one claim that another pod's veth is routed is a port on standby
    const standby = owned === null && tolerateUnknownMac && refused.length === 1 && refused[0]!.routedTo !== null ? refused[0]! : undefined;
    const guestIp = owned ?? standby?.ip ?? null;
    if (guestIp === null) {
      refusedOnly.push(...refused);
      continue;
    }
    const port = { netns, bridge: bridge.ifname, uplink: { ifname: uplink.ifname, ifindex: uplink.ifindex }, guestPorts, guestPort, hostVeth, guestIp, refused, ...(standby ? { standby } : {}) };
    try {
      const { mac: guestMac, from: guestMacFrom, learned } = overrides.guestMac
        ? { mac: overrides.guestMac, from: 'override' as const, learned: 0 }
        : await guestMacOf(netns, bridge.ifname, guestPorts, guestIp, hostVeth.ifname, ip);
      found.push({ ...port, guestMac, guestMacFrom, ...(learned > 1 ? { learnedMacs: learned } : {}) });
    } catch (e) {
      if (!tolerateUnknownMac || !(e instanceof GuestMacUnknownError)) throw e;
      found.push({ ...port, guestMac: null, guestMacFrom: null, guestMacUnknown: e.message, learnedMacs: e.learnedMacs });
    }
  }

  if (found.length === 0) {
    if (refusedOnly.length > 0) {
      throw new ClaimRefusedError(
        `${netns} claims ${refusedOnly.map((c) => `${c.ip} (routed ${c.routedTo ? `to ${c.routedTo}` : 'nowhere'})`).join(', ')}, which this node does not route to the pod: refused`,
        refusedOnly,
      );
    }
    if (overrides.dev && !podLinks.some((l) => l.ifname === overrides.dev)) {
      throw new NotAVmPodError(`no interface ${overrides.dev} in ${netns}`);
    }
    throw new NotAVmPodError(
      `${netns} is not a bridged VM pod: no bridge there has ${overrides.dev ?? 'a veth or netkit port'} leading to this node and a guest port`,
    );
  }
  return found;
}

/** The node-side end (veth, netkit primary) whose peer is `port`: ifindexes point at each other, kinds agree. */
export function peerInNode(port: Link, nodeLinks: Link[]): Link | undefined {
  const kind = port.linkinfo?.info_kind;
  return nodeLinks.find((n) => n.ifindex === port.link_index && n.linkinfo?.info_kind === kind && n.link_index === port.ifindex);
}

/**
 * The guest IP: one the node routes to the host veth (a /32 route, CNI-written).
 * The DOWN dummy named after the bridge (k6t-eth0 → eth0) holds the pod IP in
 * KubeVirt's layout; it only picks among the routed ones. Its addresses that
 * the node routes elsewhere are refused claims. null: the pod owns none.
 */
async function guestIpOf(
  netns: string,
  bridge: string,
  hostVeth: string,
  ip: IpRoute,
  overrides: Overrides,
): Promise<{ guestIp: string | null; refused: RefusedClaim[] }> {
  const routes = await ip.routes(undefined);
  if (overrides.guestIp !== undefined) {
    const routedTo = routedDevice(overrides.guestIp, routes);
    if (routedTo !== hostVeth && !overrides.trustGuestIp) throw guestIpNotRouted(overrides.guestIp, hostVeth, routedTo);
    return { guestIp: overrides.guestIp, refused: [] };
  }
  const owned = ownedAddresses(hostVeth, routes);
  const dummyName = bridge.replace(/^k6t-/, '');
  const addresses = await ip.addresses(netns);
  const claims = addresses
    .filter((a) => a.ifname === dummyName && a.ifname !== bridge)
    .flatMap((a) => a.addr_info.filter((i) => i.family === 'inet' && i.scope === 'global').map((i) => i.local));
  const refused = claims.filter((c) => !owned.includes(c)).map((c) => ({ ip: c, routedTo: routedDevice(c, routes), claimedBy: 'pod address' as const }));
  const hinted = claims.filter((c) => owned.includes(c));
  if (hinted.length === 1) return { guestIp: hinted[0]!, refused };
  if (owned.length === 1) return { guestIp: owned[0]!, refused };
  if (owned.length === 0 && refused.length > 0) return { guestIp: null, refused };
  throw new NotAVmPodError(
    `cannot tell the guest IP of ${bridge} in ${netns}: the node routes ${owned.length === 0 ? 'no address' : owned.join(', ')} to ${hostVeth}${owned.length > 1 ? ` and ${dummyName} holds none of them alone` : ''}; pass --guest-ip`,
  );
}

async function guestMacOf(
  netns: string,
  bridge: string,
  guestPorts: string[],
  guestIp: string,
  hostVeth: string,
  ip: IpRoute,
): Promise<{ mac: Mac; from: 'fdb' | 'neighbour'; learned: number }> {
  const fdb = await ip.fdb(netns, bridge);
  const learned = [
    ...new Set(
      fdb.filter((e) => guestPorts.includes(e.ifname) && !e.flags?.includes('self') && e.state !== 'permanent' && e.state !== 'static').map((e) => e.mac.toLowerCase()),
    ),
  ];
  if (learned.length === 1) return { mac: parseMac(learned[0]!), from: 'fdb', learned: 1 };
  // only now the node's neighbours (on a node of 1000 pods, a table of thousands, read again after each change)
  const neighbours = await ip.neighbours(undefined, hostVeth);
  const neighbour = neighbours.find((n) => n.dst === guestIp && n.lladdr && !n.state?.some((s) => s === 'FAILED' || s === 'INCOMPLETE'))?.lladdr?.toLowerCase();
  if (neighbour && (learned.length === 0 || learned.includes(neighbour))) return { mac: parseMac(neighbour), from: 'neighbour', learned: learned.length };
  const e = new GuestMacUnknownError(
    learned.length === 0
      ? `the guest behind ${bridge} in ${netns} has not sent a frame yet, so its MAC is unknown: start it, or pass --guest-mac`
      : `the bridge ${bridge} in ${netns} learned ${learned.length} MACs on the guest port (${learned.slice(0, 4).join(', ')}${learned.length > 4 ? ', …' : ''}): pass --guest-mac`,
  );
  e.learnedMacs = learned.length;
  throw e;
}
