/**
 * Who owns a guest IP: the pod whose host veth the node's own routing sends
 * that IP to. The CNI writes that route in the node netns (Calico: POD_IP/32
 * dev cali… scope link), and no pod can forge it; what a pod holds in its own
 * netns (the dummy eth0's address, link names) is only a claim (README, Security model).
 *
 * The lookup is the kernel's for the main table: the longest prefix wins,
 * then the lowest metric (a live-migration target gets a route of higher
 * priority, i.e. lower metric, while the source's is still there). Policy
 * routing rules are not followed: a CNI that steers pod IPs with rules or
 * with BPF instead of routes (Cilium's host routing) gives no owner, and then
 * only an explicit --trust-guest-ip can write an endpoint.
 */
import net from 'node:net';
import { UsageError } from '../errors.js';
import type { Route } from './iproute.js';

function v4(text: string): number | null {
  if (net.isIPv4(text)) return text.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
  return null;
}

function parseDst(dst: string): { addr: number; len: number } | null {
  if (dst === 'default') return { addr: 0, len: 0 };
  const [a, l] = dst.split('/');
  const addr = v4(a!);
  const len = l === undefined ? 32 : Number(l);
  return addr === null || !Number.isInteger(len) || len < 0 || len > 32 ? null : { addr, len };
}

const mask = (len: number) => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

/**
 * A reading of the routes, indexed: the /32 routes by address (a node has one
 * per pod, and every check of every pod asks about some), the shorter
 * prefixes in a list (a node has few). Made once per reading (the same array
 * of routes, which callers do not change but by adding or cutting routes, as
 * tests do), so that a lookup costs O(1) and not a parse of every route.
 */
interface RouteIndex {
  /** What it was made of: an array changed since (pushed to, cut) is indexed again. */
  length: number;
  last: Route | undefined;
  /** address → the lowest-metric /32 route to it. */
  hosts: Map<number, { metric: number; dev: string }>;
  /** dev → the addresses of its /32 routes. */
  byDev: Map<string, Set<string>>;
  prefixes: Array<{ addr: number; len: number; metric: number; dev: string }>;
}

const indexes = new WeakMap<Route[], RouteIndex>();

function indexOf(routes: Route[]): RouteIndex {
  let index = indexes.get(routes);
  if (index && index.length === routes.length && index.last === routes.at(-1)) return index;
  index = { length: routes.length, last: routes.at(-1), hosts: new Map(), byDev: new Map(), prefixes: [] };
  for (const r of routes) {
    const d = parseDst(r.dst);
    if (!d) continue;
    const metric = r.metric ?? 0;
    if (d.len === 32) {
      const best = index.hosts.get(d.addr);
      if (!best || metric < best.metric) index.hosts.set(d.addr, { metric, dev: r.dev });
      let ips = index.byDev.get(r.dev);
      if (!ips) index.byDev.set(r.dev, (ips = new Set()));
      ips.add(r.dst.replace(/\/32$/, ''));
    } else {
      index.prefixes.push({ addr: d.addr, len: d.len, metric, dev: r.dev });
    }
  }
  indexes.set(routes, index);
  return index;
}

/** The device the node's main table sends `ip` to, or null (no route, or not IPv4). */
export function routedDevice(ip: string, routes: Route[]): string | null {
  const addr = v4(ip);
  if (addr === null) return null;
  const index = indexOf(routes);
  const host = index.hosts.get(addr);
  if (host) return host.dev; // the longest prefix there is
  let best: { len: number; metric: number; dev: string } | null = null;
  for (const d of index.prefixes) {
    if (((addr & mask(d.len)) >>> 0) !== ((d.addr & mask(d.len)) >>> 0)) continue;
    if (!best || d.len > best.len || (d.len === best.len && d.metric < best.metric)) best = d;
  }
  return best?.dev ?? null;
}

/** The host addresses (/32 routes) the node routes to `dev`, i.e. the guest IPs a pod behind it owns. */
export function ownedAddresses(dev: string, routes: Route[]): string[] {
  return [...(indexOf(routes).byDev.get(dev) ?? [])].filter((ip) => routedDevice(ip, routes) === dev);
}

/** A guest IP a pod claimed that the node routes elsewhere. */
export interface RefusedClaim {
  ip: string;
  /** Where the node's routing sends it (null: nowhere). */
  routedTo: string | null;
  /** What made the claim: the pod's own address, or --guest-ip. */
  claimedBy: 'pod address' | '--guest-ip';
}

/** An explicit --guest-ip the node's routing does not send to the pod. */
export class GuestIpNotRoutedError extends UsageError {
  override name = 'GuestIpNotRoutedError';
}

export function guestIpNotRouted(ip: string, hostVeth: string, routedTo: string | null): GuestIpNotRoutedError {
  return new GuestIpNotRoutedError(
    `--guest-ip ${ip}: this node routes it ${routedTo ? `to ${routedTo}` : 'nowhere'}, not to the pod's host veth ${hostVeth}; ` +
      'pass --trust-guest-ip to write it anyway (frames for that IP then go into this pod)',
  );
}
