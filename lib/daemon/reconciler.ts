/**
 * Keeps the dataplane equal to what is on the node.
 *
 * Every pod netns the sources report is a Pod here, keyed by its inode
 * (tracking.ts). A pod is checked (checks.ts: one netlink read of it;
 * discovery when it has the VM layout) when something says it may have
 * changed:
 *   - its netns file appeared or vanished (fs.watch on the netns dirs),
 *   - a link or FDB event in the pod (a monitor per VM pod, and per new pod
 *     while it is young: it may still become a VM pod; watchers.ts),
 *   - a link or neighbour event in the node about its host veth,
 *   - a poll, only while it is young or its guest has not shown its MAC,
 *   - the periodic full resync, which removes what belongs to nobody
 *     (garbage.ts) and verifies every attachment: each looks into the fifth
 *     of the pods it looked into longest ago (LOOK_ROUNDS), and checks the
 *     other VM pods' tcx links from their pins alone, looking into a pod only
 *     when one is not as last verified (attachments.ts stillAsVerified()).
 * Idle, the daemon runs nothing but the monitors and the resync timer.
 *
 * Applying a check (apply.ts): fixup attached at each VM uplink (adopted when
 * already there, swapped when the object changed; attachments.ts), one
 * endpoint per guest IP with the MAC the guest uses (endpoints.ts);
 * attachments and endpoints of ports and pods that are gone removed. Each
 * change is one log line with its reason (changes.ts).
 *
 * This class wires those parts together and owns the daemon's lifecycle and
 * the full resync; none of them imports it.
 */
import { performance } from 'node:perf_hooks';
import { readNetnsId, type Dataplane, type NetnsId, type ProgramName } from '../dataplane/dataplane.js';
import type { Native } from '../native.js';
import { programTag } from '../bpf/fdinfo.js';
import { Accelerate } from './accelerate.js';
import { PodSync } from './apply.js';
import { AttachmentSync } from './attachments.js';
import { Changes } from './changes.js';
import { PodChecks } from './checks.js';
import { Claims } from './claims.js';
import type { DaemonConfig } from './config.js';
import { EndpointSync } from './endpoints.js';
import { collectGarbage, removeEverything } from './garbage.js';
import type { Logger } from './log.js';
import type { DaemonMetrics, EndpointReading } from './metrics.js';
import type { Pod } from './pod.js';
import { NodeView } from './probe.js';
import { endpointReading, podCounts } from './samples.js';
import { Slots } from './slots.js';
import type { NetnsSources } from './sources.js';
import { PodTracker } from './tracking.js';
import { Watchers } from './watchers.js';
import { BypassWarmup } from './bypass-warmup.js';

/**
 * Attachments under way at the same time, each on its own native thread. A
 * tcx attach holds the rtnl lock across an RCU grace period (~15 ms), so the
 * kernel runs them mostly one after another; with many queued, some share a
 * grace period (~13 ms each). Meanwhile the look slots go on to other pods.
 */
const ATTACH_CONCURRENCY = 32;

/**
 * A periodic resync looks into 1/LOOK_ROUNDS of the pods (those looked into
 * longest ago), so every pod is looked into at least once per LOOK_ROUNDS
 * resync intervals (10 min by default). Looking into a pod costs about 2 ms
 * of CPU, a pin check about 20 µs: at 1000 VM pods, every pod every 2 min
 * was 2.4 % of a core idle. Events (monitors) cover each pod meanwhile.
 */
export const LOOK_ROUNDS = 5;
export const PERIODIC_RESYNC = 'periodic resync';

export interface ReconcilerDeps {
  config: DaemonConfig;
  dp: Dataplane;
  native: Native;
  log: Logger;
  sources: NetnsSources;
}

export class Reconciler {
  private readonly tags: Record<ProgramName, string>;
  private readonly cfg: DaemonConfig;
  private readonly dp: Dataplane;
  private readonly log: Logger;
  private readonly sources: NetnsSources;
  private metrics: DaemonMetrics | null = null;
  private readyFlag = false;
  private stopping = false;
  private resyncTimer: NodeJS.Timeout | null = null;
  private procTimer: NodeJS.Timeout | null = null;
  private unwatch: (() => void) | null = null;
  private fullRunning: Promise<void> | null = null;
  /** The node's netns (this process's), read at start(). */
  private selfNetns: NetnsId | null = null;
  private readonly n: Native;
  /** Guest IPs refused to pods (ownership follows the node's routes). */
  private readonly claims: Claims;
  private readonly tracker: PodTracker;
  private readonly changes: Changes;
  private readonly accelerate: Accelerate;
  private readonly attach: AttachmentSync;
  private readonly podSync: PodSync;
  private readonly warmup: BypassWarmup;
  private readonly checks: PodChecks;
  private readonly watchers: Watchers;
  private readonly node: NodeView;

