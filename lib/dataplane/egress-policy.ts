/**
 * Accelerate mode keeps the workload's policy. `redirect` peer-redirects a
 * guest's frames from the node's uplink straight into the pod, past the tc
 * egress hook of the pod's host veth: where a CNI enforces the workload's
 * ingress policy (Calico's eBPF dataplane; Calico #13356 stopped
 * peer-redirecting SYNs for that reason). So an endpoint whose host veth has
 * programs at that hook is written without VMPEER_EP_REDIRECT (its frames take
 * the kernel path, and that policy), unless the operator says to skip them.
 *
 * A netkit host device (Calico's netkit mode) has no such hook in the path:
 * the CNI attaches the pod's policy as netkit programs (BPF_NETKIT_PRIMARY),
 * which run in netkit_xmit() of the node end (drivers/net/netkit.c), and a
 * peer redirect never calls that (skb_do_redirect() goes straight to the
 * peer through ndo_get_peer_dev). vmpeer does not query them (bookworm's
 * libbpf has no netkit API): such an endpoint always takes the kernel path.
 *
 * What this cannot see: netfilter rules (iptables/nftables) for the pod;
 * `redirect` skips those as well, for established flows only (it never
 * redirects a TCP SYN, so a flow netfilter refuses never gets established).
 *
 * Netfilter's conntrack, though, then sees a TCP flow's handshake and, after
 * it, only the guest's replies: their ACKs cover data it never saw, which its
 * window tracking marks INVALID (nf_conntrack_proto_tcp.c, tcp_in_window(): the
 * ACK is above the other side's highest sequence seen), and a `ct state invalid
 * drop` rule (kube-proxy's KUBE-FORWARD has one) then drops them and the flow
 * stalls. With net.netfilter.nf_conntrack_tcp_be_liberal=1 conntrack keeps
 * such packets ESTABLISHED (the setting asymmetric routing needs too): accelerate
 * mode warns while it is 0. (A conntrack lookup from tc, bpf_skb_ct_lookup,
 * could tell which flows netfilter admitted, but not keep its window right.)
 */
import fs from 'node:fs';
import { native, type HookEntry, type Native } from '../native.js';

const BE_LIBERAL = '/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal';

/** A warning when conntrack runs in this netns with strict TCP window tracking, else null. */
export function conntrackWarning(): string | null {
  let value: string;
  try {
    value = fs.readFileSync(BE_LIBERAL, 'utf8').trim();
  } catch {
    return null; // no conntrack in this kernel / netns
  }
  if (value !== '0') return null;
  return (
    'netfilter conntrack tracks TCP strictly here (net.netfilter.nf_conntrack_tcp_be_liberal=0): after the handshake it sees only the ' +
    "guests' replies and marks them INVALID, so a `ct state invalid drop` rule (kube-proxy has one) stalls accelerated TCP flows; set it to 1"
  );
}

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

/** A pod's host device: its name and link kind (veth, netkit). */
export interface HostDevice {
  ifname: string;
  kind?: string;
}

/**
 * What of the CNI's policy for the pod behind `dev` a peer redirect would
 * skip: a sentence and the programs' names (none listed for netkit); null
 * when nothing (redirect may go there).
 */
export function policyInTheWay(dev: HostDevice, n: Native = native()): { why: string; programs: string[] } | null {
  if (dev.kind === 'netkit') return { why: `${dev.ifname} is a netkit device, whose programs (a CNI's policy for the pod) run where redirect would skip them`, programs: [] };
  const egress = egressPrograms(dev.ifname, n);
  return egress.length > 0 ? { why: describeEgress(dev.ifname, egress), programs: egress.map((e) => e.progName) } : null;
}
