/**
 * Guest IPs the daemon refused, and why: a pod claimed an address the node
 * routes to another pod's host veth (discovery, ownership.ts), or an endpoint
 * write would have taken an IP from another live pod whose route still points
 * to it. Each refusal is logged once per pod and address (with both pods),
 * counted in vmpeer_endpoint_conflicts_total, and kept for `status` until the
 * pod stops claiming it.
 */
import type { RefusedClaim } from '../discovery/ownership.js';
import type { Logger } from './log.js';

export interface PodRef {
  inode: number;
  path: string;
}

export interface Refusal extends RefusedClaim {
  netns: string;
  /** The pod the address belongs to, when the daemon knows it. */
  ownerNetns: string | null;
  since: string;
}

export class Claims {
  private readonly byPod = new Map<number, Map<string, Refusal>>();

  constructor(
    private readonly log: Logger,
    private readonly onConflict: () => void,
  ) {}

  /** What a check of `pod` refused now (replaces what it refused before). `ownerOf` names the pod behind a host veth. */
  update(pod: PodRef, refused: RefusedClaim[], ownerOf: (hostVeth: string | null, ip: string) => PodRef | null): void {
    const before = this.byPod.get(pod.inode) ?? new Map<string, Refusal>();
    const now = new Map<string, Refusal>();
    for (const c of refused) {
      const key = `${c.ip}>${c.routedTo ?? ''}`;
      const known = before.get(key);
      if (known) {
        now.set(key, known);
        continue;
      }
      const owner = ownerOf(c.routedTo, c.ip);
      const r: Refusal = { ...c, netns: pod.path, ownerNetns: owner?.path ?? null, since: new Date().toISOString() };
      now.set(key, r);
      this.onConflict();
      this.log.warn(
        { netns: pod.path, guestIp: c.ip, claimedBy: c.claimedBy, routedTo: c.routedTo, ownerNetns: r.ownerNetns },
        `refused guest IP ${c.ip}: the pod claims it, but this node routes it ${c.routedTo ? `to ${c.routedTo}` : 'nowhere'}${owner ? ` (pod ${owner.path})` : ''}`,
      );
    }
    if (now.size > 0) this.byPod.set(pod.inode, now);
    else this.byPod.delete(pod.inode);
  }

  forget(inode: number): void {
    this.byPod.delete(inode);
  }

  /** Pods that claim `ip` and were refused it: a route change may give it to them. */
  claimants(ip: string): number[] {
    return [...this.byPod].filter(([, m]) => [...m.values()].some((r) => r.ip === ip)).map(([inode]) => inode);
  }

  all(): Refusal[] {
    return [...this.byPod.values()].flatMap((m) => [...m.values()]);
  }
}
