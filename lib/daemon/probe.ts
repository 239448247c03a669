/**
 * Looking into a pod netns cheaply. One netlink read of the pod (links,
 * addresses, bridge FDB) says whether it can be a bridged VM pod at all and
 * holds what discovery needs from it. What discovery asks about the node
 * (links, neighbours, routes) is read once for all pods checked at about the
 * same time, and read again after a netlink event in the node says it changed.
 */
import { iproute, readNetns, type IpRoute, type Link, type Neighbour, type NetnsSnapshot, type Route } from '../discovery/iproute.js';
import { ClaimRefusedError, discoverVmPorts, isPodDevice, NotAVmPodError, peerInNode, type VmPort } from '../discovery/vm-pod.js';
import type { RefusedClaim } from '../discovery/ownership.js';

interface Cached<T> {
  at: number;
  generation: number;
  failed: boolean;
  value: Promise<T>;
}

/** The node's links, neighbours and routes, shared by the pods checked together. */
export class NodeView {
  private generation = { link: 0, neigh: 0, route: 0 };
  private links?: Cached<Link[]>;
  private neighbours?: Cached<Neighbour[]>;
  private routes?: Cached<Route[]>;

  /**
   * How long a reading is reused when no event said it changed. The node
   * monitor's events invalidate a reading, and a full resync starts from
   * fresh ones (invalidateAll), so this is only a bound on trusting them: on a
   * node of 1000 pods a reading of its links or neighbours is thousands of
   * entries, which the check of a new guest's first frame must not wait for.
   */
  constructor(private readonly maxAgeMs = 30_000) {}

  /** A netlink event in the node: the next reading of that kind is fresh. */
  invalidate(kind: 'link' | 'neigh' | 'route'): void {
    this.generation[kind]++;
  }

  /** Every reading is fresh next time (a full resync; node events were lost). */
  invalidateAll(): void {
    this.invalidate('link');
    this.invalidate('neigh');
    this.invalidate('route');
  }

  private cached<T>(slot: Cached<T> | undefined, generation: number, load: () => Promise<T>): Cached<T> {
    if (slot && !slot.failed && slot.generation === generation && Date.now() - slot.at < this.maxAgeMs) return slot;
    const fresh: Cached<T> = { at: Date.now(), generation, failed: false, value: load() };
    fresh.value.catch(() => {
      fresh.failed = true;
    });
    return fresh;
  }

  nodeLinks(): Promise<Link[]> {
    this.links = this.cached(this.links, this.generation.link, async () => {
      const links = (await readNetns(undefined)).links;
      this.linkIndexes = new Set(links.map((l) => l.ifindex));
      return links;
    });
    return this.links.value;
  }

  /** The ifindexes of the last reading of the node's links. */
  private linkIndexes: Set<number> | null = null;

  /**
   * A link event in the node. One about an interface the last reading does
   * not have (a new pod's veth, on a node where pods come and go all the time)
   * changes nothing in that reading: a pod whose devices lead to it reads the
   * links again (nodeLinksFor). Any other makes the next reading fresh.
   */
  linkEvent(ifindex: number, deleted: boolean): void {
    if (!deleted && this.linkIndexes && !this.linkIndexes.has(ifindex)) return;
    this.invalidate('link');
  }

  /**
   * The node's links, read again when none of the pod's bridge ports has its
   * peer in the reading (what discovery looks for: peerInNode), i.e. the
   * pod's host veth appeared after it.
   */
  private async nodeLinksFor(podLinks: Link[]): Promise<Link[]> {
    const links = await this.nodeLinks();
    const ports = podLinks.filter((l) => l.master && isPodDevice(l) && l.link_netnsid !== undefined);
    if (ports.length === 0 || ports.some((l) => peerInNode(l, links))) return links;
    this.invalidate('link');
    return this.nodeLinks();
  }

  nodeNeighbours(): Promise<Neighbour[]> {
    this.neighbours = this.cached(this.neighbours, this.generation.neigh, async () => (await readNetns(undefined, ['neighbours'])).neighbours);
    return this.neighbours.value;
  }

  nodeRoutes(): Promise<Route[]> {
    this.routes = this.cached(this.routes, this.generation.link + this.generation.route * 65536, async () => (await readNetns(undefined, ['routes'])).routes);
    return this.routes.value;
  }

  /** An IpRoute for discovery in one pod: node readings from here, the pod's as already read. */
  ipRouteFor(podNetns: string, pod: NetnsSnapshot): IpRoute {
    return {
      links: (netns?: string) => (netns === undefined ? this.nodeLinksFor(pod.links) : netns === podNetns ? Promise.resolve(pod.links) : iproute.links(netns)),
      addresses: (netns?: string) => (netns === podNetns ? Promise.resolve(pod.addresses) : iproute.addresses(netns)),
      fdb: (netns: string | undefined, bridge: string) => (netns === podNetns ? Promise.resolve(pod.fdb(bridge)) : iproute.fdb(netns, bridge)),
      neighbours: async (netns: string | undefined, dev: string) =>
        netns === undefined ? (await this.nodeNeighbours()).filter((n) => n.dev === dev) : iproute.neighbours(netns, dev),
      // all of them: the same array for every pod checked with this reading, which ownership.ts indexes once
      routes: async (netns: string | undefined, dev?: string) =>
        netns === undefined ? (dev === undefined ? this.nodeRoutes() : (await this.nodeRoutes()).filter((r) => r.dev === dev)) : iproute.routes(netns, dev),
    };
  }
}

export type Shape =
  /** A bridge with a veth (or netkit) port leading out of the pod, and another port: discovery can run. */
  | 'vm'
  /** Has a bridge, but not (yet) in the VM layout. */
  | 'partial'
  | 'plain';

export interface PodLook {
  shape: Shape;
  /** ifindexes (in their own netns) of the peers of this pod's veths (and netkit devices) that lead out of it. */
  peers: number[];
  ports: VmPort[];
  /** Why discovery found no VM port although the shape looked like one. */
  why?: string;
  /** Guest IPs the pod claims that the node routes elsewhere (also those of `ports`). */
  refused: RefusedClaim[];
}

export function shapeOf(links: Link[]): { shape: Shape; peers: number[] } {
  const peers = links.filter((l) => isPodDevice(l) && l.link_netnsid !== undefined && l.link_index).map((l) => l.link_index!);
  const bridges = links.filter((l) => l.linkinfo?.info_kind === 'bridge');
  if (bridges.length === 0) return { shape: 'plain', peers };
  const vm = bridges.some((b) => {
    const ports = links.filter((l) => l.master === b.ifname);
    return ports.some((p) => isPodDevice(p) && p.link_netnsid !== undefined) && ports.length >= 2;
  });
  return { shape: vm ? 'vm' : 'partial', peers };
}

/** Looks into one pod netns. Throws when the netns cannot be entered (e.g. it is gone). */
export async function lookInto(netns: string, node: NodeView): Promise<PodLook> {
  const pod = await readNetns(netns, ['addresses', 'fdb']);
  const { shape, peers } = shapeOf(pod.links);
  if (shape !== 'vm') return { shape, peers, ports: [], refused: [] };
  try {
    const ports = await discoverVmPorts(netns, node.ipRouteFor(netns, pod));
    return { shape, peers, ports, refused: ports.flatMap((p) => p.refused) };
  } catch (e) {
    if (e instanceof NotAVmPodError) return { shape: 'partial', peers, ports: [], why: (e as Error).message, refused: e instanceof ClaimRefusedError ? e.refused : [] };
    throw e;
  }
}
