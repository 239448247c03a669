/**
 * Covered from the guest's first frame. A new VM pod is built with a silent
 * guest (its bridge has learned nothing); once the daemon has attached fixup
 * at its uplink and waits for the guest MAC, and a random while later (so that
 * the frame meets the daemon's polls of the young pod at every phase), the
 * guest sends its first frame: one ARP request for its gateway from its MAC,
 * written to its interface (AF_PACKET) by a process started before, which
 * takes T0 (CLOCK_REALTIME, ms) right before send(). T1 is when the endpoint
 * with that MAC is in the pinned map, polled every millisecond by this
 * process; the daemon's own "added endpoint" log time is kept as a second
 * reading (its clock, ms, no polling in it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import type { Dataplane } from '../../lib/dataplane/dataplane.js';
import { GATEWAY_IP, POD_IF } from '../../lib/lab/addressing.js';
import { inNetns, killAndWait } from '../../lib/lab/exec.js';
import { arpRequest } from '../../lib/testkit/packets.js';
import type { DaemonProcess } from '../../lib/testkit/daemon-process.js';
import type { Coverage } from './daemon-run.js';
import type { BenchVm, PodFactory } from './pods.js';
import { until } from './daemon-run.js';
import { round, sleep } from './util.js';

/** Says "ready", sends the frame (hex) it reads on stdin, then prints the time just before send(), in ms. */
const ON_CUE = `
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
print("ready", flush=True)
frame = bytes.fromhex(sys.stdin.readline().strip())
t0 = time.time_ns()
s.send(frame)
print(t0 / 1e6, flush=True)
`;

export interface FirstFrameSample {
  /** T1 - T0, ms (T1 polled every ms). */
  ms: number;
  /** The daemon's "added endpoint" log time - T0, ms (null when not logged). */
  logMs: number | null;
  /** How long the pod had been covered by fixup (attached, waiting for the guest MAC) when the frame went. */
  waitedMs: number;
}

function cued(guestNs: string): { child: ChildProcess; ready: Promise<void>; sent: Promise<number> } {
  const [cmd, args] = inNetns(guestNs, 'python3', ['-c', ON_CUE, POD_IF]);
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'ignore'] });
  child.on('error', () => undefined);
  const lines = readline.createInterface({ input: child.stdout! });
  let onReady: () => void = () => undefined;
  let onSent: (t: number) => void = () => undefined;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const sent = new Promise<number>((resolve) => (onSent = resolve));
  lines.on('line', (l) => (l === 'ready' ? onReady() : onSent(Number(l))));
  return { child, ready, sent };
}

/** One sample: a new pod named `name`, next to every pod already there. */
export async function firstFrame(pods: PodFactory, cov: Coverage, dp: Dataplane, d: DaemonProcess, name: string): Promise<{ vm: BenchVm; sample: FirstFrameSample }> {
  const [vm] = await pods.create([name], false);
  const attachedAt = await until(() => cov.attached(vm!), 10_000, 5);
  if (attachedAt === null) throw new Error(`bench: fixup was not attached in ${vm!.name} within 10 s`);
  if (dp.endpoint(vm!.podIp) !== null) throw new Error(`bench: ${vm!.name} has an endpoint before its guest sent anything`);
  const guest = cued(vm!.guestNs!.path);
  try {
    await Promise.race([guest.ready, sleep(10_000).then(() => Promise.reject(new Error('bench: the guest sender did not start')))]);
    await sleep(200 + Math.random() * 1000);
    const fromLog = d.logs.length;
    const waitedMs = Date.now() - attachedAt;
    guest.child.stdin!.write(`${arpRequest(vm!.guestMac, vm!.podIp, GATEWAY_IP).toString('hex')}\n`);
    const t1 = await until(() => dp.endpoint(vm!.podIp)?.guestMac === vm!.guestMac, 10_000, 1);
    const t0 = await guest.sent;
    if (t1 === null) throw new Error(`bench: ${vm!.name}: no endpoint within 10 s of the guest's first frame`);
    const logged = d.logs.slice(fromLog).find((l) => l.change === 'endpoint_add' && l.netns === vm!.podNs.path);
    vm!.announcedAt = t0;
    return {
      vm: vm!,
      sample: { ms: round(t1 - t0, 1), logMs: logged ? round(Date.parse(String(logged.time)) - t0, 1) : null, waitedMs },
    };
  } finally {
    await killAndWait(guest.child);
  }
}
