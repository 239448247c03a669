/**
 * Who owns a guest IP: the pod whose host veth the node's own routing sends
 * that IP to. The CNI writes that route in the node netns (Calico: POD_IP/32
 * dev cali… scope link), and no pod can forge it; what a pod holds in its own
 * netns (the dummy eth0's address, link names) is only a claim (DESIGN.md §11).
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

/** The device the node's main table sends `ip` to, or null (no route, or not IPv4). */
export function routedDevice(ip: string, routes: Route[]): string | null {
  const addr = v4(ip);
  if (addr === null) return null;
  let best: { len: number; metric: number; dev: string } | null = null;
  for (const r of routes) {
    const d = parseDst(r.dst);
    if (!d || ((addr & mask(d.len)) >>> 0) !== ((d.addr & mask(d.len)) >>> 0)) continue;
    const metric = r.metric ?? 0;
    if (!best || d.len > best.len || (d.len === best.len && metric < best.metric)) best = { len: d.len, metric, dev: r.dev };
  }
  return best?.dev ?? null;
}

/** The host addresses (/32 routes) the node routes to `dev`, i.e. the guest IPs a pod behind it owns. */
export function ownedAddresses(dev: string, routes: Route[]): string[] {
  const out = new Set<string>();
  for (const r of routes) {
    const d = parseDst(r.dst);
    if (r.dev !== dev || !d || d.len !== 32) continue;
    const ip = r.dst.replace(/\/32$/, '');
    if (routedDevice(ip, routes) === dev) out.add(ip);
  }
  return [...out];
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
