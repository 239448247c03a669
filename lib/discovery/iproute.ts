/**
 * Reading links, addresses, routes, neighbours and bridge FDBs of a netns,
 * in the shapes iproute2 prints with `-j` (what discovery was written
 * against). The addon reads them with rtnetlink dumps, off the JS thread,
 * without running a process.
 */
import { native, type NetlinkDumpKind } from '../native.js';
import { toAddresses, toFdb, toLinks, toNeighbours, toRoutes, type Address, type FdbEntry, type Link, type Neighbour, type Route } from './netlink-shapes.js';

export type { AddrInfo, Address, FdbEntry, Link, Neighbour, Route } from './netlink-shapes.js';

/** What one netlinkDump of a netns holds, as iproute2 would print it; links always, the rest when asked for. */
export interface NetnsSnapshot {
  links: Link[];
  addresses: Address[];
  neighbours: Neighbour[];
  routes: Route[];
  /** `bridge fdb show br <bridge>` */
  fdb(bridge: string): FdbEntry[];
}

/** Reads a netns (absent: this process's) in one call: links, and the kinds asked for (else empty). */
export async function readNetns(netns: string | undefined, kinds: Array<Exclude<NetlinkDumpKind, 'links'>> = []): Promise<NetnsSnapshot> {
  const d = await native().netlinkDump(netns, ['links', ...kinds]);
  const links = d.links ?? [];
  return {
    links: toLinks(links),
    addresses: toAddresses(links, d.addresses ?? []),
    neighbours: toNeighbours(links, d.neighbours ?? []),
    routes: toRoutes(links, d.routes ?? []),
    fdb: (bridge) => toFdb(links, d.fdb ?? [], bridge),
  };
}

export const iproute = {
  links: async (netns?: string): Promise<Link[]> => (await readNetns(netns)).links,
  addresses: async (netns?: string): Promise<Address[]> => (await readNetns(netns, ['addresses'])).addresses,
  fdb: async (netns: string | undefined, bridge: string): Promise<FdbEntry[]> => (await readNetns(netns, ['fdb'])).fdb(bridge),
  neighbours: async (netns: string | undefined, dev: string): Promise<Neighbour[]> =>
    (await readNetns(netns, ['neighbours'])).neighbours.filter((n) => n.dev === dev),
  /** The main table's IPv4 routes with a device; with `dev`, only those through it. */
  routes: async (netns: string | undefined, dev?: string): Promise<Route[]> =>
    (await readNetns(netns, ['routes'])).routes.filter((r) => dev === undefined || r.dev === dev),
};

export type IpRoute = typeof iproute;
