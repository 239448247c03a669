/**
 * Keeps the dataplane equal to what is on the node.
 *
 * Every pod netns the sources report is a Pod here, keyed by its inode. A pod
 * is checked (one netlink read of it; discovery when it has the VM layout) when
 * something says it may have changed:
 *   - its netns file appeared or vanished (fs.watch on the netns dirs),
 *   - a link or FDB event in the pod (a monitor per VM pod, and per new pod
 *     while it is young: it may still become a VM pod),
 *   - a link or neighbour event in the node about its host veth,
 *   - a poll, only while it is young or its guest has not shown its MAC,
 *   - the periodic full resync, which also verifies every attachment against
 *     the kernel and removes what belongs to nobody.
 * Idle, the daemon runs nothing but the monitors and the resync timer.
 *
 * Applying a check: fixup attached at each VM uplink (adopted when already
 * there, swapped when the object changed), one endpoint per guest IP with the
 * MAC the guest uses; attachments and endpoints of ports and pods that are
 * gone removed. Each change is one log line with its reason.
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { HookTarget } from '../bpf/link.js';
import type { BridgeBypass } from '../dataplane/codec.js';
import { isPodProgram, type AttachmentRecord, type Dataplane, type PodProgram, type ProgramName } from '../dataplane/dataplane.js';
import type { VmPort } from '../discovery/vm-pod.js';
import { routedDevice, type RefusedClaim } from '../discovery/ownership.js';
import type { Route } from '../discovery/iproute.js';
import { Claims } from './claims.js';
import { EndpointTableFullError } from '../dataplane/endpoint-table.js';
import { conntrackWarning, policyInTheWay, SKIP_EGRESS_FLAG } from '../dataplane/egress-policy.js';
import type { Native } from '../native.js';
import type { DaemonConfig } from './config.js';
import type { Logger } from './log.js';
import type { DaemonMetrics, EndpointSample } from './metrics.js';
import { Monitor, type NetlinkEvent } from './monitor.js';
import { lookInto, NodeView, type PodLook } from './probe.js';
import type { NetnsSources } from './sources.js';
import { netnsPaths } from '../dataplane/netns-paths.js';
import { Slots, type Release } from './slots.js';
import { programTag } from '../bpf/fdinfo.js';
import { verifyRecord } from '../dataplane/verify.js';
import { swapProgram } from '../dataplane/swap-program.js';

/** A new netns may still become a VM pod: watched (monitor, polls) this long. */
const YOUNG_MS = 60_000;
/** ... and polled every FAST_POLL_MS for the first FAST_MS of it, then every SLOW_POLL_MS. */
const FAST_MS = 5_000;
const FAST_POLL_MS = 200;
const SLOW_POLL_MS = 1_000;
/** ... and every MONITORED_POLL_MS when a monitor reports its changes. */
const MONITORED_POLL_MS = 3_000;
/** A monitor may miss what happens before it has subscribed: polled fast this long after it started. */
const MONITOR_SETTLE_MS = 500;
/** Pods looked into at the same time. */
const CONCURRENCY = 8;
/**
 * Attachments under way at the same time, each on its own native thread. A
 * tcx attach holds the rtnl lock across an RCU grace period (~15 ms), so the
 * kernel runs them mostly one after another; with many queued, some share a
 * grace period (~13 ms each). Meanwhile the look slots go on to other pods.
 */
const ATTACH_CONCURRENCY = 32;
/** Events within this window start one check. */
const COALESCE_MS = 10;
/** A failed check is retried after this, doubling each time (up to the resync interval). */
const FIRST_RETRY_MS = 100;
/** Checks of one pod start at most this often, whatever its events say (a tenant's events cost it, not the node). */
const MIN_CHECK_MS = 50;
/**
 * A bridge that learned more MACs than this on its guest ports has a guest
 * sending from many (a flood, or a nested network): its FDB events no longer
 * start checks (each would re-read the whole FDB), it is polled this slowly.
 */
const AMBIGUOUS_MACS = 16;
const AMBIGUOUS_POLL_MS = 5_000;

interface Pod {
  inode: number;
  path: string;
  via: 'dir' | 'proc';
  seenAt: number;
  vmAt: number | null;
  kind: 'unknown' | 'plain' | 'vm';
  ports: VmPort[];
  /** node-side ifindexes of this pod's veth peers (VM or not): node link events about them concern it. */
  peers: Set<number>;
  hostIfnames: Set<string>;
  /** "program@ifname" → the port's ifindexes when its record was last verified against the kernel. */
  verified: Map<string, string>;
  waitingLogged: boolean;
  bypassRefusedLogged: boolean;
  /** Guest IPs whose endpoint cannot be written (the table has no slot for them), and why: the pod is uncovered. */
  uncovered: Map<string, string>;
  /** Its bridge learned more than AMBIGUOUS_MACS MACs on a guest port: polled, FDB events ignored. */
  ambiguous: boolean;
  lastCheckAt: number;
  monitor: Monitor | null;
  monitorAt: number;
  monitorRestarts: number;
  timer: NodeJS.Timeout | null;
  kick: NodeJS.Timeout | null;
  running: Promise<void> | null;
  /** The check this pod waits a slot for (not started yet): later requests merge into it. */
  queued: CheckRequest | null;
  /** A check asked for while one runs: it runs right after. */
  again: CheckRequest | null;
  failures: number;
  gone: boolean;
}

interface CheckRequest {
  reason: string;
  verify: boolean;
  /** Asked for by a full resync: waits behind the checks that events and polls ask for. */
  background: boolean;
}

export interface ReconcilerDeps {
  config: DaemonConfig;
  dp: Dataplane;
  native: Native;
  log: Logger;
  sources: NetnsSources;
}

