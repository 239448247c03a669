/**
 * A fixed number of slots for work that must not all run at once, handed out
 * in order: first to those who asked in the front queue (events, polls), then
 * to the background queue (a full resync). A waiter can move to the front.
 */
export type Release = () => void;

interface Waiter<K> {
  key: K;
  resolve: (release: Release) => void;
}

export class Slots<K> {
  private readonly front: Waiter<K>[] = [];
  private readonly background: Waiter<K>[] = [];

  constructor(private free: number) {}

  /** Resolves with the slot's release function (calling it again does nothing). */
  acquire(key: K, background: boolean): Promise<Release> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve) => (background ? this.background : this.front).push({ key, resolve }));
  }

  /** A background waiter for `key` moves to the end of the front queue. */
  promote(key: K): void {
    const i = this.background.findIndex((w) => w.key === key);
    if (i >= 0) this.front.push(...this.background.splice(i, 1));
  }

  private releaser(): Release {
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const next = this.front.shift() ?? this.background.shift();
      if (next) next.resolve(this.releaser());
      else this.free++;
    };
  }
}