  constructor(deps: ReconcilerDeps) {
    const { config: cfg, dp, native: n, log, sources } = deps;
    this.cfg = cfg;
    this.n = n;
    this.dp = dp;
    this.log = log;
    this.sources = sources;
    this.claims = new Claims(log, () => this.metrics?.conflicts.inc());
    this.tags = { fixup: programTag(dp.program('fixup')), redirect: programTag(dp.program('redirect')), from_guest: programTag(dp.program('from_guest')) };
    const tags = this.tags;
    const node = new NodeView();
    this.node = node;
    const stopping = () => this.stopping;
    const metrics = () => this.metrics;
    const selfInode = sources.selfInode;
    this.changes = new Changes({ dp, native: n, log, selfInode, metrics });
    const changes = this.changes;
    this.tracker = new PodTracker(
      sources,
      dp,
      log,
      {
        added: (pod) => {
          this.watchers.startMonitor(pod);
          this.checks.kick(pod, 'new pod netns');
        },
        moved: (pod) => {
          if (pod.monitor && pod.monitor.netns !== pod.path) this.watchers.restartMonitor(pod);
          this.checks.kick(pod, 'its netns has a new path');
        },
        removed: (pod, reason) => {
          this.claims.forget(pod.inode);
          this.accelerate.forgetPod(pod);
          this.podSync.forget(pod, reason);
          this.warmup.done(pod);
        },
      },
      stopping,
    );
    const pods = this.tracker.pods;
    const selfNetns = () => this.selfNetns ?? { inode: selfInode, cookie: null };
    this.accelerate = new Accelerate({ cfg, dp, native: n, log, changes, tags, selfInode, selfNetns, metrics });
    this.attach = new AttachmentSync({ cfg, dp, native: n, log, changes, tags, attachSlots: new Slots<Pod>(ATTACH_CONCURRENCY), stopping });
    const endpoints = new EndpointSync({ dp, log, changes, podOf: (inode) => pods.get(inode), mayRedirect: (pod, port) => this.accelerate.mayRedirect(pod, port) });
    this.warmup = new BypassWarmup({ dp, log, recheck: (pod, reason) => this.checks.kick(pod, reason, true), stopping });
    this.podSync = new PodSync({
      cfg,
      native: n,
      log,
      node,
      changes,
      attach: this.attach,
      endpoints,
      claims: this.claims,
      warmup: this.warmup,
      ownerOf: (dev, ip) => this.tracker.ownerOf(dev, ip),
      setLinks: (pod, links) => this.tracker.setLinks(pod, links),
      startMonitor: (pod) => this.watchers.startMonitor(pod),
      stopping,
    });
    this.checks = new PodChecks({
      cfg,
      log,
      node,
      metrics,
      apply: (pod, look, request) => this.podSync.apply(pod, look, request),
      requestScan: (delay) => this.tracker.requestScan(delay),
      stopping,
    });
    this.watchers = new Watchers({
      cfg,
      log,
      node,
      claims: this.claims,
      pods,
      index: this.tracker,
      kick: (pod, reason, urgent, verify) => this.checks.kick(pod, reason, urgent, verify),
      requestScan: () => this.tracker.requestScan(),
      fullResync: (reason) => void this.fullResync(reason),
      ensureRedirects: (reason) => this.accelerate.ensureRedirects(reason),
      stopping,
    });
  }

