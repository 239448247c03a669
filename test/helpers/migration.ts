/**
 * Measuring a live migration (lib/lab/migration.ts) under load: pings at
 * 100 pps from a client on another node and from a pod on the lab's node
 * while the guest moves, and what the daemon did meanwhile.
 */
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
}

/** Pings from both clients at 100 pps and migrates meanwhile; the loss of each. */
export async function migrateUnderLoad(l: Lab, m: Migrations, from: MigratablePod, to: MigratablePod): Promise<{ loss: Loss; report: MigrationReport }> {
  const ping = (ns: Parameters<Lab['ping']>[0]) => l.ping(ns, from.podIp, { count: PINGS, intervalMs: 1000 / PPS, waitS: 2 });
  const go = await m.prepare(from, to);
  const t0 = Date.now();
  const pings = Promise.all([ping(l.client), ping(l.plain[0]!)]);
  await new Promise((r) => setTimeout(r, MIGRATE_AFTER_MS));
  const report = await go();
  const [c, p] = await pings;
  const end = t0 + (PINGS * 1000) / PPS;
  if (report.activatedAt > end - 500) throw new Error(`the migration ended too late for the measurement (${report.activatedAt - t0} ms into ${end - t0})`);
  return { loss: { client: c.transmitted - c.received, pod: p.transmitted - p.received }, report };
}

/**
 * The most vmpeer may lose against the kernel path's `kernel` loss. The two
 * migrations a test compares are separate runs, and QEMU's downtime (the
 * guest stopped while its last dirty pages and device state go over)
 * differs between them, under software emulation from a few ms to 300 ms:
 * every echo sent while the guest is stopped is lost on either path, so
 * vmpeer's run is allowed the echoes of the downtime it had beyond the
 * kernel path's run (and is not required to profit from a shorter one),
 * plus TOLERANCE: the echo in flight at each edge of the downtime.
 */
export function allowedLoss(kernel: number, kernelRun: MigrationReport, fastRun: MigrationReport): number {
  const extraDowntime = Math.max(0, (fastRun.downtimeMs ?? 0) - (kernelRun.downtimeMs ?? 0));
  return kernel + Math.ceil(extraDowntime / (1000 / PPS)) + TOLERANCE;
}

export const TOLERANCE = 2;

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
