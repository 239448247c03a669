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
  counts: { podsBuilt: number; podsAdded: number; podsDeleted: number; coveredAtEnd: number; pollMs: number };
  targets: Array<{ name: string; target: string; value: string; met: boolean | null }>;
  notes: string[];
}
