/**
 * The pods the daemon tracks: every pod netns the sources report, keyed by
 * its inode, added when it appears, followed when its path changes, removed
 * when it is gone. What that means for the dataplane is the caller's
 * (`events`).
 */
import type { Dataplane } from '../dataplane/dataplane.js';
import type { Logger } from './log.js';
import { newPod, type Pod } from './pod.js';
import type { NetnsSources } from './sources.js';

export interface PodEvents {
  added(pod: Pod): void;
  /** Its netns file has a new path (already set on the pod). */
  moved(pod: Pod): void;
  /** It is no longer tracked (`pod.gone` is set). */
  removed(pod: Pod, reason: string): void;
}

const NO_PODS: ReadonlySet<Pod> = new Set();

export class PodTracker {
  readonly pods = new Map<number, Pod>();
  /** The pods behind each host veth (their `hostIfnames`): a node event about one is O(1), not a scan of every pod. */
  private readonly byHostVeth = new Map<string, Set<Pod>>();
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
    for (const p of hostVeth === null ? NO_PODS : this.behindHostVeth(hostVeth)) if (!p.gone) return p;
    const holder = this.dp.endpoint(ip)?.podNetns;
    const pod = holder === undefined ? undefined : this.pods.get(holder);
    return pod && !pod.gone ? pod : null;
  }

  /** The pods whose ports lead to host veth `ifname` (as their last check saw them). */
  behindHostVeth(ifname: string): ReadonlySet<Pod> {
    return this.byHostVeth.get(ifname) ?? NO_PODS;
  }

  /** What a check of `pod` saw: the host veths its ports lead to. */
  setHostVeths(pod: Pod, ifnames: Iterable<string>): void {
    this.unindex(pod);
    pod.hostIfnames = new Set(ifnames);
    if (pod.gone) return;
    for (const name of pod.hostIfnames) {
      let set = this.byHostVeth.get(name);
      if (!set) this.byHostVeth.set(name, (set = new Set()));
      set.add(pod);
    }
  }

  private unindex(pod: Pod): void {
    for (const name of pod.hostIfnames) {
      const set = this.byHostVeth.get(name);
      set?.delete(pod);
      if (set?.size === 0) this.byHostVeth.delete(name);
    }
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
