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

export class PodTracker {
  readonly pods = new Map<number, Pod>();
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
    const pods = [...this.pods.values()].filter((p) => !p.gone);
    const holder = this.dp.endpoint(ip)?.podNetns;
    return pods.find((p) => hostVeth !== null && p.hostIfnames.has(hostVeth)) ?? pods.find((p) => p.inode === holder) ?? null;
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
    pod.monitor?.stop();
    pod.monitor = null;
    if (pod.timer) clearTimeout(pod.timer);
    if (pod.kick) clearTimeout(pod.kick);
    this.events.removed(pod, reason);
    if (pod.kind === 'vm') this.log.info({ netns: pod.path, inode: pod.inode }, `VM pod removed: ${reason}`);
  }
}