export class Reconciler {
  readonly pods = new Map<number, Pod>();
  private readonly node = new NodeView();
  private readonly tags: Record<ProgramName, string>;
  private readonly cfg: DaemonConfig;
  private readonly dp: Dataplane;
  private readonly n: Native;
  private readonly log: Logger;
  private readonly sources: NetnsSources;
  private metrics: DaemonMetrics | null = null;
  private readyFlag = false;
  private stopping = false;
  /** Looking into pods: those events and polls ask for first, then a full resync's. */
  private readonly lookSlots = new Slots<Pod>(CONCURRENCY);
  /** Attaching fixup, in the same order. */
  private readonly attachSlots = new Slots<Pod>(ATTACH_CONCURRENCY);
  private scanTimer: NodeJS.Timeout | null = null;
  private unsettledScans = 0;
  private resyncTimer: NodeJS.Timeout | null = null;
  private procTimer: NodeJS.Timeout | null = null;
  private nodeMonitor: Monitor | null = null;
  private unwatch: (() => void) | null = null;
  private fullRunning: Promise<void> | null = null;
  private recordsDuringResync: AttachmentRecord[] | null = null;
  private readonly missingHostDevs = new Set<string>();
  private adopted = 0;
  /** Guest IPs refused to pods (ownership follows the node's routes). */
  readonly claims: Claims;
  /** Guest IPs accelerate mode leaves to the kernel path: their host veth has egress programs. */
  readonly notAccelerated = new Set<string>();

  constructor(deps: ReconcilerDeps) {
    this.cfg = deps.config;
    this.dp = deps.dp;
    this.n = deps.native;
    this.log = deps.log;
    this.sources = deps.sources;
    this.claims = new Claims(this.log, () => this.metrics?.conflicts.inc());
    this.tags = { fixup: programTag(this.dp.program('fixup')), redirect: programTag(this.dp.program('redirect')), from_guest: programTag(this.dp.program('from_guest')) };
  }

  get programTags(): Record<ProgramName, string> {
    return this.tags;
  }

  setMetrics(metrics: DaemonMetrics): void {
    this.metrics = metrics;
  }

  get ready(): boolean {
    return this.readyFlag;
  }

  /** PIDs of the processes the daemon runs (not evidence of a pod when scanning /proc). */
  childPids(): Set<number> {
    const pids = new Set<number>();
    for (const m of [this.nodeMonitor, ...[...this.pods.values()].map((p) => p.monitor)]) if (m?.pid) pids.add(m.pid);
    return pids;
  }

  // ------------------------------------------------------------ lifecycle

  /** Starts watching, then runs the first full reconcile (after which the daemon is ready). */
  async start(): Promise<void> {
    this.startNodeMonitor();
    this.unwatch = this.sources.watch(() => this.requestScan());
    if (this.cfg.proc) this.procTimer = setInterval(() => this.requestScan(), this.cfg.procIntervalMs);
    await this.fullResync('start');
    this.scheduleResync();
  }

  private scheduleResync(): void {
    if (this.stopping) return;
    this.resyncTimer = setTimeout(() => {
      void this.fullResync('periodic resync').finally(() => this.scheduleResync());
    }, this.cfg.resyncIntervalMs);
  }

  /** Stops every watcher and monitor; with `cleanup`, removes all of vmpeer's state, else leaves the dataplane as it is. */
  async stop(cleanup: boolean): Promise<void> {
    this.stopping = true;
    for (const t of [this.resyncTimer, this.scanTimer]) if (t) clearTimeout(t);
    if (this.procTimer) clearInterval(this.procTimer);
    this.unwatch?.();
    this.nodeMonitor?.stop();
    for (const pod of this.pods.values()) {
      pod.monitor?.stop();
      if (pod.timer) clearTimeout(pod.timer);
      if (pod.kick) clearTimeout(pod.kick);
    }
    await Promise.race([
      Promise.allSettled([this.fullRunning, ...[...this.pods.values()].map((p) => p.running)]),
      new Promise((resolve) => setTimeout(resolve, 5000)),
    ]);
    if (!cleanup) {
      this.dp.close();
      return;
    }
    for (const r of this.dp.attachments()) {
      this.dropRecord(r, this.pods.get(r.netnsInode)?.path ?? null);
      this.change('detach', { program: r.program, ifname: r.ifname, netns: this.pods.get(r.netnsInode)?.path ?? `inode ${r.netnsInode}` }, `detached ${r.program}`, 'cleanup on exit');
    }
    for (const ep of this.dp.endpoints()) {
      this.dp.deleteEndpoint(ep.guestIp);
      this.change('endpoint_delete', { guestIp: ep.guestIp }, 'removed endpoint', 'cleanup on exit');
    }
    const pruned = this.dp.closeAndPruneIfEmpty();
    this.log.info({ root: this.cfg.bpffsRoot, removed: pruned }, pruned ? 'removed the state directory' : 'state directory kept: it is not empty');
  }

  // ------------------------------------------------------------ full resync

  fullResync(reason: string): Promise<void> {
    if (this.fullRunning) return this.fullRunning;
    this.fullRunning = (async () => {
      const t0 = performance.now();
      this.metrics?.reconciles.inc({ kind: 'full' });
      try {
        this.checkPins();
        this.syncSources();
        await Promise.all([...this.pods.values()].map((p) => this.checkPod(p, reason, true, true)));
        if (this.stopping) return;
        this.collectGarbage();
        this.ensureRedirects(reason);
        if (!this.readyFlag) {
          this.readyFlag = true;
          this.metrics?.ready.set(1);
          const vms = [...this.pods.values()].filter((p) => p.kind === 'vm');
          this.log.info(
            { pods: this.pods.size, vmPods: vms.length, adopted: this.adopted, endpoints: this.dp.endpoints().length, ms: Math.round(performance.now() - t0) },
            'ready: first full reconcile done',
          );
        }
      } catch (e) {
        this.metrics?.reconcileErrors.inc({ kind: 'full' });
        this.log.error({ err: e, reason }, 'full reconcile failed');
      } finally {
        this.metrics?.reconcileDuration.observe({ kind: 'full' }, (performance.now() - t0) / 1000);
        this.fullRunning = null;
        this.recordsDuringResync = null;
      }
    })();
    return this.fullRunning;
  }

