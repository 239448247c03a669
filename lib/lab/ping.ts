/**
 * ICMP echo from inside a netns, with busybox's ping (iputils' where busybox
 * is missing). Every run is a new ICMP identifier, hence a new flow for the
 * CNI emulator: its first echo takes the kernel path, the rest the fast path.
 */
import { existsSync } from 'node:fs';
import { runIn } from './exec.js';

export interface PingOptions {
  /** Echo requests to send (default 10). */
  count?: number;
  /** Milliseconds between them (default 100). */
  intervalMs?: number;
  /** Seconds to wait for replies after the last request (default 1). */
  waitS?: number;
  /** ICMP payload bytes (default 56). */
  size?: number;
}

export interface PingResult {
  transmitted: number;
  received: number;
  /** Sequence numbers that got a reply, from 0, in arrival order. */
  replies: number[];
  /** TTL of each reply, in the same order. */
  ttls: number[];
}

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));

export async function ping(nsPath: string, ip: string, options: PingOptions = {}): Promise<PingResult> {
  const count = options.count ?? 10;
  const interval = (options.intervalMs ?? 100) / 1000;
  const wait = options.waitS ?? 1;
  const size = options.size ?? 56;
  const args = ['-c', String(count), '-i', String(interval), '-W', String(wait), '-s', String(size), ip];
  const [cmd, argv, seqBase] = BUSYBOX ? [BUSYBOX, ['ping', ...args], 0] : ['ping', ['-n', ...args], 1];
  const { stdout, stderr } = await runIn(nsPath, cmd, argv, {
    allowFail: true, // exit 1 when replies are missing
    timeoutMs: (count * interval + wait + 10) * 1000,
  });
  if (/^nsenter: /m.test(stderr) || !/packets transmitted/.test(stdout)) {
    throw new Error(`ping ${ip} in ${nsPath} failed: ${stderr.trim()}`);
  }
  const replies: number[] = [];
  const ttls: number[] = [];
  for (const m of stdout.matchAll(/seq=(\d+) ttl=(\d+)/g)) {
    replies.push(Number(m[1]) - seqBase);
    ttls.push(Number(m[2]));
  }
  const tx = /(\d+) packets transmitted/.exec(stdout);
  return { transmitted: tx ? Number(tx[1]) : 0, received: replies.length, replies, ttls };
}
