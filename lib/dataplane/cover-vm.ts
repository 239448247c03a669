/**
 * Covering one bridged VM interface: its guest's endpoint, `fixup` at the
 * bridge uplink port and, with the bridge bypass, `from_guest` at the guest
 * port. All of it or, when a step fails, none of it: what this call changed
 * is undone before the error goes on. The caller holds the node lock (an
 * open Dataplane) across the whole of it; still, the undo restores only what
 * this call wrote and finds unchanged (compare-and-restore), so it never
 * undoes another writer's change.
 */
import type { AttachMode } from '../native.js';
import type { VmInterface } from '../discovery/vm-pod.js';
import type { Endpoint } from './codec.js';
import { killPoint } from '../kill-point.js';
import { scopeFor } from './pod-instances.js';
import { prepareGuestHooks } from './guest-hooks.js';
import type { AttachmentRecord, Dataplane, NetnsId } from './dataplane.js';

export interface CoverOptions {
  mode?: 'auto' | AttachMode;
  /** Take the pod's bridge out of the guest's unicast IP traffic (vmpeer.bpf.c). */
  bypass?: boolean;
  /** Let `redirect` (accelerate mode) peer-redirect to the guest (default true; see egress-policy.ts). */
  redirect?: boolean;
}

export interface Covered {
  endpoint: 'added' | 'updated' | 'unchanged';
  fixup: { record: AttachmentRecord; created: boolean };
  /** With the bypass: the attachment at the guest port. */
  fromGuest: { record: AttachmentRecord; created: boolean } | null;
  /** Without the bypass: a bypass of an earlier attach was taken down. */
  bypassRemoved: boolean;
  changed: boolean;
}

/** `netns` is the identity of vm.netns (readNetnsId()). */
export function coverVm(dp: Dataplane, vm: VmInterface, netns: NetnsId, options: CoverOptions = {}): Covered {
  const { mode = 'auto', bypass = false, redirect = true } = options;
  if (bypass && !vm.guestPort) throw new Error(`the bridge bypass needs one guest port on ${vm.bridge}`);
  const uplink = { netns: vm.netns, ifname: vm.uplink.ifname, hook: 'ingress' as const };
  const previous = dp.endpoint(vm.guestIp);
  const pod = netns.inode;

  const wrote: Endpoint = {
    guestIp: vm.guestIp,
    guestMac: vm.guestMac,
    gatewayMac: vm.hostVeth.mac,
    hostIfindex: vm.hostVeth.ifindex,
    redirect,
    podNetns: pod,
    bypass: bypass ? { uplinkIfindex: vm.uplink.ifindex, guestIfindex: vm.guestPort!.ifindex } : null,
  };
  const endpoint = dp.setEndpoint(wrote);
  killPoint('endpoint');
  const undo: (() => void)[] = [];
  if (endpoint !== 'unchanged') {
    undo.push(() => {
      const now = dp.endpoint(vm.guestIp);
      if (!now || !sameEndpoint(now, wrote)) return; // another writer's since
      if (previous) dp.setEndpoint(previous);
      else dp.deleteEndpoint(vm.guestIp);
    });
  }
  try {
    // with the bypass, the pod's own instances: only they take it, and only for this pod's endpoints
    const fixup = dp.attach('fixup', uplink, netns, { mode, pod: scopeFor('fixup', pod, bypass) });
    if (fixup.created) undo.push(() => dp.removeRecordIfSame(fixup.record, uplink));
    killPoint('record');
    // covered from now on: the guest ports' tc hooks are made with the uplink's (guest-hooks.ts)
    if (fixup.created) prepareGuestHooks(dp.native, vm.netns, vm.guestPorts, mode);
    let fromGuest: Covered['fromGuest'] = null;
    let bypassRemoved = false;
    if (bypass) {
      const guestPort = { netns: vm.netns, ifname: vm.guestPort!.ifname, hook: 'ingress' as const };
      fromGuest = dp.attach('from_guest', guestPort, netns, { mode, pod: scopeFor('from_guest', pod, bypass) });
    } else {
      // the endpoint no longer asks for the bypass, so from_guest already passes every frame
      for (const ifname of vm.guestPorts) bypassRemoved = dp.detach('from_guest', { netns: vm.netns, ifname, hook: 'ingress' }) || bypassRemoved;
    }
    return { endpoint, fixup, fromGuest, bypassRemoved, changed: endpoint !== 'unchanged' || fixup.created || !!fromGuest?.created || bypassRemoved };
  } catch (e) {
    for (const step of undo.reverse()) {
      try {
        step();
      } catch {
        // the original error says what went wrong; the rest of the undo still runs
      }
    }
    throw e;
  }
}

/** The fields a writer sets (whatever the codec has; not the counters the programs keep). */
function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  const field = (e: Endpoint, k: string) => JSON.stringify((e as unknown as Record<string, unknown>)[k] ?? null);
  return Object.keys(b).every((k) => field(a, k) === field(b, k));
}