  /**
   * vmpeer's pins are the state the next process finds. When some vanished
   * (removed by hand, or by an older vmpeer that removed state recursively),
   * the daemon is not ready until this resync has rebuilt them: the maps are
   * pinned again from this process's fds, and the attachments are verified
   * pod by pod (filters without a record adopted, links attached again).
   */
  private checkPins(): void {
    const repaired = this.dp.repairPins();
    if (repaired.length === 0) return;
    this.readyFlag = false;
    this.metrics?.ready.set(0);
    this.recordsDuringResync = null;
    for (const pod of this.pods.values()) pod.verified.clear();
    this.log.error({ root: this.cfg.bpffsRoot, missing: repaired }, "not ready: vmpeer's pinned state vanished; rebuilding it from the kernel");
  }

  // ------------------------------------------------------------ sources

  private requestScan(delay = 20): void {
    if (this.stopping || this.scanTimer) return;
    this.scanTimer = setTimeout(() => {
      this.scanTimer = null;
      if (!this.stopping) this.syncSources();
    }, delay);
  }

  private syncSources(): void {
    const { found, unsettled } = this.sources.scan();
    for (const pod of [...this.pods.values()]) {
      const entry = found.get(pod.inode);
      if (!entry) {
        this.removePod(pod, 'its network namespace is gone');
      } else if (entry.path !== pod.path) {
        this.log.debug({ inode: pod.inode, from: pod.path, to: entry.path }, 'pod netns has a new path');
        pod.path = entry.path;
        pod.via = entry.via;
        pod.verified.clear();
        if (pod.monitor && pod.monitor.netns !== entry.path) this.restartMonitor(pod);
        this.kick(pod, 'its netns has a new path');
      }
    }
    for (const entry of found.values()) {
      if (!this.pods.has(entry.inode)) this.addPod(entry.inode, entry.path, entry.via);
    }
    // a runtime creates the file first and mounts the namespace on it a moment later
    if (unsettled > 0 && this.unsettledScans++ < 50) this.requestScan(100);
    else if (unsettled === 0) this.unsettledScans = 0;
  }

  private addPod(inode: number, path: string, via: 'dir' | 'proc'): void {
    const pod: Pod = {
      inode,
      path,
      via,
      seenAt: Date.now(),
      vmAt: null,
      kind: 'unknown',
      ports: [],
      peers: new Set(),
      hostIfnames: new Set(),
      verified: new Map(),
      waitingLogged: false,
      bypassRefusedLogged: false,
      uncovered: new Map(),
      ambiguous: false,
      lastCheckAt: 0,
      monitor: null,
      monitorAt: 0,
      monitorRestarts: 0,
      timer: null,
      kick: null,
      running: null,
      queued: null,
      again: null,
      failures: 0,
      gone: false,
    };
    this.pods.set(inode, pod);
    this.log.debug({ netns: path, inode, via }, 'new pod netns');
    this.startMonitor(pod);
    this.kick(pod, 'new pod netns');
  }

  private removePod(pod: Pod, reason: string): void {
    pod.gone = true;
    this.pods.delete(pod.inode);
    pod.monitor?.stop();
    pod.monitor = null;
    if (pod.timer) clearTimeout(pod.timer);
    if (pod.kick) clearTimeout(pod.kick);
    this.claims.forget(pod.inode);
    for (const p of pod.ports) this.notAccelerated.delete(p.guestIp);
    this.forget(pod, reason);
    if (pod.kind === 'vm') this.log.info({ netns: pod.path, inode: pod.inode }, `VM pod removed: ${reason}`);
  }

  /** Removes the attachments and endpoints that belong to a pod (but the attachments on `keepPorts`). */
  private forget(pod: Pod, reason: string, keepPorts: string[] = []): void {
    for (const r of this.records()) {
      if (!isPodProgram(r.program) || r.netnsInode !== pod.inode || keepPorts.includes(r.ifname)) continue;
      this.dropPodRecord(pod, r, reason);
    }
    if (keepPorts.length === 0) {
      // the guest IPs this pod had; anything else of it is found by the full resync
      for (const ip of new Set(pod.ports.map((p) => p.guestIp))) this.deleteEndpointOf(pod, ip, reason);
    }
  }

  private dropPodRecord(pod: Pod, r: AttachmentRecord, reason: string): void {
    this.dropRecord(r, pod.path);
    pod.verified.delete(`${r.program}@${r.ifname}`);
    this.change('detach', { program: r.program, netns: pod.path, ifname: r.ifname, mode: r.mode }, `detached ${r.program}`, reason);
  }

  /** Deletes the endpoint of `ip` if it (still) belongs to this pod: after IP reuse it may be another's. */
  private deleteEndpointOf(pod: Pod, ip: string, reason: string): void {
    const ep = this.dp.endpoint(ip);
    if (!ep || ep.podNetns !== pod.inode) return;
    this.dp.deleteEndpoint(ip);
    this.change('endpoint_delete', { netns: pod.path, guestIp: ip, guestMac: ep.guestMac }, 'removed endpoint', reason);
  }

  // ------------------------------------------------------------ monitors

