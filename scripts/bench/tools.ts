/**
 * The traffic tools of the end-to-end benchmark and what their output says:
 * sockperf ping-pong (request/response rate and round-trip latency) and
 * iperf3 (bulk TCP throughput). Pure functions: the parsers are unit-tested
 * on captured output (test/bench/tools.test.ts).
 */

export const SOCKPERF_PORT = 11111;
export const IPERF3_PORT = 5201;
/** sockperf ping-pong message size (bytes): a small request and its echo. */
export const RR_MESSAGE_BYTES = 64;

export interface RrResult {
  /** Round trips per second over sockperf's valid window (warm-up excluded). */
  rate: number;
  /** Round-trip time percentiles, µs. */
  p50Us: number;
  p99Us: number;
  avgUs: number;
  roundTrips: number;
  seconds: number;
  /** Round trips per second over the whole test (sockperf's "[Total Run]", warm-up included): the rate CPU time is divided by. */
  totalRate: number;
}

export interface ThroughputResult {
  /** Received bits per second (iperf3's receiver side), omit interval excluded. */
  bitsPerSecond: number;
  bytes: number;
  seconds: number;
  retransmits: number;
  /** iperf3's own CPU accounting, % (host = client, remote = server). */
  cpuClientPct: number;
  cpuServerPct: number;
}

/** sockperf server argv (runs in the destination netns). */
export function sockperfServerArgs(port = SOCKPERF_PORT): string[] {
  return ['sockperf', 'server', '--tcp', '-p', String(port)];
}

/** sockperf ping-pong client argv; sockperf spends ~0.4 s of `seconds` on its own warm-up. */
export function sockperfClientArgs(ip: string, seconds: number, port = SOCKPERF_PORT): string[] {
  return ['sockperf', 'ping-pong', '--tcp', '-i', ip, '-p', String(port), '-t', String(seconds), '-m', String(RR_MESSAGE_BYTES), '--full-rtt'];
}

export function iperf3ServerArgs(port = IPERF3_PORT): string[] {
  return ['iperf3', '--server', '-p', String(port)];
}

export function iperf3ClientArgs(ip: string, seconds: number, omitSeconds: number, port = IPERF3_PORT): string[] {
  return ['iperf3', '-c', ip, '-p', String(port), '-t', String(seconds), '-O', String(omitSeconds), '--json'];
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

export class ToolOutputError extends Error {
  constructor(tool: string, why: string, output: string) {
    super(`${tool}: ${why}\n${output.slice(0, 2000)}`);
    this.name = 'ToolOutputError';
  }
}

/** Parses `sockperf ping-pong --full-rtt` output. */
export function parseSockperf(output: string): RrResult {
  const text = output.replace(ANSI, '');
  const valid = /\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)/.exec(text);
  if (!valid) throw new ToolOutputError('sockperf', 'no "[Valid Duration]" line', text);
  const pct = (p: string): number => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')} =\\s+([\\d.]+)`).exec(text);
    if (!m) throw new ToolOutputError('sockperf', `no percentile ${p}`, text);
    return Number(m[1]);
  };
  const avg = /avg-(?:rtt|latency)=([\d.]+)/.exec(text);
  const total = /\[Total Run\] RunTime=([\d.]+) sec;.*?ReceivedMessages=(\d+)/.exec(text);
  const seconds = Number(valid[1]);
  const roundTrips = Number(valid[3]);
  if (!(seconds > 0) || !(roundTrips > 0)) throw new ToolOutputError('sockperf', 'no round trips in the valid window', text);
  return {
    rate: roundTrips / seconds,
    p50Us: pct('50.000'),
    p99Us: pct('99.000'),
    avgUs: avg ? Number(avg[1]) : NaN,
    roundTrips,
    seconds,
    totalRate: total ? Number(total[2]) / Number(total[1]) : roundTrips / seconds,
  };
}

interface Iperf3Json {
  error?: string;
  end?: {
    sum_received?: { bytes: number; seconds: number; bits_per_second: number };
    sum_sent?: { retransmits?: number };
    cpu_utilization_percent?: { host_total: number; remote_total: number };
  };
}

/** Parses `iperf3 --json` client output. */
export function parseIperf3(output: string): ThroughputResult {
  let j: Iperf3Json;
  try {
    j = JSON.parse(output) as Iperf3Json;
  } catch {
    throw new ToolOutputError('iperf3', 'output is not JSON', output);
  }
  if (j.error) throw new ToolOutputError('iperf3', j.error, output);
  const r = j.end?.sum_received;
  if (!r || !(r.bits_per_second > 0)) throw new ToolOutputError('iperf3', 'no received bytes', output);
  return {
    bitsPerSecond: r.bits_per_second,
    bytes: r.bytes,
    seconds: r.seconds,
    retransmits: j.end?.sum_sent?.retransmits ?? 0,
    cpuClientPct: j.end?.cpu_utilization_percent?.host_total ?? NaN,
    cpuServerPct: j.end?.cpu_utilization_percent?.remote_total ?? NaN,
  };
}
