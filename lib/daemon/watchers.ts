/**
 * Netlink monitors and what their events mean: one monitor for the node
 * (links, routes, neighbours about the pods' host veths) and one per VM pod
 * and per young pod (links and the bridge's FDB). An event only says which
 * pods to check again; the check re-reads what it needs.
 */
import type { Claims } from './claims.js';
import type { DaemonConfig } from './config.js';
import type { Logger } from './log.js';
import { Monitor, type NetlinkEvent } from './monitor.js';
import { wantsMonitor, YOUNG_MS, type Pod } from './pod.js';
import type { NodeView } from './probe.js';
import type { PodTracker } from './tracking.js';

export interface WatchersDeps {
  cfg: DaemonConfig;
  log: Logger;
  node: NodeView;
  claims: Claims;
  pods: ReadonlyMap<number, Pod>;
  /** The pods a node event names, by what their last check saw (tracking.ts). */
  index: Pick<PodTracker, 'behindHostVeth' | 'withPeer' | 'withGuestIp'>;
  /** Checks a pod soon (`urgent`: without its rate limit; `verify`: its attachments against the kernel too). */
  kick: (pod: Pod, reason: string, urgent?: boolean, verify?: boolean) => void;
  /** Scans the netns sources again. */
  requestScan: () => void;
  fullResync: (reason: string) => void;
  /** A configured host interface changed: accelerate mode attaches there. */
  ensureRedirects: (reason: string) => void;
  stopping: () => boolean;
}

export class Watchers {
  private nodeMonitor: Monitor | null = null;

  constructor(private readonly d: WatchersDeps) {}

  /** Settles once the node's subscription exists (Monitor.ready). */
  startNodeMonitor(): Promise<void> {
    this.nodeMonitor = new Monitor({
      onEvent: (e) => this.onNodeEvent(e),
      onEventsLost: () => {
        this.d.node.invalidateAll();
        void this.d.fullResync('node netlink events were lost');
      },
      onExit: (code, stderr) => {
        if (this.d.stopping()) return;
        this.d.log.error({ code, stderr }, 'the node netlink monitor ended; restarting it in 1 s');
        setTimeout(() => {
          if (!this.d.stopping()) void this.startNodeMonitor().then(() => this.d.fullResync('node monitor restarted'));
        }, 1000);
      },
    });
    return this.nodeMonitor.ready;
  }

  stopNodeMonitor(): void {
    this.nodeMonitor?.stop();
  }

  startMonitor(pod: Pod): void {
    if (pod.monitor || pod.gone || this.d.stopping()) return;
    pod.monitorAt = Date.now();
    pod.monitor = new Monitor({
      netns: pod.path,
      onEvent: (e) => this.onPodEvent(pod, e),
      onEventsLost: () => this.d.kick(pod, 'netlink events were lost', false, true),
      onExit: (code, stderr) => {
        pod.monitor = null;
        if (pod.gone || this.d.stopping()) return;
        // usually: the netns went away under us
        this.d.log.debug({ netns: pod.path, code, stderr }, 'pod monitor ended');
        this.d.requestScan();
        if (pod.monitorRestarts++ < 5) {
          setTimeout(() => {
            if (!pod.gone && wantsMonitor(pod)) this.startMonitor(pod);
          }, 1000);
        }
      },
    });
  }

  restartMonitor(pod: Pod): void {
    pod.monitor?.stop();
    pod.monitor = null;
    this.startMonitor(pod);
  }

  private onNodeEvent(e: NetlinkEvent): void {
    const { cfg, node, pods, kick, index } = this.d;
    if (this.d.stopping()) return;
    if (e.kind === 'link') {
      node.linkEvent(e.ifindex, e.deleted);
      const owners = new Set([...index.withPeer(e.ifindex), ...index.behindHostVeth(e.ifname)]);
      for (const p of owners) kick(p, `host veth ${e.ifname} ${e.deleted ? 'removed' : 'changed'}`);
      if (owners.size === 0 && !e.deleted) {
        // a new interface: a pod may just have got its veth. Pods with a monitor see that
        // themselves; the others are looked at again, and the sources rescanned.
        this.d.requestScan();
        for (const p of pods.values()) {
          if (p.kind !== 'vm' && !p.monitor && Date.now() - p.seenAt < YOUNG_MS) kick(p, `new node interface ${e.ifname}`);
        }
      }
      if (cfg.accelerate && cfg.hostDevs.includes(e.ifname) && !e.deleted) this.d.ensureRedirects(`host interface ${e.ifname} changed`);
    } else if (e.kind === 'route') {
      // ownership follows the node's routes: the pods behind the route's device, the one
      // that held the address, and those refused it may all see another owner now
      node.invalidate('route');
      const concerned = new Set([...index.withPeer(e.ifindex), ...index.behindHostVeth(e.dev), ...index.withGuestIp(e.dst)]);
      for (const inode of this.d.claims.claimants(e.dst)) {
        const p = pods.get(inode);
        if (p) concerned.add(p);
      }
      for (const p of concerned) kick(p, `node route ${e.dst}/${e.dstLen} ${e.deleted ? 'removed' : `via ${e.dev}`}`);
    } else if (e.kind === 'neigh') {
      node.invalidate('neigh');
      if (e.deleted || !e.mac) return;
      // one event per neighbour state change: on a node of 1000 pods, many a second (a scan of
      // every pod here kept the JS thread, and a new guest's first frame, waiting ~1.5 ms)
      for (const p of index.behindHostVeth(e.dev)) {
        const port = p.ports.find((x) => x.hostVeth.ifname === e.dev && x.guestIp === e.ip);
        // the node's own reading of a guest's MAC: one per guest IP, not rate-limited
        if (port && port.guestMac !== e.mac) kick(p, `the node sees ${e.ip} at ${e.mac}`, true);
      }
    }
  }

  private onPodEvent(pod: Pod, e: NetlinkEvent): void {
    if (this.d.stopping() || pod.gone) return;
    if (e.kind === 'link') {
      this.d.kick(pod, `link ${e.ifname} ${e.deleted ? 'removed' : 'changed'} in the pod`);
    } else if (e.kind === 'tc') {
      // a filter or qdisc gone from one of its ports: vmpeer's may be among them (a clsact filter
      // removed sends no other event; the periodic resync trusts this for clsact: reconciler.ts)
      if (pod.kind === 'vm' && pod.ports.some((p) => p.uplink.ifname === e.dev || p.guestPorts.includes(e.dev))) {
        this.d.kick(pod, `a tc ${e.what} was removed at ${e.dev} in the pod`, false, true);
      }
    } else if (e.kind === 'fdb' && !e.deleted && e.mac && !pod.ambiguous) {
      const known = pod.ports.some((p) => p.guestPorts.includes(e.dev) && p.guestMac === e.mac);
      // A guest's first frame (its port waits for the MAC, and its bridge had learned none there
      // at the last check) is checked at once: a new pod has spent its credit on its own wiring
      // by then, and the guest is not covered until this check. Once per check result: the next
      // one knows the MAC or counts what was learned, and later events wait for credit again.
      const first = pod.ports.some((p) => p.guestPorts.includes(e.dev) && p.guestMac === null && (p.learnedMacs ?? 0) === 0);
      if (!known && (pod.kind !== 'plain' || pod.ports.length > 0)) this.d.kick(pod, `the bridge learned ${e.mac} on ${e.dev}`, first);
    }
  }
}