  private startNodeMonitor(): void {
    this.nodeMonitor = new Monitor({
      onEvent: (e) => this.onNodeEvent(e),
      onEventsLost: () => void this.fullResync('node netlink events were lost'),
      onExit: (code, stderr) => {
        if (this.stopping) return;
        this.log.error({ code, stderr }, 'the node netlink monitor ended; restarting it in 1 s');
        setTimeout(() => {
          if (!this.stopping) {
            this.startNodeMonitor();
            void this.fullResync('node monitor restarted');
          }
        }, 1000);
      },
    });
  }

  private startMonitor(pod: Pod): void {
    if (pod.monitor || pod.gone || this.stopping) return;
    pod.monitorAt = Date.now();
    pod.monitor = new Monitor({
      netns: pod.path,
      onEvent: (e) => this.onPodEvent(pod, e),
      onEventsLost: () => this.kick(pod, 'netlink events were lost'),
      onExit: (code, stderr) => {
        pod.monitor = null;
        if (pod.gone || this.stopping) return;
        // usually: the netns went away under us
        this.log.debug({ netns: pod.path, code, stderr }, 'pod monitor ended');
        this.requestScan();
        if (pod.monitorRestarts++ < 5) {
          setTimeout(() => {
            if (!pod.gone && this.wantsMonitor(pod)) this.startMonitor(pod);
          }, 1000);
        }
      },
    });
  }

  private restartMonitor(pod: Pod): void {
    pod.monitor?.stop();
    pod.monitor = null;
    this.startMonitor(pod);
  }

  private wantsMonitor(pod: Pod): boolean {
    return pod.kind !== 'plain' || Date.now() - pod.seenAt < YOUNG_MS;
  }

  private onNodeEvent(e: NetlinkEvent): void {
    if (this.stopping) return;
    if (e.kind === 'link') {
      this.node.invalidate('link');
      const owners = [...this.pods.values()].filter((p) => p.peers.has(e.ifindex) || p.hostIfnames.has(e.ifname));
      for (const p of owners) this.kick(p, `host veth ${e.ifname} ${e.deleted ? 'removed' : 'changed'}`);
      if (owners.length === 0 && !e.deleted) {
        // a new interface: a pod may just have got its veth. Pods with a monitor see that
        // themselves; the others are looked at again, and the sources rescanned.
        this.requestScan();
        for (const p of this.pods.values()) {
          if (p.kind !== 'vm' && !p.monitor && Date.now() - p.seenAt < YOUNG_MS) this.kick(p, `new node interface ${e.ifname}`);
        }
      }
      if (this.cfg.accelerate && this.cfg.hostDevs.includes(e.ifname) && !e.deleted) this.ensureRedirects(`host interface ${e.ifname} changed`);
    } else if (e.kind === 'route') {
      // ownership follows the node's routes: the pods behind the route's device, the one
      // that held the address, and those refused it may all see another owner now
      this.node.invalidate('route');
      const claimants = new Set(this.claims.claimants(e.dst));
      for (const p of this.pods.values()) {
        if (p.peers.has(e.ifindex) || p.hostIfnames.has(e.dev) || p.ports.some((x) => x.guestIp === e.dst) || claimants.has(p.inode)) {
          this.kick(p, `node route ${e.dst}/${e.dstLen} ${e.deleted ? 'removed' : `via ${e.dev}`}`);
        }
      }
    } else if (e.kind === 'neigh') {
      this.node.invalidate('neigh');
      if (e.deleted || !e.mac) return;
      for (const p of this.pods.values()) {
        const port = p.ports.find((x) => x.hostVeth.ifname === e.dev && x.guestIp === e.ip);
        // the node's own reading of a guest's MAC: one per guest IP, not rate-limited
        if (port && port.guestMac !== e.mac) this.kick(p, `the node sees ${e.ip} at ${e.mac}`, true);
      }
    }
  }

  private onPodEvent(pod: Pod, e: NetlinkEvent): void {
    if (this.stopping || pod.gone) return;
    if (e.kind === 'link') {
      this.kick(pod, `link ${e.ifname} ${e.deleted ? 'removed' : 'changed'} in the pod`);
    } else if (e.kind === 'fdb' && !e.deleted && e.mac && !pod.ambiguous) {
      const known = pod.ports.some((p) => p.guestPorts.includes(e.dev) && p.guestMac === e.mac);
      if (!known && (pod.kind !== 'plain' || pod.ports.length > 0)) this.kick(pod, `the bridge learned ${e.mac} on ${e.dev}`);
    }
  }

  // ------------------------------------------------------------ checking a pod

  private kick(pod: Pod, reason: string, urgent = false): void {
    if (pod.gone || this.stopping || pod.kick) return;
    pod.kick = setTimeout(
      () => {
        pod.kick = null;
        void this.checkPod(pod, reason, false);
      },
      urgent ? COALESCE_MS : Math.max(COALESCE_MS, pod.lastCheckAt + MIN_CHECK_MS - Date.now()),
    );
  }

  /**
   * Checks a pod; resolves when done. A request made while the pod waits for
   * a slot joins that check (it has not read anything yet); one made while a
   * check runs gets a check right after it. A full resync's checks
   * (`background`) wait behind those of events and polls, so that a new pod
   * is not queued behind every pod of the node.
   */
  checkPod(pod: Pod, reason: string, verify: boolean, background = false): Promise<void> {
    if (pod.gone || this.stopping) return Promise.resolve();
    if (pod.queued) {
      pod.queued.verify ||= verify;
      if (!background && pod.queued.background) {
        pod.queued.background = false;
        this.lookSlots.promote(pod);
      }
      return pod.running!;
    }
    if (pod.running) {
      pod.again = {
        reason: pod.again?.reason ?? reason,
        verify: verify || (pod.again?.verify ?? false),
        background: background && (pod.again?.background ?? true),
      };
      return pod.running;
    }
    pod.running = (async () => {
      let next: CheckRequest | null = { reason, verify, background };
      while (next && !pod.gone && !this.stopping) {
        pod.again = null;
        pod.queued = next;
        const looking = await this.lookSlots.acquire(pod, next.background);
        pod.queued = null;
        try {
          if (pod.gone || this.stopping) break;
          await this.checkOnce(pod, next, looking);
        } finally {
          looking();
        }
        next = pod.again;
      }
      pod.running = null;
    })();
    return pod.running;
  }

