/**
 * Netlink events of one network namespace: links, neighbours and bridge FDB
 * entries, from a netlink subscription the addon's watcher thread reads (one
 * socket per netns, no process). The subscription holds the netns until
 * stop(); a killed daemon's sockets close with it, so nothing outlives it.
 *
 * Events are triggers, not state: the reconciler re-reads what it needs.
 */
import { native, type NetlinkBatch, type NetlinkEvent } from '../native.js';

export type { NetlinkEvent } from '../native.js';

export interface MonitorOptions {
  /** netns path; absent: this process's netns (the node). */
  netns?: string;
  onEvent(event: NetlinkEvent): void;
  /** The kernel dropped events (a burst overflowed the socket): what they said must be read again. */
  onEventsLost?(): void;
  /** The monitor ended without stop() (it could not subscribe, e.g. its netns is gone, or its socket failed). */
  onExit(code: number | null, stderr: string): void;
}

export class Monitor {
  private id: number | null = null;
  private stopped = false;

  constructor(private readonly options: MonitorOptions) {
    try {
      this.id = native().watchNetlink(options.netns, (batch) => this.onBatch(batch));
    } catch (e) {
      const why = (e as Error).message;
      queueMicrotask(() => {
        if (!this.stopped) options.onExit(null, why);
      });
    }
  }

  private onBatch(batch: NetlinkBatch): void {
    if (this.stopped) return;
    for (const event of batch.events) {
      this.options.onEvent(event);
      if (this.stopped) return;
    }
    if (batch.lost) this.options.onEventsLost?.();
    if (batch.ended !== undefined) {
      this.id = null;
      this.stopped = true;
      this.options.onExit(null, batch.ended);
    }
  }

  get netns(): string | undefined {
    return this.options.netns;
  }

  /** Ends the subscription (and with it its hold on the netns) before returning. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.id !== null) native().unwatchNetlink(this.id);
    this.id = null;
  }
}
