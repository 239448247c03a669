/**
 * A token bucket for one pod's checks. Each check takes a token; tokens come
 * back at one per `everyMs`, up to `burst`. A pod that was quiet is checked at
 * once on its next event (a guest's first frame must not wait out a rate
 * limit), while a pod whose events never stop is checked at most once per
 * `everyMs` on average, whatever its events say: what a tenant's events cost
 * the node stays bounded.
 */
export class Credit {
  private tokens: number;
  private at: number;

  constructor(
    private readonly burst: number,
    private readonly everyMs: number,
    now = Date.now(),
  ) {
    this.tokens = burst;
    this.at = now;
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst, this.tokens + Math.max(0, now - this.at) / this.everyMs);
    this.at = now;
  }

  /** How long until a check may start: 0 when a token is there. */
  waitMs(now = Date.now()): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil((1 - this.tokens) * this.everyMs);
  }

  /** A check starts (polls and resyncs too: they are checks the pod's events need not repeat). */
  take(now = Date.now()): void {
    this.refill(now);
    this.tokens = Math.max(0, this.tokens - 1);
  }
}