  /** One check; `looking` is its look slot, released once the pod has been read. */
  private async checkOnce(pod: Pod, request: CheckRequest, looking: Release): Promise<void> {
    const { reason, verify } = request;
    if (pod.timer) clearTimeout(pod.timer);
    pod.timer = null;
    pod.lastCheckAt = Date.now();
    const t0 = performance.now();
    this.metrics?.reconciles.inc({ kind: 'pod' });
    try {
      let look: PodLook;
      try {
        look = await lookInto(pod.path, this.node);
      } catch (e) {
        looking();
        if (pod.gone || this.stopping) return;
        if (!this.stillThere(pod)) {
          this.requestScan(0);
          return;
        }
        throw e;
      }
      looking();
      if (pod.gone || this.stopping) return;
      this.log.trace({ netns: pod.path, reason, shape: look.shape, ports: look.ports.length, ms: Math.round(performance.now() - t0) }, 'checked pod');
      await this.apply(pod, look, request);
      if (pod.gone || this.stopping) return;
      pod.failures = 0;
      this.scheduleNext(pod);
    } catch (e) {
      if (pod.gone || this.stopping) return;
      if (!this.stillThere(pod)) {
        this.requestScan(0);
        return;
      }
      pod.failures++;
      this.metrics?.reconcileErrors.inc({ kind: 'pod' });
      // a pod being wired up fails transiently: look again soon, then back off
      const retry = Math.min(FIRST_RETRY_MS * 2 ** Math.min(pod.failures - 1, 9), this.cfg.resyncIntervalMs);
      this.log.warn({ netns: pod.path, err: (e as Error).message, retryMs: retry }, 'pod check failed');
      pod.timer = setTimeout(() => void this.checkPod(pod, 'retry after a failure', true), retry);
    } finally {
      this.metrics?.reconcileDuration.observe({ kind: 'pod' }, (performance.now() - t0) / 1000);
    }
  }

  private stillThere(pod: Pod): boolean {
    try {
      return fs.statSync(pod.path).ino === pod.inode;
    } catch {
      return false;
    }
  }

  private scheduleNext(pod: Pod): void {
    if (pod.gone || this.stopping) return;
    const now = Date.now();
    let since: number | null = null;
    if (pod.kind === 'vm') {
      if (pod.ports.some((p) => p.guestMac === null)) since = pod.vmAt;
    } else {
      since = pod.seenAt;
    }
    const age = since === null ? Infinity : now - since;
    // with a monitor running, events say when to look, and polls are only the safety net
    // (fast while the monitor may not have subscribed yet); without one, polls do the work
    let delay: number | null = null;
    if (age < YOUNG_MS) {
      if (pod.monitor) delay = now - pod.monitorAt < MONITOR_SETTLE_MS ? FAST_POLL_MS : MONITORED_POLL_MS;
      else delay = age < FAST_MS ? FAST_POLL_MS : SLOW_POLL_MS;
    }
    if (pod.ambiguous) delay = AMBIGUOUS_POLL_MS;
    if (delay !== null) {
      pod.timer = setTimeout(() => void this.checkPod(pod, 'poll', false), delay);
    }
    if (!this.wantsMonitor(pod) && pod.monitor) {
      pod.monitor.stop();
      pod.monitor = null;
    }
  }

