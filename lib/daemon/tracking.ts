/**
 * The pods the daemon tracks: every pod netns the sources report, keyed by
 * its inode, added when it appears, followed when its path changes, removed
 * when it is gone. What that means for the dataplane is the caller's
 * (`events`).
 */
import type { Dataplane } from '../dataplane/dataplane.js';
import type { Logger } from './log.js';
import { newPod, type Pod } from './pod.js';
import { PodIndex } from './pod-index.js';
import type { NetnsSources } from './sources.js';

export interface PodEvents {
  added(pod: Pod): void;
  /** Its netns file has a new path (already set on the pod). */
  moved(pod: Pod): void;
  /** It is no longer tracked (`pod.gone` is set). */
  removed(pod: Pod, reason: string): void;
}

/** What a check saw of a pod that node events are about. */
export interface PodLinks {
  /** Node-side ifindexes of the pod's veth peers (VM pod or not). */
  peers: Iterable<number>;
  /** The host veths its VM ports lead to. */
  hostVeths: Iterable<string>;
  /** The guest IPs its VM ports hold or claim. */
  guestIps: Iterable<string>;
}

export class PodTracker {
  readonly pods = new Map<number, Pod>();
  /** Pods by what node events name (pod-index.ts): each event finds its pods in O(1), not by a scan of every pod. */
  private readonly byHostVeth = new PodIndex<string>();
  private readonly byPeer = new PodIndex<number>();
  private readonly byGuestIp = new PodIndex<string>();
  private scanTimer: NodeJS.Timeout | null = null;
  private unsettledScans = 0;

  constructor(
    private readonly sources: NetnsSources,
    private readonly dp: Dataplane,
    private readonly log: Logger,
    private readonly events: PodEvents,
    private readonly stopping: () => boolean,
  ) {}

  requestScan(delay = 20): void {
    if (this.stopping() || this.scanTimer) return;
    this.scanTimer = setTimeout(() => {
      this.scanTimer = null;
      if (!this.stopping()) this.syncSources();
    }, delay);
  }

  stop(): void {
    if (this.scanTimer) clearTimeout(this.scanTimer);
  }

  syncSources(): void {
    const { found, unsettled } = this.sources.scan();
    for (const pod of [...this.pods.values()]) {
      const entry = found.get(pod.inode);
      if (!entry) {
        this.remove(pod, 'its network namespace is gone');
      } else if (entry.path !== pod.path) {
        this.log.debug({ inode: pod.inode, from: pod.path, to: entry.path }, 'pod netns has a new path');
        pod.path = entry.path;
        pod.via = entry.via;
        pod.verified.clear();
        this.events.moved(pod);
      }
    }
    for (const entry of found.values()) {
      if (!this.pods.has(entry.inode)) this.add(entry.inode, entry.path, entry.via);
    }
    // a runtime creates the file first and mounts the namespace on it a moment later
    if (unsettled > 0 && this.unsettledScans++ < 50) this.requestScan(100);
    else if (unsettled === 0) this.unsettledScans = 0;
  }

  /** The live VM pod behind a host veth, or holding the endpoint of `ip`. */
  ownerOf(hostVeth: string | null, ip: string): Pod | null {
    if (hostVeth !== null) for (const p of this.byHostVeth.get(hostVeth)) if (!p.gone) return p;
    const holder = this.dp.endpoint(ip)?.podNetns;
    const pod = holder === undefined ? undefined : this.pods.get(holder);
    return pod && !pod.gone ? pod : null;
  }

  /** The pods whose ports lead to host veth `ifname` (as their last check saw them). */
  behindHostVeth(ifname: string): ReadonlySet<Pod> {
    return this.byHostVeth.get(ifname);
  }

  /** The pods with a veth whose node-side end has `ifindex`. */
  withPeer(ifindex: number): ReadonlySet<Pod> {
    return this.byPeer.get(ifindex);
  }

  /** The pods whose ports hold or claim guest IP `ip`. */
  withGuestIp(ip: string): ReadonlySet<Pod> {
    return this.byGuestIp.get(ip);
  }

  /** What a check of `pod` saw: node events about these concern it from now on (and no others). */
  setLinks(pod: Pod, links: PodLinks): void {
    this.byPeer.set(pod, links.peers);
    this.byHostVeth.set(pod, links.hostVeths);
    this.byGuestIp.set(pod, links.guestIps);
  }

  private unindex(pod: Pod): void {
    this.byPeer.drop(pod);
    this.byHostVeth.drop(pod);
    this.byGuestIp.drop(pod);
  }

  private add(inode: number, path: string, via: 'dir' | 'proc'): void {
    const pod = newPod(inode, path, via);
    this.pods.set(inode, pod);
    this.log.debug({ netns: path, inode, via }, 'new pod netns');
    this.events.added(pod);
  }

  private remove(pod: Pod, reason: string): void {
    pod.gone = true;
    this.pods.delete(pod.inode);
    this.unindex(pod);
    pod.monitor?.stop();
    pod.monitor = null;
    if (pod.timer) clearTimeout(pod.timer);
    pod.kick?.cancel();
    this.events.removed(pod, reason);
    if (pod.kind === 'vm') this.log.info({ netns: pod.path, inode: pod.inode }, `VM pod removed: ${reason}`);
  }
}
