/**
 * Accelerate mode keeps the workload's policy. `redirect` peer-redirects a
 * guest's frames from the node's uplink straight into the pod, past the tc
 * egress hook of the pod's host veth: where a CNI enforces the workload's
 * ingress policy (Calico's eBPF dataplane; Calico #13356 stopped
 * peer-redirecting SYNs for that reason). So an endpoint whose host veth has
 * programs at that hook is written without VMPEER_EP_REDIRECT (its frames take
 * the kernel path, and that policy), unless the operator says to skip them.
 *
 * What this cannot see: netfilter rules (iptables/nftables) for the pod;
 * `redirect` skips those as well, for established flows only (it never
 * redirects a TCP SYN, so a flow netfilter refuses never gets established).
 */
import { native, type HookEntry, type Native } from '../native.js';

/** The flag (CLI and daemon) that accelerates toward such endpoints anyway. */
export const SKIP_EGRESS_FLAG = 'skip-egress-programs';

export const SKIP_EGRESS_HELP = `accelerate even toward guests whose host veth has
                       programs at its tc egress (a CNI's policy for the
                       workload): redirect skips them, and the policy with them`;

/** The programs at the tc egress of `hostVeth` in this (the node's) netns. */
export function egressPrograms(hostVeth: string, n: Native = native()): HookEntry[] {
  try {
    return n.listHook({ ifname: hostVeth, hook: 'egress' });
  } catch (e) {
    // the veth went away meanwhile: nothing to skip (the endpoint goes with its pod)
    if ((e as { code?: string }).code === 'ENODEV' || (e as Error).name === 'NoSuchInterfaceError') return [];
    throw e;
  }
}

export function describeEgress(hostVeth: string, entries: HookEntry[]): string {
  return `${hostVeth} has ${entries.map((e) => `${e.progName || `prog ${e.progId}`} (${e.mode})`).join(', ')} at its tc egress`;
}