  private async apply(pod: Pod, look: PodLook, request: CheckRequest): Promise<void> {
    const wasVm = pod.kind === 'vm';
    const oldIps = pod.ports.map((p) => p.guestIp);
    pod.peers = new Set(look.peers);
    pod.ports = look.ports;
    pod.hostIfnames = new Set(look.ports.map((p) => p.hostVeth.ifname));
    const refused = [...look.refused];
    const ambiguous = look.ports.some((p) => (p.learnedMacs ?? 0) > AMBIGUOUS_MACS);
    if (ambiguous !== pod.ambiguous) {
      pod.ambiguous = ambiguous;
      if (ambiguous) this.log.warn({ netns: pod.path, macs: Math.max(...look.ports.map((p) => p.learnedMacs ?? 0)) }, `the pod's bridge learned more than ${AMBIGUOUS_MACS} MACs on a guest port: polled every ${AMBIGUOUS_POLL_MS / 1000} s, its FDB events ignored`);
      else this.log.info({ netns: pod.path }, "the pod's bridge is down to a few MACs on its guest ports: its FDB events count again");
    }
    for (const ip of pod.uncovered.keys()) if (!look.ports.some((p) => p.guestIp === ip)) pod.uncovered.delete(ip);

    if (look.ports.length === 0) {
      this.claims.update(pod, refused, (dev, ip) => this.ownerOf(dev, ip));
      pod.kind = 'plain';
      if (wasVm) {
        pod.ports = oldIps.map((guestIp) => ({ guestIp }) as VmPort); // what forget() removes
        this.forget(pod, `no longer a VM pod: ${look.why ?? 'no bridge with a guest port leads to this node'}`);
        pod.ports = [];
        this.log.info({ netns: pod.path, why: look.why }, 'pod is no longer a VM pod');
      }
      return;
    }

    if (!wasVm) {
      pod.kind = 'vm';
      pod.vmAt ??= Date.now();
      this.log.info(
        { netns: pod.path, ports: look.ports.map((p) => ({ uplink: p.uplink.ifname, guestIp: p.guestIp, guestMac: p.guestMac, hostVeth: p.hostVeth.ifname })), reason: request.reason },
        'found VM pod',
      );
    }
    this.startMonitor(pod);

    // ports that are no longer VM uplinks, or guest ports behind them
    this.forget(pod, 'the port is no longer a VM uplink or guest port', look.ports.flatMap((p) => [p.uplink.ifname, ...p.guestPorts]));
    const records = this.records().filter((r) => r.netnsInode === pod.inode);
    const routes = await this.node.nodeRoutes();
    for (const port of look.ports) {
      const bypass = this.bypassFor(pod, port);
      await this.ensureAttached('fixup', pod, port, port.uplink.ifname, records, request);
      if (pod.gone || this.stopping) return;
      if (bypass) {
        await this.ensureAttached('from_guest', pod, port, bypass.ifname, records, request);
        if (pod.gone || this.stopping) return;
      } else {
        const stale = records.filter((r) => r.program === 'from_guest' && port.guestPorts.includes(r.ifname));
        for (const r of stale) this.dropPodRecord(pod, r, 'the bridge bypass is off');
      }
      // a port on standby (routed elsewhere) has fixup in place and no endpoint until the route moves here
      if (port.standby) this.deleteEndpointOf(pod, port.guestIp, `the node routes the guest IP to ${port.standby.routedTo}`);
      const conflict = port.standby ?? this.ensureEndpoint(pod, port, request.reason, bypass ? { uplinkIfindex: port.uplink.ifindex, guestIfindex: bypass.ifindex } : null, routes);
      if (conflict && !refused.includes(conflict)) refused.push(conflict);
    }
    this.claims.update(pod, refused, (dev, ip) => this.ownerOf(dev, ip));

    for (const ip of oldIps) {
      if (!look.ports.some((p) => p.guestIp === ip)) this.deleteEndpointOf(pod, ip, 'the pod no longer has this guest IP');
    }
  }

  /** The guest port to bypass the bridge to, when the bypass is on and the pod allows it. */
  private bypassFor(pod: Pod, port: VmPort): VmPort['guestPort'] {
    if (!this.cfg.bypassBridge) return null;
    if (!port.guestPort && !pod.bypassRefusedLogged) {
      pod.bypassRefusedLogged = true;
      this.log.warn({ netns: pod.path, bridge: port.bridge, guestPorts: port.guestPorts }, 'bridge bypass: the bridge has more than one guest port; its traffic goes through the bridge');
    }
    return port.guestPort;
  }

  /** `program` attached at `ifname` in the pod: adopted, upgraded or attached. */
  private async ensureAttached(program: PodProgram, pod: Pod, port: VmPort, ifname: string, records: AttachmentRecord[], request: CheckRequest): Promise<void> {
    const { reason, verify } = request;
    const record = records.find((r) => r.program === program && r.ifname === ifname);
    const target: HookTarget = { netns: pod.path, ifname, hook: 'ingress' };
    const key = `${program}@${ifname}`;
    const generation = `${port.uplink.ifindex}/${port.hostVeth.ifindex}/${port.guestPort?.ifindex ?? 0}`;
    const where = { program, netns: pod.path, ifname };
    if (record) {
      const known = pod.verified.get(key);
      if (!verify && known === generation) return;
      const v = verifyRecord(this.n, record, target, this.tags[program]);
      if (v.state === 'ok') {
        if (known === undefined) {
          this.adopted++;
          this.log.info({ ...where, mode: record.mode, tag: v.tag }, `adopted ${program} (already attached, same program)`);
        }
        pod.verified.set(key, generation);
        return;
      }
      if (v.state === 'outdated') {
        swapProgram(this.n, record, target, this.dp.program(program));
        pod.verified.set(key, generation);
        this.change('upgrade', { ...where, mode: record.mode, from: v.tag, to: this.tags[program] }, `upgraded ${program}`, 'the attached program differs from this object (replaced in place)');
        return;
      }
      this.dropRecord(record, pod.path);
      this.change('drop_stale', { ...where, pin: record.pin }, 'dropped a stale attachment record', v.why);
    }
    const attaching = await this.attachSlots.acquire(pod, request.background);
    let created: AttachmentRecord;
    try {
      if (pod.gone || this.stopping) return;
      ({ record: created } = await this.dp.attachAsync(program, target, { mode: this.cfg.mode }));
    } finally {
      attaching();
    }
    if (pod.gone) {
      // removed while the attach was under way: what it made goes too
      this.dropRecord(created, pod.path);
      return;
    }
    pod.verified.set(key, generation);
    this.change('attach', { ...where, mode: created.mode, guestIp: port.guestIp }, `attached ${program}`, record ? 'replacing a stale record' : reason === 'start' ? 'VM pod found at start' : `VM pod found (${reason})`);
  }

  /** Accelerate mode: whether `redirect` may skip the host veth's egress (egress-policy.ts). */
  private mayRedirect(pod: Pod, port: VmPort): boolean {
    if (!this.cfg.accelerate || this.cfg.skipEgressPrograms) return true;
    const policy = policyInTheWay(port.hostVeth, this.n);
    const refused = policy !== null;
    if (refused !== this.notAccelerated.has(port.guestIp)) {
      if (refused) {
        this.notAccelerated.add(port.guestIp);
        this.log.warn(
          { netns: pod.path, guestIp: port.guestIp, hostVeth: port.hostVeth.ifname, egress: policy.programs },
          `accelerate: not for ${port.guestIp}: ${policy.why} (its policy), which redirect would skip; its traffic takes the kernel path (--${SKIP_EGRESS_FLAG} redirects past it)`,
        );
      } else {
        this.notAccelerated.delete(port.guestIp);
        this.log.info({ netns: pod.path, guestIp: port.guestIp, hostVeth: port.hostVeth.ifname }, `accelerate: ${port.guestIp} accelerated again (no programs at its host veth's egress)`);
      }
    }
    return !refused;
  }

