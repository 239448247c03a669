/**
 * Pods by something their last check saw (a host veth's name, a veth peer's
 * ifindex, a guest IP): a node event about one finds the pods it concerns
 * without a scan of every pod. On a node of 1000 pods the node's link, route
 * and neighbour events come many a second; a scan each kept the JS thread
 * (and a new guest's first frame) waiting.
 */
import type { Pod } from './pod.js';

const NONE: ReadonlySet<Pod> = new Set();

export class PodIndex<K> {
  private readonly pods = new Map<K, Set<Pod>>();
  private readonly keysOf = new Map<Pod, readonly K[]>();

  /** What a check of `pod` saw; a pod that is gone is not indexed (its check finished late). */
  set(pod: Pod, keys: Iterable<K>): void {
    this.drop(pod);
    if (pod.gone) return;
    const unique = [...new Set(keys)];
    if (unique.length === 0) return;
    this.keysOf.set(pod, unique);
    for (const k of unique) {
      let set = this.pods.get(k);
      if (!set) this.pods.set(k, (set = new Set()));
      set.add(pod);
    }
  }

  get(key: K): ReadonlySet<Pod> {
    return this.pods.get(key) ?? NONE;
  }

  drop(pod: Pod): void {
    for (const k of this.keysOf.get(pod) ?? []) {
      const set = this.pods.get(k);
      set?.delete(pod);
      if (set?.size === 0) this.pods.delete(k);
    }
    this.keysOf.delete(pod);
  }
}
