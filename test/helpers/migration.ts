/**
 * Measuring a live migration (lib/lab/migration.ts) under load: pings at
 * 100 pps from a client on another node and from a pod on the lab's node
 * while the guest moves, and what the daemon did meanwhile.
 */
import readline from 'node:readline';
import { spawnIn } from '../../lib/lab/exec.js';
import type { Lab } from '../../lib/lab/index.js';
import type { MigratablePod, MigrationReport, Migrations } from '../../lib/lab/migration.js';
import { type DaemonProcess, inodeOf, type State } from './daemon.js';

/** 100 pps for 10 s: the migration (1–6 s under emulation on a loaded machine) starts after 0.5 s. */
export const PPS = 100;
const PINGS = 1000;
const MIGRATE_AFTER_MS = 500;

export interface Loss {
  client: number;
  pod: number;
  /** The echoes lost, as ranges of ms after the first echo ("1200-1290"), for the log. */
  where: { client: string; pod: string };
  /** ... of which sent once the CNI had moved the route to the target (what the data path adds). */
  afterRoute: { client: number; pod: number };
}

interface Echoes {
  transmitted: number;
  /** Sequence number → when its reply arrived (epoch ms, read as ping printed it). */
  replies: Map<number, number>;
}

/**
 * busybox ping at 100 pps, each reply timestamped as it is printed: the
 * replies date the echoes (the round trip is under a millisecond here),
 * which a start time cannot (spawning ping in a netns takes 10–300 ms on a
 * loaded machine).
 */
function pingTimed(nsPath: string, ip: string): Promise<Echoes> {
  return new Promise((resolve, reject) => {
    const child = spawnIn(nsPath, 'busybox', ['ping', '-c', String(PINGS), '-i', String(1 / PPS), '-W', '2', ip]);
    const replies = new Map<number, number>();
    let transmitted = 0;
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /seq=(\d+)/.exec(line);
      if (m) replies.set(Number(m[1]), Date.now());
      const tx = /(\d+) packets transmitted/.exec(line);
      if (tx) transmitted = Number(tx[1]);
    });
    child.on('error', reject);
    child.on('close', () => (transmitted > 0 ? resolve({ transmitted, replies }) : reject(new Error(`ping ${ip} in ${nsPath} printed no summary`))));
  });
}

/** Lost echoes sent at or after `at` (epoch ms): an echo is dated by the last reply before it, plus intervals. */
function lostFrom(e: Echoes, at: number): number {
  let n = 0;
  let last: [number, number] | null = null;
  for (let i = 0; i < e.transmitted; i++) {
    const r = e.replies.get(i);
    if (r !== undefined) last = [i, r];
    else if (last && last[1] + ((i - last[0]) * 1000) / PPS >= at) n++;
  }
  return n;
}

/** Lost sequence numbers as time ranges. */
function lostRanges(transmitted: number, replies: number[]): string {
  const got = new Set(replies);
  const out: string[] = [];
  for (let i = 0; i < transmitted; i++) {
    if (got.has(i)) continue;
    let j = i;
    while (j + 1 < transmitted && !got.has(j + 1)) j++;
    out.push(`${(i * 1000) / PPS}-${(j * 1000) / PPS}`);
    i = j;
  }
  return out.join(' ') || 'none';
}

/** Pings from both clients at 100 pps and migrates meanwhile; the loss of each. */
export async function migrateUnderLoad(l: Lab, m: Migrations, from: MigratablePod, to: MigratablePod): Promise<{ loss: Loss; report: MigrationReport & { pingsStartedAt: number } }> {
  const go = await m.prepare(from, to);
  const t0 = Date.now();
  const pings = Promise.all([pingTimed(l.client.ns.path, from.podIp), pingTimed(l.plain[0]!.ns.path, from.podIp)]);
  await new Promise((r) => setTimeout(r, MIGRATE_AFTER_MS));
  const report = await go();
  const [c, p] = await pings;
  const lastReply = (e: Echoes) => Math.max(...e.replies.values());
  if (report.activatedAt > Math.min(lastReply(c), lastReply(p)) - 500) throw new Error(`the migration ended too late for the measurement (${report.activatedAt - t0} ms in)`);
  const where = { client: lostRanges(c.transmitted, [...c.replies.keys()]), pod: lostRanges(p.transmitted, [...p.replies.keys()]) };
  const afterRoute = { client: lostFrom(c, report.activatedAt), pod: lostFrom(p, report.activatedAt) };
  return { loss: { client: c.transmitted - c.replies.size, pod: p.transmitted - p.replies.size, where, afterRoute }, report: { ...report, pingsStartedAt: t0 } as MigrationReport & { pingsStartedAt: number } };
}

/**
 * The most vmpeer may lose against the kernel path's `kernel` loss. The two
 * migrations a test compares are separate runs, and two things outside
 * vmpeer decide most of the loss and differ between runs, both measured per
 * run: QEMU's downtime (15–400 ms under software emulation), the wait from
 * the migration's end to the guest's first frame on the target (a virtio-net
 * guest announces itself when its kernel gets to run: 30–400 ms) and the lab
 * CNI's reaction to that frame (10–250 ms on a loaded machine); every echo
 * sent meanwhile is lost on either path. vmpeer's
 * run is allowed the echoes of what it had of each beyond the kernel path's
 * run (and is not required to profit from less), plus TOLERANCE: the echo in
 * flight at each edge and one at the switch. Echoes lost after the route
 * moved (dated by their replies, roughly) are reported, not asserted: on a
 * loaded machine ping's output is read too late to date them to 10 ms.
 */
export function allowedLoss(kernel: number, kernelRun: MigrationReport, fastRun: MigrationReport): number {
  const echoes = (ms: number) => Math.ceil(Math.max(0, ms) / (1000 / PPS));
  const cni = (r: MigrationReport) => r.activatedAt - r.firstFrameAt;
  const announce = (r: MigrationReport) => r.firstFrameAt - r.completedAt;
  return kernel + echoes((fastRun.downtimeMs ?? 0) - (kernelRun.downtimeMs ?? 0)) + echoes(announce(fastRun) - announce(kernelRun)) + echoes(cni(fastRun) - cni(kernelRun)) + TOLERANCE;
}

export const TOLERANCE = 3;

export function endpointAt(state: State, ip: string, pod: MigratablePod): boolean {
  const ep = state.dp.endpoint(ip);
  return ep !== null && ep.podNetns === inodeOf(pod.podNs.path) && ep.hostIfindex === pod.hostVeth.ifindex && ep.guestMac === pod.guestMac;
}

/** When the daemon wrote the endpoint for `ip` into `pod` (its log's timestamp, epoch ms). */
export function endpointWrittenAt(d: DaemonProcess, ip: string, pod: MigratablePod, from: number): number | null {
  const line = d.logs.slice(from).find((x) => x.change?.startsWith('endpoint') && x.guestIp === ip && x.netns === pod.podNs.path);
  return line ? Date.parse(String(line.timestamp ?? line.time)) : null;
}

/** fixup at the pod's uplink (eth0-nic). */
export function fixupAt(state: State, pod: MigratablePod): boolean {
  return state.hook(pod.podNs.path, pod.nic.name).some((e) => e.progName === 'fixup');
}
