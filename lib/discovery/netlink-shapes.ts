/**
 * Kernel rtnetlink records (from the addon's netlinkDump) in the shapes
 * iproute2 prints with `-j` (`ip -d link`, `ip addr`, `bridge fdb`,
 * `ip neigh`, `ip -4 route`): names for numbers, ifindexes resolved to
 * ifnames, and the same entries left out by default.
 */
import type { RtAddress, RtLink, RtNeighbour, RtRoute } from '../native.js';

/** `ip -d -j link` */
export interface Link {
  ifindex: number;
  ifname: string;
  address?: string;
  operstate?: string;
  flags?: string[];
  master?: string;
  link_index?: number; // veth: the peer's ifindex
  link_netnsid?: number; // present when the peer lives in another netns
  linkinfo?: {
    info_kind?: string;
    info_slave_kind?: string;
    info_slave_data?: { learning?: boolean };
    info_data?: { type?: string };
  };
}

export interface AddrInfo {
  family: 'inet' | 'inet6';
  local: string;
  prefixlen: number;
  scope: string;
}

export interface Address {
  ifindex: number;
  ifname: string;
  address?: string;
  addr_info: AddrInfo[];
}

export interface FdbEntry {
  mac: string;
  ifname: string;
  master?: string;
  state?: string; // 'permanent', 'static', '' (learned)
  flags?: string[]; // 'self' for the port's own entries
}

export interface Neighbour {
  dst: string;
  dev: string;
  lladdr?: string;
  state?: string[];
}

export interface Route {
  dst: string; // 'default', a.b.c.d (a /32) or a.b.c.d/len
  dev: string;
  scope?: string;
  metric?: number; // absent: 0
}

const IFF = { UP: 0x1, LOOPBACK: 0x8, RUNNING: 0x40, LOWER_UP: 0x10000 };
/** iproute2's order (print_link_flags). */
const FLAG_NAMES: Array<[number, string]> = [
  [IFF.LOOPBACK, 'LOOPBACK'],
  [0x2, 'BROADCAST'],
  [0x10, 'POINTOPOINT'],
  [0x1000, 'MULTICAST'],
  [0x80, 'NOARP'],
  [0x200, 'ALLMULTI'],
  [0x100, 'PROMISC'],
  [0x400, 'MASTER'],
  [0x800, 'SLAVE'],
  [0x4, 'DEBUG'],
  [0x8000, 'DYNAMIC'],
  [0x4000, 'AUTOMEDIA'],
  [0x2000, 'PORTSEL'],
  [0x20, 'NOTRAILERS'],
  [IFF.UP, 'UP'],
  [IFF.LOWER_UP, 'LOWER_UP'],
  [0x20000, 'DORMANT'],
  [0x40000, 'ECHO'],
];
const OPERSTATES = ['UNKNOWN', 'NOTPRESENT', 'DOWN', 'LOWERLAYERDOWN', 'TESTING', 'DORMANT', 'UP'];
const AF_INET = 2;
const AF_INET6 = 10;
const RT_TABLE_MAIN = 254;
const RTM_F_CLONED = 0x200;
const NUD = { INCOMPLETE: 0x01, REACHABLE: 0x02, STALE: 0x04, DELAY: 0x08, PROBE: 0x10, FAILED: 0x20, NOARP: 0x40, PERMANENT: 0x80 };
const NTF_SELF = 0x02;
const NTF_MASTER = 0x04;

export function linkFlags(flags: number): string[] {
  const names = flags & IFF.UP && !(flags & IFF.RUNNING) ? ['NO-CARRIER'] : [];
  for (const [bit, name] of FLAG_NAMES) if (flags & bit) names.push(name);
  return names;
}

export function scopeName(scope: number): string {
  return { 0: 'global', 200: 'site', 253: 'link', 254: 'host', 255: 'nowhere' }[scope] ?? String(scope);
}

function namesOf(links: RtLink[]): Map<number, string> {
  return new Map(links.map((l) => [l.ifindex, l.ifname]));
}

const nameIn = (names: Map<number, string>, ifindex: number) => names.get(ifindex) ?? `if${ifindex}`;

