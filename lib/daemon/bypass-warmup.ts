/**
 * The bridge bypass runs on the pod's own instance of fixup and from_guest
 * (lib/dataplane/pod-instances.ts): one verifier run per program, about 5 ms
 * a pod on this project's machines. A daemon starting beside 1000 VM pods
 * would hold its event loop for seconds before the last pod is covered, so
 * a pod whose instance is not loaded is covered at once through its bridge
 * (the shared fixup) and queued here; its instance is loaded between other
 * work, one pod at a time, and the pod checked again, which then swaps its
 * fixup in place and adds from_guest. The loads wait for the first full
 * reconcile to have covered every pod (resume()): one per turn of the event
 * loop, they would otherwise stretch every check of that reconcile.
 */
import type { Logger } from './log.js';
import type { Pod } from './pod.js';

/** Instances loaded and not yet attached by their pod's check, at most. */
export const MAX_HELD = 32;
/** A loaded instance is kept this long for its pod's check. */
export const HOLD_MS = 10_000;

export interface BypassWarmupDeps {
  dp: { podInstanceLoaded(pod: number): boolean; preloadPodInstance(pod: number): () => void };
  log: Logger;
  /** Asks for a check of the pod (its instance is loaded). */
  recheck: (pod: Pod, reason: string) => void;
  stopping: () => boolean;
}

export class BypassWarmup {
  /** Pods waiting for their instance, in the order they asked. */
  private readonly waiting = new Map<number, Pod>();
  private readonly held = new Map<number, { release: () => void; timer: NodeJS.Timeout }>();
  /** Pods whose load failed here: their check loads (and reports) it itself. */
  private readonly failed = new Set<number>();
  private readonly onSettled: Array<() => void> = [];
  private scheduled = false;
  private paused = true;

  constructor(private readonly d: BypassWarmupDeps) {}

  /** The first full reconcile covered every pod: the loads may start. */
  resume(): void {
    this.paused = false;
    this.schedule();
  }

  /** Whether the pod's check should attach its instance now (loaded, or its load failed here). */
  ready(pod: Pod): boolean {
    return this.failed.has(pod.inode) || this.d.dp.podInstanceLoaded(pod.inode);
  }

  /** The pod wants the bypass and its instance is not loaded: loaded soon, then the pod is checked again. */
  want(pod: Pod): void {
    if (this.waiting.has(pod.inode) || this.held.has(pod.inode)) return;
    this.waiting.set(pod.inode, pod);
    this.schedule();
  }

  /** The pod's check attached its instance, or the pod went: the instance is no longer held for it. */
  done(pod: Pod): void {
    this.waiting.delete(pod.inode);
    this.failed.delete(pod.inode);
    const h = this.held.get(pod.inode);
    if (h) {
      clearTimeout(h.timer);
      h.release();
      this.held.delete(pod.inode);
      this.schedule();
    }
    this.notify();
  }

  /** Pods waiting or holding an instance. */
  get pending(): number {
    return this.waiting.size + this.held.size;
  }

  /** Resolves once no pod waits for its instance and every loaded one went to its pod's check (or timed out). */
  settled(): Promise<void> {
    if (this.pending === 0 || this.d.stopping()) return Promise.resolve();
    return new Promise((resolve) => this.onSettled.push(resolve));
  }

  close(): void {
    for (const h of this.held.values()) {
      clearTimeout(h.timer);
      h.release();
    }
    this.held.clear();
    this.waiting.clear();
    this.notify();
  }

  private notify(): void {
    if (this.pending > 0 && !this.d.stopping()) return;
    for (const resolve of this.onSettled.splice(0)) resolve();
  }

  // one load per turn of the event loop: events and checks run in between
  private schedule(): void {
    if (this.paused || this.scheduled || this.waiting.size === 0 || this.held.size >= MAX_HELD || this.d.stopping()) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.loadNext();
      this.schedule();
    });
  }

  private loadNext(): void {
    const next = this.waiting.entries().next();
    if (next.done) return;
    const [inode, pod] = next.value;
    this.waiting.delete(inode);
    if (pod.gone || this.d.stopping()) return this.notify();
    try {
      const release = this.d.dp.preloadPodInstance(inode);
      const timer = setTimeout(() => this.done(pod), HOLD_MS);
      timer.unref();
      this.held.set(inode, { release, timer });
    } catch (e) {
      this.failed.add(inode);
      this.d.log.warn({ netns: pod.path, error: (e as Error).message }, "could not load the pod's own programs for the bridge bypass ahead of its check: its check tries again");
      this.notify();
    }
    this.d.recheck(pod, "the pod's own programs for the bridge bypass are loaded");
  }
}
