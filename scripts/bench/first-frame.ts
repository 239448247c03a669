/**
 * Covered from the guest's first frame. A new VM pod is built with a silent
 * guest (its bridge has learned nothing); once the daemon has attached fixup
 * at its uplink and waits for the guest MAC, and a random while later (so that
 * the frame meets the daemon's polls of the young pod at every phase), the
 * guest sends its first frame: one ARP request for its gateway from its MAC,
 * written to its interface (AF_PACKET) by a process started before, which
 * takes T0 (CLOCK_REALTIME, ms) right before send() (guest-sender.ts). T1 is when the endpoint
 * with that MAC is in the pinned map, polled every millisecond by this
 * process; the daemon's own "added endpoint" log time is kept as a second
 * reading (its clock, ms, no polling in it).
 */
import type { Dataplane } from '../../lib/dataplane/dataplane.js';
import type { DaemonProcess } from '../../lib/testkit/daemon-process.js';
import type { Coverage } from './daemon-run.js';
import type { BenchVm, PodFactory } from './pods.js';
import { until } from './daemon-run.js';
import { GuestSender } from './guest-sender.js';
import { round, sleep } from './util.js';

export interface FirstFrameSample {
  /** T1 - T0, ms (T1 polled every ms). */
  ms: number;
  /** The daemon's "added endpoint" log time - T0, ms (null when not logged). */
  logMs: number | null;
  /** How long the pod had been covered by fixup (attached, waiting for the guest MAC) when the frame went. */
  waitedMs: number;
}

/** One sample: a new pod named `name`, next to every pod already there. */
export async function firstFrame(pods: PodFactory, cov: Coverage, dp: Dataplane, d: DaemonProcess, name: string): Promise<{ vm: BenchVm; sample: FirstFrameSample }> {
  const [vm] = await pods.create([name], false);
  const attachedAt = await until(() => cov.attached(vm!), 10_000, 5);
  if (attachedAt === null) throw new Error(`bench: fixup was not attached in ${vm!.name} within 10 s`);
  if (dp.endpoint(vm!.podIp) !== null) throw new Error(`bench: ${vm!.name} has an endpoint before its guest sent anything`);
  const guest = new GuestSender(vm!.guestNs!.path);
  try {
    await guest.ready();
    await sleep(200 + Math.random() * 1000);
    const fromLog = d.logs.length;
    const waitedMs = Date.now() - attachedAt;
    const sent = guest.announce(vm!.guestMac, vm!.podIp);
    const t1 = await until(() => dp.endpoint(vm!.podIp)?.guestMac === vm!.guestMac, 10_000, 1);
    const t0 = await sent;
    if (t1 === null) throw new Error(`bench: ${vm!.name}: no endpoint within 10 s of the guest's first frame`);
    const logged = d.logs.slice(fromLog).find((l) => l.change === 'endpoint_add' && l.netns === vm!.podNs.path);
    vm!.announcedAt = t0;
    return {
      vm: vm!,
      sample: { ms: round(t1 - t0, 1), logMs: logged ? round(Date.parse(String(logged.time)) - t0, 1) : null, waitedMs },
    };
  } finally {
    await guest.stop();
  }
}
