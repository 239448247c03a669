/** What the control-plane benchmark measures (control-plane.ts), as the report and the JSON carry it. */
export interface ColdStart {
  /** VM pods on the node when the daemon was spawned. */
  pods: number;
  /**
   * The daemon's --mode: 'auto' (what it runs by default: clsact filters in VM pods) or
   * 'tcx', a diagnostic run (full runs only, where the kernel has tcx): a tcx attach holds the
   * rtnl lock across an RCU grace period, so attaches queue one behind the other.
   */
  mode: 'auto' | 'tcx';
  /** Seconds from spawn until every pod was covered (polled from the pins every POLL_MS). */
  coveredS: number | null;
  /** Seconds from spawn until /readyz answered 200 (polled from inside the node netns). */
  readyzS: number | null;
  /** Seconds from spawn to the daemon's own "ready" log line, and to its last attach/endpoint change log line. */
  readyLogS: number | null;
  lastChangeLogS: number | null;
  /** Pods covered at the end of the wait. */
  covered: number;
  /** CPU seconds the daemon and its children used from spawn to covered. */
  cpuS: number;
  /** Daemon RSS right after covered. */
  rssMb: number;
  /** Child processes once covered (none expected: netlink is watched in-process). */
  children: number;
  loadavg: number[];
}

export interface Latencies {
  /** ms, in the order measured. */
  samples: number[];
  p50: number;
  p99: number;
  max: number;
}

export interface CpuWindow {
  windowS: number;
  /** CPU of the daemon and its children, in % of one core, over the window. */
  pctOfCore: number;
  /** Per-second % of a core (1 s samples): the median shows the floor, the max the resync. */
  perSecondMedianPct: number;
  perSecondMaxPct: number;
  /** Of it, the share of child processes. */
  childrenPct: number;
  /** Mean of the seconds that are not bursts (a burst: more than 5 points above the median second). */
  floorPct: number;
  /** CPU seconds of the bursts above the median (idle: the periodic full resync). */
  burstCpuS: number;
  loadavg: number[];
}

/** One /metrics scrape's cost to the daemon (scrape.ts). */
export interface ScrapeCost {
  scrapes: number;
  /** Scrapes before the measured ones, not counted (the daemon's code warm). */
  warmup: number;
  /** Between scrapes: past the daemon's endpoint cache, so each reads the endpoint table. */
  spacingMs: number;
  /** vmpeer_endpoints in the last scrape, and its size. */
  endpoints: number;
  bytes: number;
  /** Daemon CPU (utime + stime) per scrape, the idle floor taken off; max of one scrape (10 ms ticks). */
  cpuMsPerScrape: number;
  cpuMsMax: number;
  /** The client's wall time per scrape. */
  wallMsP50: number;
  wallMsMax: number;
}

/** What the churn left (churn.ts). */
export interface Leaks {
  cycles: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  /** After may exceed before by this and still count as no leak. */
  rssBoundMb: number;
  /** Of the churned pods: netns files, attachment records, endpoints still there. */
  netnsLeft: number;
  recordsLeft: number;
  endpointsLeft: number;
  /** Pods still there, fixup records, their endpoints, and every endpoint in the table. */
  pods: number;
  records: number;
  endpoints: number;
  endpointsTotal: number;
  leakFree: boolean;
}

/** From the guest's first frame to its endpoint in the pinned map (first-frame.ts). */
export interface FirstFrame extends Latencies {
  /** The same, to the daemon's "added endpoint" log line. */
  logP50: number;
  logP99: number;
  basePods: number;
}

export interface ControlPlaneResult {
  quick: boolean;
  date: string;
  machine: { cpus: number; kernel: string; node: string; loadavgStart: number[]; loadavgEnd: number[] };
  /** Daemon: its Node.js flags (the image's), resync interval. */
  daemon: { nodeFlags: string[]; resyncIntervalS: number; logLevel: string; commit: string | null };
  build: { pods: number; seconds: number };
  coldStart: ColdStart[];
  /** spanS: first to last addition (more than a resync interval in full runs). */
  newPod: Latencies & { basePods: number; sinceAnnouncedP50: number; spanS: number };
  rss: {
    idleMb: number;
    churnMaxMb: number;
    afterMb: number;
    /** The children when idle: count, summed RSS and PSS. */
    children: { count: number; rssMb: number; pssMb: number };
  };
  cpu: { idle: CpuWindow; churn: CpuWindow & { cycles: number } };
  churnCover: Latencies;
  scrape: ScrapeCost;
  leaks: Leaks;
  firstFrame: FirstFrame;
  counts: { podsBuilt: number; podsAdded: number; podsDeleted: number; coveredAtEnd: number; pollMs: number };
  targets: Array<{ name: string; target: string; value: string; met: boolean | null }>;
  notes: string[];
}
