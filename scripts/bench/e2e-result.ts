/** What the end-to-end benchmark takes and gives (e2e.ts). */
import { type CpuShare } from './cpu.js';
import { type EndpointCounts, type Evidence, type PathId, type PathSpec } from './paths.js';
import { type Profile } from './profile.js';
import { type RrResult, type ThroughputResult } from './tools.js';

export interface E2eOptions {
  rounds: number;
  /** sockperf -t (it spends ~0.45 s of it on its own warm-up). */
  rrSeconds: number;
  /** iperf3 -t and -O. */
  tputSeconds: number;
  omitSeconds: number;
  paths: PathId[];
  /** Paths profiled with perf after the rounds (skipped when perf does not work). */
  profilePaths: PathId[];
  profileMetrics: Array<'throughput' | 'rr'>;
  profileSeconds: number;
  /**
   * After each round, bulk runs of these paths as an unpinned client and
   * servers at the default priority would see them (the prototype run's way):
   * what scheduling alone does to a single run.
   */
  unpinnedPaths: PathId[];
  unpinnedSeconds: number;
  /** The CPU every benchmark process is pinned to. */
  cpu: number;
  nice: number;
  labPrefix: string;
  log: (line: string) => void;
}

export interface Measurement {
  path: PathId;
  round: number;
  /** Position in the round's shuffled order. */
  slot: number;
  rr: RrResult;
  tput: ThroughputResult;
  cpuRr: CpuShare;
  cpuTput: CpuShare;
  /** Busy share of the other CPUs during each measurement: the machine's other work. */
  otherBusyRr: number;
  otherBusyTput: number;
  /** Counter deltas over both measurements of the path in this round. */
  evidence: Evidence;
}

export interface UnpinnedRun {
  path: PathId;
  round: number;
  gbps: number;
  /** The counters moved as the path requires. */
  verified: boolean;
}

export interface PathProfile {
  path: PathId;
  metric: 'throughput' | 'rr';
  /** Rate during the profile: bits/s or round trips/s. */
  rate: number;
  profile: Profile;
}

/** The counters the benchmark reads from vmpeer's pinned maps, and `vmpeer status --json` at the same moment, on one path. */
export interface StatusCheck {
  path: PathId;
  pinned: EndpointCounts;
  status: EndpointCounts | null;
  equal: boolean;
}

export interface E2eResult {
  paths: PathSpec[];
  skipped: Array<{ path: PathId; why: string }>;
  orders: PathId[][];
  measurements: Measurement[];
  unpinned: UnpinnedRun[];
  statusCheck: StatusCheck | null;
  profiles: PathProfile[];
  profileSkipped: string | null;
  lab: { name: string; emulatorMode: string; fixupMode: string | null; vmGuest: string; describe: string };
  prototypes: { noPktTypeDiffers: boolean; errors: string[] };
}
