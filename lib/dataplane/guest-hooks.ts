/**
 * The tc hooks of a VM pod's guest ports, made when the pod is first covered.
 *
 * A clsact qdisc added to an interface that is up costs frames: qdisc_graft()
 * (net/sched/sch_api.c) calls dev_deactivate() for clsact and ingress qdiscs
 * too, which parks the transmit queues on the noop qdisc for an RCU grace
 * period, and a frame sent to the interface meanwhile is dropped. `fixup`
 * pays that once at the bridge uplink when vmpeer starts covering a pod;
 * `from_guest` (the bridge bypass) would pay it again at the guest port later,
 * with the guest's traffic running: after the pod's own programs are loaded,
 * or when the bypass is turned on for a pod covered before. So the guest
 * ports get their clsact qdisc together with the uplink's, whatever the
 * bridge choice, and a pod covered without it (by an older vmpeer) keeps its
 * bridge rather than lose a frame (bridge-path.ts).
 */
import type { AttachMode, Native } from '../native.js';
import { modeFor } from './attachments.js';

/** The mode the pod programs (fixup, from_guest) attach with under `mode`. */
const podProgramMode = (n: Native, mode: 'auto' | AttachMode): AttachMode => modeFor(n, 'from_guest', mode);

/** Makes the clsact qdisc of each guest port that lacks one (clsact mode only: tcx needs none). */
export function prepareGuestHooks(n: Native, netns: string, guestPorts: readonly string[], mode: 'auto' | AttachMode): void {
  if (podProgramMode(n, mode) !== 'clsact') return;
  for (const ifname of guestPorts) n.clsactQdisc({ netns, ifname, create: true });
}

/** prepareGuestHooks() off the JS thread. */
export async function prepareGuestHooksAsync(n: Native, netns: string, guestPorts: readonly string[], mode: 'auto' | AttachMode): Promise<void> {
  if (podProgramMode(n, mode) !== 'clsact') return;
  await Promise.all(guestPorts.map((ifname) => n.clsactQdiscAsync({ netns, ifname, create: true })));
}

/** Whether attaching from_guest at `ifname` would add a clsact qdisc to the live port. */
export async function guestHookMissing(n: Native, netns: string, ifname: string, mode: 'auto' | AttachMode): Promise<boolean> {
  if (podProgramMode(n, mode) !== 'clsact') return false;
  return !(await n.clsactQdiscAsync({ netns, ifname })).present;
}
