/**
 * When a pod is checked: events start a check (coalesced, rate-limited per
 * pod: credit.ts), a young pod or one whose guest has not shown its MAC is polled, a
 * failed check is retried with back-off. A check looks into the pod (one
 * netlink read; discovery when it has the VM layout) in a bounded number of
 * look slots, then hands what it saw to `apply`.
 */
import { performance } from 'node:perf_hooks';
import type { DaemonConfig } from './config.js';
import type { Logger } from './log.js';
import type { DaemonMetrics } from './metrics.js';
import { AMBIGUOUS_POLL_MS, stillThere, wantsMonitor, YOUNG_MS, type CheckRequest, type Pod } from './pod.js';
import { lookInto, type NodeView, type PodLook } from './probe.js';
import { Slots, type Release } from './slots.js';

/** A young pod is polled every FAST_POLL_MS for the first FAST_MS of it, then every SLOW_POLL_MS. */
const FAST_MS = 5_000;
const FAST_POLL_MS = 200;
const SLOW_POLL_MS = 1_000;
/** ... and every MONITORED_POLL_MS when a monitor reports its changes. */
const MONITORED_POLL_MS = 3_000;
/** A monitor may miss what happens before it has subscribed: polled fast this long after it started. */
const MONITOR_SETTLE_MS = 500;
/** Pods looked into at the same time. */
const CONCURRENCY = 8;
/** A failed check is retried after this, doubling each time (up to the resync interval). */
const FIRST_RETRY_MS = 100;

export interface PodChecksDeps {
  cfg: DaemonConfig;
  log: Logger;
  node: NodeView;
  metrics: () => DaemonMetrics | null;
  /** Applies what a check saw. */
  apply: (pod: Pod, look: PodLook, request: CheckRequest) => Promise<void>;
  /** The pod's netns went away: the sources are scanned again (after `delay` ms). */
  requestScan: (delay: number) => void;
  stopping: () => boolean;
}

export class PodChecks {
  /** Looking into pods: those events and polls ask for first, then a full resync's. */
  private readonly lookSlots = new Slots<Pod>(CONCURRENCY);

  constructor(private readonly d: PodChecksDeps) {}

  /**
   * A check of the pod soon: at once (the events of one netlink batch start
   * one check; those during a check, one more after it) while the pod has
   * credit, else when it has again (`urgent`: at once anyway). `verify`:
   * the check also verifies the pod's attachments against the kernel.
   */
  kick(pod: Pod, reason: string, urgent = false, verify = false): void {
    if (pod.gone || this.d.stopping()) return;
    pod.kickVerify ||= verify;
    const delay = urgent ? 0 : pod.credit.waitMs();
    const at = Date.now() + delay;
    if (pod.kick) {
      if (pod.kickAt <= at) return;
      pod.kick.cancel();
    }
    pod.kickAt = at;
    const fire = () => {
      pod.kick = null;
      const verifying = pod.kickVerify;
      pod.kickVerify = false;
      void this.checkPod(pod, reason, verifying);
    };
    // "at once" is setImmediate: after the I/O callbacks of this loop turn (every event
    // batch read in it), not setTimeout(0), which Node rounds up to 1 ms and runs a turn later
    if (delay === 0) {
      const h = setImmediate(fire);
      pod.kick = { cancel: () => clearImmediate(h) };
    } else {
      const h = setTimeout(fire, delay);
      pod.kick = { cancel: () => clearTimeout(h) };
    }
  }

  /**
   * Checks a pod; resolves when done. A request made while the pod waits for
   * a slot joins that check (it has not read anything yet); one made while a
   * check runs gets a check right after it. A full resync's checks
   * (`background`) wait behind those of events and polls, so that a new pod
   * is not queued behind every pod of the node.
   */
  checkPod(pod: Pod, reason: string, verify: boolean, background = false): Promise<void> {
    if (pod.gone || this.d.stopping()) return Promise.resolve();
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
      while (next && !pod.gone && !this.d.stopping()) {
        pod.again = null;
        pod.queued = next;
        const looking = await this.lookSlots.acquire(pod, next.background);
        pod.queued = null;
        try {
          if (pod.gone || this.d.stopping()) break;
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
    const { reason } = request;
    const { log, stopping } = this.d;
    if (pod.timer) clearTimeout(pod.timer);
    pod.timer = null;
    pod.lastCheckAt = Date.now();
    pod.credit.take(pod.lastCheckAt);
    const t0 = performance.now();
    this.d.metrics()?.reconciles.inc({ kind: 'pod' });
    try {
      let look: PodLook;
      try {
        look = await lookInto(pod.path, this.d.node);
      } catch (e) {
        looking();
        if (pod.gone || stopping()) return;
        if (!stillThere(pod)) {
          this.d.requestScan(0);
          return;
        }
        throw e;
      }
      looking();
      if (pod.gone || stopping()) return;
      log.trace({ netns: pod.path, reason, shape: look.shape, ports: look.ports.length, ms: Math.round(performance.now() - t0) }, 'checked pod');
      await this.d.apply(pod, look, request);
      if (pod.gone || stopping()) return;
      pod.failures = 0;
      this.scheduleNext(pod);
    } catch (e) {
      if (pod.gone || stopping()) return;
      if (!stillThere(pod)) {
        this.d.requestScan(0);
        return;
      }
      pod.failures++;
      this.d.metrics()?.reconcileErrors.inc({ kind: 'pod' });
      // a pod being wired up fails transiently: look again soon, then back off
      const retry = Math.min(FIRST_RETRY_MS * 2 ** Math.min(pod.failures - 1, 9), this.d.cfg.resyncIntervalMs);
      log.warn({ netns: pod.path, err: (e as Error).message, retryMs: retry }, 'pod check failed');
      pod.timer = setTimeout(() => void this.checkPod(pod, 'retry after a failure', true), retry);
    } finally {
      this.d.metrics()?.reconcileDuration.observe({ kind: 'pod' }, (performance.now() - t0) / 1000);
    }
  }

  private scheduleNext(pod: Pod): void {
    if (pod.gone || this.d.stopping()) return;
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
    if (!wantsMonitor(pod) && pod.monitor) {
      pod.monitor.stop();
      pod.monitor = null;
    }
  }
}