  /** The live VM pod behind a host veth, or holding the endpoint of `ip`. */
  private ownerOf(hostVeth: string | null, ip: string): Pod | null {
    const pods = [...this.pods.values()].filter((p) => !p.gone);
    const holder = this.dp.endpoint(ip)?.podNetns;
    return pods.find((p) => hostVeth !== null && p.hostIfnames.has(hostVeth)) ?? pods.find((p) => p.inode === holder) ?? null;
  }

  /**
   * Writes the port's endpoint; returns the refusal instead when the IP is
   * held by another live pod whose route still points to it (discovery
   * already checked the route to this pod: this catches a race between two
   * readings of the routes, never lets a claim win over a route).
   */
  private ensureEndpoint(pod: Pod, port: VmPort, reason: string, bypass: BridgeBypass | null, routes: Route[]): RefusedClaim | null {
    const current = this.dp.endpoint(port.guestIp);
    const holder = current && current.podNetns !== pod.inode ? this.pods.get(current.podNetns ?? 0) : undefined;
    const held = holder && !holder.gone && holder.ports.find((p) => p.guestIp === port.guestIp);
    if (held && routedDevice(port.guestIp, routes) === held.hostVeth.ifname) {
      return { ip: port.guestIp, routedTo: held.hostVeth.ifname, claimedBy: 'pod address' };
    }
    if (port.guestMac === null) {
      // not known right now (nothing learned yet, or several MACs): keep what is there
      if ((!current || current.podNetns !== pod.inode) && !pod.waitingLogged) {
        pod.waitingLogged = true;
        this.log.info({ netns: pod.path, guestIp: port.guestIp, why: port.guestMacUnknown }, 'waiting for the guest MAC');
      }
      return null;
    }
    const redirect = this.mayRedirect(pod, port);
    let result: 'added' | 'updated' | 'unchanged';
    try {
      result = this.dp.setEndpoint({
        guestIp: port.guestIp,
        guestMac: port.guestMac,
        gatewayMac: port.hostVeth.mac,
        hostIfindex: port.hostVeth.ifindex,
        redirect,
        podNetns: pod.inode,
        bypass,
      });
    } catch (e) {
      if (!(e instanceof EndpointTableFullError)) throw e;
      // fixup stays attached: with no endpoint for the guest it passes every frame unchanged
      // (PASS_UNKNOWN); the endpoint is written when a check finds a slot (events, resync)
      if (!pod.uncovered.has(port.guestIp)) this.log.warn({ netns: pod.path, guestIp: port.guestIp, err: e.message }, 'VM pod uncovered: its endpoint cannot be written');
      pod.uncovered.set(port.guestIp, e.message);
      return null;
    }
    if (pod.uncovered.delete(port.guestIp)) this.log.info({ netns: pod.path, guestIp: port.guestIp }, 'VM pod covered again: its endpoint found a slot');
    if (result === 'unchanged') return null;
    pod.waitingLogged = false;
    let why: string;
    if (!current) why = `guest MAC known (from ${port.guestMacFrom})`;
    else if (current.podNetns !== pod.inode) why = `the node now routes the guest IP to this pod (was netns inode ${current.podNetns})`;
    else if (current.guestMac !== port.guestMac) why = `guest MAC changed from ${current.guestMac} (from ${port.guestMacFrom})`;
    else if (current.hostIfindex !== port.hostVeth.ifindex || current.gatewayMac !== port.hostVeth.mac) why = 'host veth changed';
    else if (JSON.stringify(current.bypass) !== JSON.stringify(bypass)) why = bypass ? 'bridge bypass on' : 'bridge bypass off';
    else why = reason;
    this.change(
      result === 'added' ? 'endpoint_add' : 'endpoint_update',
      { netns: pod.path, guestIp: port.guestIp, guestMac: port.guestMac, gatewayMac: port.hostVeth.mac, hostVeth: port.hostVeth.ifname, hostIfindex: port.hostVeth.ifindex, bypass: bypass !== null },
      result === 'added' ? 'added endpoint' : 'updated endpoint',
      why,
    );
    return null;
  }

  // ------------------------------------------------------------ garbage, redirect

  /**
   * Attachments and endpoints of namespaces that no longer exist, or that are
   * not VM pods (or not in the daemon's scope: a CLI's attachment elsewhere).
   * A filter is removed in its netns, found by inode, when that still exists.
   */
  private collectGarbage(): void {
    let elsewhere: Map<number, string> | null = null;
    for (const r of this.dp.attachments()) {
      const pod = this.pods.get(r.netnsInode);
      if (!isPodProgram(r.program) || (pod && pod.kind !== 'plain')) continue;
      elsewhere ??= pod ? null : netnsPaths(this.cfg.netnsDirs);
      this.dropRecord(r, pod?.path ?? elsewhere?.get(r.netnsInode) ?? null);
      this.change('detach', { program: r.program, netns: pod?.path, netnsInode: r.netnsInode, ifname: r.ifname, mode: r.mode }, 'removed attachment', pod ? 'its pod is not a VM pod' : 'its pod no longer exists');
    }
    for (const ep of this.dp.endpoints()) {
      const pod = ep.podNetns ? this.pods.get(ep.podNetns) : undefined;
      if (pod && pod.kind !== 'plain') continue; // a VM pod, or one whose check failed: kept
      this.dp.deleteEndpoint(ep.guestIp);
      this.change('endpoint_delete', { guestIp: ep.guestIp, netnsInode: ep.podNetns }, 'removed endpoint', pod ? 'its pod is not a VM pod' : 'its pod no longer exists');
    }
  }