export function toLinks(links: RtLink[]): Link[] {
  const names = namesOf(links);
  return links.map((l) => {
    const out: Link = { ifindex: l.ifindex, ifname: l.ifname, flags: linkFlags(l.flags), operstate: OPERSTATES[l.operstate] ?? String(l.operstate) };
    if (l.address !== undefined) out.address = l.address;
    if (l.master !== undefined) out.master = nameIn(names, l.master);
    // like iproute2: an index only for a peer in another netns (a peer here is named instead)
    if (l.link !== undefined && l.link !== 0 && l.linkNetnsid !== undefined) {
      out.link_index = l.link;
      out.link_netnsid = l.linkNetnsid;
    }
    if (l.kind !== undefined || l.slaveKind !== undefined) {
      const info: NonNullable<Link['linkinfo']> = {};
      if (l.kind !== undefined) info.info_kind = l.kind;
      if (l.tunType !== undefined) info.info_data = { type: l.tunType === 2 ? 'tap' : 'tun' };
      if (l.slaveKind !== undefined) info.info_slave_kind = l.slaveKind;
      if (l.learning !== undefined) info.info_slave_data = { learning: l.learning };
      out.linkinfo = info;
    }
    return out;
  });
}

/** Every link with its IPv4 and IPv6 addresses (`ip addr show`). */
export function toAddresses(links: RtLink[], addresses: RtAddress[]): Address[] {
  return links.map((l) => {
    const out: Address = {
      ifindex: l.ifindex,
      ifname: l.ifname,
      addr_info: addresses
        .filter((a) => a.ifindex === l.ifindex && (a.family === AF_INET || a.family === AF_INET6))
        .map((a) => ({ family: a.family === AF_INET ? 'inet' : 'inet6', local: a.local, prefixlen: a.prefixlen, scope: scopeName(a.scope) })),
    };
    if (l.address !== undefined) out.address = l.address;
    return out;
  });
}

/** iproute2's state_n2a for FDB entries: '' for learned (reachable) ones, absent for state 0. */
function fdbState(state: number): string | undefined {
  if (state === 0) return undefined;
  if (state & NUD.PERMANENT) return 'permanent';
  if (state & NUD.NOARP) return 'static';
  if (state & NUD.STALE) return 'stale';
  if (state & NUD.REACHABLE) return '';
  return `0x${state.toString(16)}`;
}

/** The FDB entries of a bridge and its ports (`bridge fdb show br <bridge>`). */
export function toFdb(links: RtLink[], fdb: RtNeighbour[], bridge: string): FdbEntry[] {
  const names = namesOf(links);
  const br = links.find((l) => l.ifname === bridge);
  if (!br) return [];
  const onBridge = new Set(links.filter((l) => l.ifindex === br.ifindex || l.master === br.ifindex).map((l) => l.ifindex));
  return fdb
    .filter((e) => e.lladdr !== undefined && onBridge.has(e.ifindex))
    .map((e) => {
      const out: FdbEntry = { mac: e.lladdr!, ifname: nameIn(names, e.ifindex) };
      out.flags = [...(e.flags & NTF_SELF ? ['self'] : []), ...(e.flags & NTF_MASTER ? ['master'] : [])];
      if (e.master !== undefined) out.master = nameIn(names, e.master);
      const state = fdbState(e.state);
      if (state !== undefined) out.state = state;
      return out;
    });
}

export function neighbourState(state: number): string[] {
  const names = Object.entries(NUD)
    .filter(([, bit]) => state & bit)
    .map(([name]) => name);
  return names.length > 0 ? names : ['NONE'];
}

/** IPv4 and IPv6 neighbours (`ip neigh show`: NOARP and NONE entries are left out, like iproute2 does). */
export function toNeighbours(links: RtLink[], neighbours: RtNeighbour[]): Neighbour[] {
  const names = namesOf(links);
  return neighbours
    .filter((n) => n.dst !== undefined && (n.family === AF_INET || n.family === AF_INET6) && (n.state & 0xff & ~NUD.NOARP) !== 0)
    .map((n) => {
      const out: Neighbour = { dst: n.dst!, dev: nameIn(names, n.ifindex), state: neighbourState(n.state) };
      if (n.lladdr !== undefined) out.lladdr = n.lladdr;
      return out;
    });
}

/** IPv4 routes of the main table that have a device (`ip -4 route show`). */
export function toRoutes(links: RtLink[], routes: RtRoute[]): Route[] {
  const names = namesOf(links);
  return routes
    .filter((r) => r.family === AF_INET && r.table === RT_TABLE_MAIN && !(r.flags & RTM_F_CLONED) && r.oif !== undefined)
    .map((r) => {
      const dst = r.dstLen === 0 ? 'default' : r.dstLen === 32 ? r.dst! : `${r.dst}/${r.dstLen}`;
      const out: Route = { dst, dev: nameIn(names, r.oif!) };
      if (r.scope !== 0) out.scope = scopeName(r.scope);
      if (r.priority) out.metric = r.priority;
      return out;
    });
}