  private get pods(): ReadonlyMap<number, Pod> {
    return this.tracker.pods;
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

  // ------------------------------------------------------------ lifecycle

  /** Starts watching, then runs the first full reconcile (after which the daemon is ready). */
  async start(): Promise<void> {
    this.selfNetns = await readNetnsId(this.n);
    await this.watchers.startNodeMonitor(); // subscribed before the first resync reads the node
    this.unwatch = this.sources.watch(() => this.tracker.requestScan());
    if (this.cfg.proc) this.procTimer = setInterval(() => this.tracker.requestScan(), this.cfg.procIntervalMs);
    await this.fullResync('start');
    this.scheduleResync();
  }

  private scheduleResync(): void {
    if (this.stopping) return;
    this.resyncTimer = setTimeout(() => {
      void this.fullResync(PERIODIC_RESYNC).finally(() => this.scheduleResync());
    }, this.cfg.resyncIntervalMs);
  }

  /** Stops every watcher and monitor; with `cleanup`, removes all of vmpeer's state, else leaves the dataplane as it is. */
  async stop(cleanup: boolean): Promise<void> {
    this.stopping = true;
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.tracker.stop();
    if (this.procTimer) clearInterval(this.procTimer);
    this.unwatch?.();
    this.watchers.stopNodeMonitor();
    for (const pod of this.pods.values()) {
      pod.monitor?.stop();
      if (pod.timer) clearTimeout(pod.timer);
      pod.kick?.cancel();
    }
    await Promise.race([
      Promise.allSettled([this.fullRunning, ...[...this.pods.values()].map((p) => p.running)]),
      // unref: once the runs settle, this timer must not keep the process (SIGTERM) alive 5 s
      new Promise((resolve) => setTimeout(resolve, 5000).unref()),
    ]);
    this.warmup.close();
    if (!cleanup) {
      this.dp.close();
      return;
    }
    removeEverything(this.dp, this.pods, this.changes);
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
        this.changes.invalidate(); // the records read afresh: a resync believes no earlier reading
        const repaired = this.checkPins();
        this.node.invalidateAll();
        this.tracker.syncSources();
        const { look, fromPins } = this.whatToLookInto(reason === PERIODIC_RESYNC && !repaired);
        const now = Date.now();
        await Promise.all(
          look.map(({ pod, why }) => {
            pod.lookedAt = now;
            return this.checks.checkPod(pod, why ?? reason, true, true);
          }),
        );
        if (this.stopping) return;
        collectGarbage(this.dp, this.pods, this.cfg.netnsDirs, this.changes);
        this.accelerate.ensureRedirects(reason);
        if (!this.readyFlag) {
          // ready once the pods that want the bridge bypass have it too (they were covered through their bridge meanwhile)
          this.warmup.resume();
          await this.warmup.settled();
          if (this.stopping) return;
          this.readyFlag = true;
          this.metrics?.ready.set(1);
          const vms = [...this.pods.values()].filter((p) => p.kind === 'vm');
          this.log.info(
            { pods: this.pods.size, vmPods: vms.length, adopted: this.attach.adopted, endpoints: this.dp.endpoints().length, ms: Math.round(performance.now() - t0) },
            'ready: first full reconcile done',
          );
        }
        this.log.debug({ reason, pods: this.pods.size, lookedInto: look.length, fromPins, ms: Math.round(performance.now() - t0) }, 'full resync done');
      } catch (e) {
        this.metrics?.reconcileErrors.inc({ kind: 'full' });
        this.log.error({ err: e, reason }, 'full reconcile failed');
      } finally {
        this.metrics?.reconcileDuration.observe({ kind: 'full' }, (performance.now() - t0) / 1000);
        this.fullRunning = null;
      }
    })();
    return this.fullRunning;
  }

  /**
   * The pods a full resync looks into: all of them, or (`slice`: a periodic
   * resync) the 1/LOOK_ROUNDS of them looked into longest ago, and any other
   * VM pod whose attachments are not as last verified (from their pins) or
   * that is not settled (no monitor, a guest MAC or an endpoint missing, a
   * failed check). `fromPins`: how many were checked from their pins alone.
   */
  private whatToLookInto(slice: boolean): { look: Array<{ pod: Pod; why?: string }>; fromPins: number } {
    const pods = [...this.pods.values()];
    if (!slice) return { look: pods.map((pod) => ({ pod })), fromPins: 0 };
    const oldest = [...pods].sort((a, b) => a.lookedAt - b.lookedAt).slice(0, Math.ceil(pods.length / LOOK_ROUNDS));
    const look: Array<{ pod: Pod; why?: string }> = oldest.map((pod) => ({ pod }));
    const chosen = new Set(oldest);
    let fromPins = 0;
    for (const pod of pods) {
      if (chosen.has(pod) || pod.kind !== 'vm') continue;
      const settled = pod.monitor !== null && pod.failures === 0 && pod.uncovered.size === 0 && pod.ports.every((p) => p.guestMac !== null);
      if (settled && this.attach.stillAsVerified(pod)) fromPins++;
      else look.push({ pod, why: `${PERIODIC_RESYNC}: ${settled ? 'an attachment is not as last verified' : 'not settled'}` });
    }
    return { look, fromPins };
  }

  /**
   * vmpeer's pins are the state the next process finds. When some vanished
   * (removed by hand, or by an older vmpeer that removed state recursively),
   * the daemon is not ready until this resync has rebuilt them: the maps are
   * pinned again from this process's fds, and the attachments are verified
   * pod by pod (filters without a record adopted, links attached again).
   */
  private checkPins(): boolean {
    const repaired = this.dp.repairPins();
    if (repaired.length === 0) return false;
    this.readyFlag = false;
    this.metrics?.ready.set(0);
    this.changes.invalidate();
    for (const pod of this.pods.values()) pod.verified.clear();
    this.log.error({ root: this.cfg.bpffsRoot, missing: repaired }, "not ready: vmpeer's pinned state vanished; rebuilding it from the kernel");
    return true;
  }

  // ------------------------------------------------------------ metrics

  endpointReading(): EndpointReading {
    return endpointReading(this.dp, this.pods);
  }

  /** vmpeer's attachments by program and mode, from the records as this process knows them (changes.ts): no directory listing per scrape. */
  attachmentCounts(): Array<{ program: ProgramName; mode: string; count: number }> {
    const counts = new Map<string, { program: ProgramName; mode: string; count: number }>();
    for (const r of this.changes.records()) {
      const key = `${r.program}/${r.mode}`;
      const c = counts.get(key);
      if (c) c.count++;
      else counts.set(key, { program: r.program, mode: r.mode, count: 1 });
    }
    return [...counts.values()];
  }

  podCounts(): { vm: number; waiting: number; uncovered: number; plain: number } {
    return podCounts(this.pods.values());
  }
}