  private conntrackWarned = false;

  private ensureRedirects(reason: string): void {
    const want = this.cfg.accelerate ? this.cfg.hostDevs : [];
    const conntrack = want.length > 0 && !this.conntrackWarned ? conntrackWarning() : null;
    if (conntrack) {
      this.conntrackWarned = true;
      this.log.warn({}, `accelerate: ${conntrack}`);
    }
    const records = this.dp.attachments().filter((r) => r.program === 'redirect');
    for (const r of records) {
      if (r.netnsInode === this.sources.selfInode && want.includes(r.ifname)) continue;
      this.dropRecord(r, null);
      this.change('detach', { program: 'redirect', ifname: r.ifname, mode: r.mode }, 'detached redirect', 'accelerate mode is not configured for this interface');
    }
    for (const ifname of want) {
      const target: HookTarget = { ifname, hook: 'ingress' };
      const record = records.find((r) => r.ifname === ifname && r.netnsInode === this.sources.selfInode);
      try {
        if (record) {
          const v = verifyRecord(this.n, record, target, this.tags.redirect);
          if (v.state === 'ok') continue;
          if (v.state === 'outdated') {
            swapProgram(this.n, record, target, this.dp.program('redirect'));
            this.change('upgrade', { ifname, from: v.tag, to: this.tags.redirect }, 'upgraded redirect', 'the attached program differs from this object');
            continue;
          }
          this.dropRecord(record, null);
          this.change('drop_stale', { ifname, pin: record.pin }, 'dropped a stale attachment record', v.why);
        }
        const { record: created } = this.dp.attach('redirect', target, { mode: this.cfg.mode, first: this.cfg.first });
        this.missingHostDevs.delete(ifname);
        this.change('attach', { program: 'redirect', ifname, mode: created.mode, first: this.cfg.first }, 'attached redirect', `accelerate mode (${reason})`);
      } catch (e) {
        if ((e as Error).name === 'NoSuchInterfaceError' || (e as { code?: string }).code === 'ENODEV') {
          if (!this.missingHostDevs.has(ifname)) this.log.warn({ ifname }, 'accelerate: no such host interface yet; it is attached when it appears');
          this.missingHostDevs.add(ifname);
        } else {
          this.metrics?.reconcileErrors.inc({ kind: 'redirect' });
          this.log.error({ ifname, err: (e as Error).message }, 'accelerate: attaching redirect failed');
        }
      }
    }
  }

  /**
   * Removes one attachment record. tcx: the link is detached through its pin,
   * wherever it is. clsact: the filter is removed when the record's netns is
   * still at `podPath`; otherwise only the record goes (the filter went, or
   * goes, with its interface).
   */
  private dropRecord(r: AttachmentRecord, podPath: string | null): void {
    this.recordsDuringResync = null;
    try {
      if (r.netnsInode === this.sources.selfInode) {
        this.dp.removeRecord(r, undefined);
      } else if (r.mode === 'tcx') {
        this.n.detach({ ifname: r.ifname, hook: r.hook, mode: 'tcx', pinPath: r.pin });
      } else if (podPath && inodeOf(podPath) === r.netnsInode) {
        this.dp.removeRecord(r, podPath);
      }
    } catch (e) {
      this.log.debug({ pin: r.pin, err: (e as Error).message }, 'detaching failed; removing the record');
    }
    fs.rmSync(r.pin, { force: true });
  }

  /**
   * The attachment records. A full resync looks at every pod, and reading the
   * records (a directory of one pin per attachment) for each would cost
   * O(pods²): while it runs, they are read once and again after each change.
   */
  private records(): AttachmentRecord[] {
    if (!this.fullRunning) return this.dp.attachments();
    return (this.recordsDuringResync ??= this.dp.attachments());
  }

  private change(action: string, fields: Record<string, unknown>, msg: string, reason: string): void {
    this.recordsDuringResync = null;
    this.metrics?.changes.inc({ action });
    this.log.info({ change: action, ...fields, reason }, msg);
  }

  // ------------------------------------------------------------ metrics

  endpointSamples(): EndpointSample[] {
    return this.dp.endpoints().map((ep) => {
      const pod = ep.podNetns ? this.pods.get(ep.podNetns) : undefined;
      const port = pod?.ports.find((p) => p.guestIp === ep.guestIp);
      return {
        guestIp: ep.guestIp,
        ifname: port?.uplink.ifname ?? '',
        hostIfname: port?.hostVeth.ifname ?? '',
        redirect: ep.redirect,
        ...ep.counters,
      };
    });
  }

  /** vm: covered; uncovered: an endpoint of it cannot be written; waiting: a guest MAC is not known yet, or a port waits for the node's route (standby). */
  podCounts(): { vm: number; waiting: number; uncovered: number; plain: number } {
    let vm = 0;
    let waiting = 0;
    let uncovered = 0;
    let plain = 0;
    for (const p of this.pods.values()) {
      if (p.kind === 'vm') {
        if (p.uncovered.size > 0) uncovered++;
        else if (p.ports.some((x) => x.guestMac === null || x.standby)) waiting++;
        else vm++;
      } else if (p.kind === 'plain') plain++;
    }
    return { vm, waiting, uncovered, plain };
  }
}

function inodeOf(file: string): number | null {
  try {
    return fs.statSync(file).ino;
  } catch {
    return null;
  }
}
