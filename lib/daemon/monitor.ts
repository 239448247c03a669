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

  /**
   * Settles once the subscription exists (events from then on are delivered:
   * it is made off the JS thread, so what happens before is not seen), or has
   * failed (onExit was called). Never rejects.
   */
  readonly ready: Promise<void>;

  constructor(private readonly options: MonitorOptions) {
    // subscribing happens off the JS thread; stop() before it is done unsubscribes once it is
    this.ready = native()
      .watchNetlink(options.netns, (batch) => this.onBatch(batch))
      .then(
        (id) => {
          if (this.stopped) native().unwatchNetlink(id);
          else this.id = id;
        },
        (e: unknown) => {
          if (!this.stopped) {
            this.stopped = true;
            options.onExit(null, (e as Error).message);
          }
        },
      );
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

  /** Ends the subscription (and with it its hold on the netns) before returning; one still being made ends once it is. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.id !== null) native().unwatchNetlink(this.id);
    this.id = null;
  }
}
