/**
 * A hostile pod, as DESIGN.md §11 allows one: an ordinary pod holding
 * CAP_NET_ADMIN in its own netns dresses up as a KubeVirt VM pod to take a
 * VM's guest IP. It builds a bridge over its own eth0 (the CNI veth), a veth
 * port on it, and a DOWN link named after the bridge's suffix that holds the
 * victim's IP, then sends a frame on the port so that the bridge learns a
 * "guest" MAC. Everything it touches is inside its own netns.
 */
import { runIn } from '../../lib/lab/exec.js';
import type { PlainPod } from '../../lib/lab/index.js';

export const BRIDGE = 'k6t-evil';
export const DUMMY = 'evil';
export const PORT = 'port0';
export const PEER = 'peer0';

const ip = (pod: PlainPod, args: string[]) => runIn(pod.podNs.path, 'ip', args);

/** Builds the look-alike in `pod`, claiming `victimIp`. */
export async function dressUp(pod: PlainPod, victimIp: string): Promise<void> {
  await ip(pod, ['link', 'add', BRIDGE, 'type', 'bridge']);
  await ip(pod, ['link', 'set', BRIDGE, 'up']);
  await ip(pod, ['link', 'set', pod.iface.name, 'master', BRIDGE]);
  await ip(pod, ['link', 'add', PORT, 'type', 'veth', 'peer', 'name', PEER]);
  await ip(pod, ['link', 'set', PORT, 'master', BRIDGE]);
  await ip(pod, ['link', 'set', PORT, 'up']);
  await ip(pod, ['link', 'set', PEER, 'up']);
  await ip(pod, ['addr', 'add', '169.254.99.2/24', 'dev', PEER]);
  // a dummy where the kernel has the driver, else a DOWN bridge (as the lab's VM pods do)
  const dummy = await runIn(pod.podNs.path, 'ip', ['link', 'add', DUMMY, 'type', 'dummy'], { allowFail: true });
  if (dummy.code !== 0) await ip(pod, ['link', 'add', DUMMY, 'type', 'bridge']);
  await ip(pod, ['addr', 'add', `${victimIp}/32`, 'dev', DUMMY]);
  await sendFrame(pod);
}

/** One frame from the "guest" on the port: an ARP request the bridge learns its MAC from. */
export async function sendFrame(pod: PlainPod): Promise<void> {
  await runIn(pod.podNs.path, 'busybox', ['arping', '-c', '1', '-w', '1', '-I', PEER, '169.254.99.1'], { allowFail: true });
}

/** Touches the look-alike's links the way that re-won ownership before: down/up, address again, port out and in, a frame. */
export async function touch(pod: PlainPod, victimIp: string, round: number): Promise<void> {
  const steps = [
    () => ip(pod, ['link', 'set', DUMMY, 'up']).then(() => ip(pod, ['link', 'set', DUMMY, 'down'])),
    () => ip(pod, ['addr', 'flush', 'dev', DUMMY]).then(() => ip(pod, ['addr', 'add', `${victimIp}/32`, 'dev', DUMMY])),
    () => ip(pod, ['link', 'set', PORT, 'nomaster']).then(() => ip(pod, ['link', 'set', PORT, 'master', BRIDGE])),
    () => ip(pod, ['link', 'set', PEER, 'address', `02:00:00:00:99:${(round % 200).toString(16).padStart(2, '0')}`]),
  ];
  await steps[round % steps.length]!();
  await sendFrame(pod);
}
