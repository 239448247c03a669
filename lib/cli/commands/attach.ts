/** vmpeer attach: cover one VM pod (fixup at its bridge uplink), or a host interface (redirect, accelerate mode). */
import { COMMON_HELP, commonOptions, type Command, type Io, type Values } from '../command.js';
import { resolveNetns } from '../netns.js';
import { requirePrivileges } from '../../privileges.js';
import { Dataplane, readNetnsId } from '../../dataplane/dataplane.js';
import { coverVm } from '../../dataplane/cover-vm.js';
import { describe } from '../../bpf/link.js';
import { discoverVmInterfaces } from '../../discovery/vm-pod.js';
import { NoSuchInterfaceError, UsageError } from '../../errors.js';
import { parseIfname, parseIp, parseMac } from '../../validate.js';
import { native, type AttachMode } from '../../native.js';
import { ACCELERATE_WARNING } from '../../accelerate.js';
import { conntrackWarning, policyInTheWay, SKIP_EGRESS_FLAG, SKIP_EGRESS_HELP } from '../../dataplane/egress-policy.js';
import { iproute } from '../../discovery/iproute.js';
import { BRIDGE_FLAGS_CONTRADICT, bridgeKeptBecause, BYPASS_BRIDGE_FLAG, KEEP_BRIDGE_FLAG, type BridgeChoice } from '../../dataplane/bridge-path.js';

export function parseMode(value: Values[string]): 'auto' | AttachMode {
  if (value === undefined || value === 'auto' || value === 'tcx' || value === 'clsact') return value ?? 'auto';
  throw new UsageError(`invalid --mode '${String(value)}': expected auto, tcx or clsact`);
}

export const attachCommand: Command = {
  name: 'attach',
  summary: 'fix a bridged VM pod, or accelerate a host interface',
  help: `Usage:
  vmpeer attach --netns <name|path> [--dev <ifname>] [--guest-mac <mac>] [--guest-ip <ip> [--trust-guest-ip]] [--keep-bridge] [--skip-egress-programs] [--mode auto|tcx|clsact]
  vmpeer attach --accelerate --host-dev <ifname> [--first] [--skip-egress-programs] [--mode auto|tcx|clsact]

The first form finds the VM interface in the pod's network namespace (the
bridge uplink port, the guest's MAC and IP, the host-side veth), writes the
guest's endpoint and attaches the fixup program at the uplink port's ingress.
Attaching twice changes nothing; attaching again with other options changes
the pod to match them.

By default the guest's unicast IP traffic skips the pod's bridge in both
directions (the bridge bypass): fixup sends frames for the guest straight to
the guest port (tap0), and from_guest, at the guest port's ingress, sends the
guest's frames for its gateway straight into the host veth. It is faster (the
pod's bridge and bridge netfilter cost a VM about 15 % of a plain pod's
request/response rate) and skips what that bridge would apply to those
frames: iptables and nftables rules in the pod's netns for bridged traffic
(br_netfilter, bridge family), the bridge's FDB learning from unicast frames,
and a capture on the bridge device. KubeVirt's bridge binding puts no such
rules there. ARP, DHCP, IPv6 neighbour discovery and every broadcast or
multicast frame still go through the bridge. A bridge with more than one
guest port keeps the bridge on the path (the output says why); --keep-bridge
keeps it for any pod.

The second form attaches the redirect program (the corrected peer-redirect
fast path) at the ingress of a host interface of this node. It never
redirects a TCP SYN, and never toward a guest whose host veth has programs
at its tc egress (a CNI's policy for the workload, which a peer redirect
skips): those take the kernel path. It refuses (exit 2) while an endpoint
written before such a program appeared would still be redirected past it.

Options:
  --netns <name|path>  the VM pod's netns: a name under /var/run/netns or a
                       path such as /proc/<pid>/ns/net or /var/run/netns/cni-…
  --dev <ifname>       the bridge uplink port (default: discovered, eth0-nic)
  --guest-mac <mac>    the guest's MAC (default: learned by the pod's bridge)
  --guest-ip <ip>      the guest's IP (default: the one address this node
                       routes to the pod's host veth). Refused (exit 2) when
                       the node routes it elsewhere
  --trust-guest-ip     write --guest-ip even so. Risk: frames for that IP are
                       then re-addressed into this pod (and, with accelerate
                       mode, redirected into it), away from wherever the
                       node's routing sends them: a pod that can make you
                       pass it this flag can take another pod's traffic
  --keep-bridge        keep the pod's bridge on the path of the guest's IP
                       traffic (no bridge bypass)
  --bypass-bridge      the default; accepted for scripts of earlier versions
  --mode <mode>        tcx (Linux >= 6.6), clsact, or auto (default: clsact in
                       VM pods, tcx on host interfaces where the kernel has it)
  --accelerate         attach redirect to --host-dev instead
  --host-dev <ifname>  a host interface (uplink, or another pod's host veth)
  --first              accelerate: run before the programs already at the hook
  --skip-egress-programs
                       ${SKIP_EGRESS_HELP}
${COMMON_HELP}

Examples:
  vmpeer attach --netns cni-1b2c3d4e-0000-1111-2222-333344445555
  vmpeer attach --netns /proc/4242/ns/net --guest-mac 02:00:00:aa:bb:cc
  vmpeer attach --netns cni-1b2c3d4e-0000-1111-2222-333344445555 --keep-bridge
  vmpeer attach --accelerate --host-dev eth0`,
  options: {
    ...commonOptions,
    netns: { type: 'string' },
    dev: { type: 'string' },
    'guest-mac': { type: 'string' },
    'guest-ip': { type: 'string' },
    'trust-guest-ip': { type: 'boolean' },
    [KEEP_BRIDGE_FLAG]: { type: 'boolean' },
    [BYPASS_BRIDGE_FLAG]: { type: 'boolean' },
    mode: { type: 'string' },
    accelerate: { type: 'boolean' },
    'host-dev': { type: 'string' },
    first: { type: 'boolean' },
    [SKIP_EGRESS_FLAG]: { type: 'boolean' },
  },
  async run(values, io) {
    requirePrivileges(`vmpeer ${this.name}`);
    const mode = parseMode(values.mode);
    const root = values.bpffs as string | undefined;
    if (values.accelerate) return accelerate(values, mode, root, io);
    if (values['host-dev'] !== undefined || values.first) throw new UsageError('--host-dev and --first go with --accelerate');
    if (typeof values.netns !== 'string') throw new UsageError('attach needs --netns <name|path> (or --accelerate --host-dev <ifname>)');

    const netns = resolveNetns(values.netns);
    const overrides = {
      dev: values.dev === undefined ? undefined : parseIfname(values.dev as string, '--dev'),
      guestMac: values['guest-mac'] === undefined ? undefined : parseMac(values['guest-mac'] as string, '--guest-mac'),
      guestIp: values['guest-ip'] === undefined ? undefined : parseIp(values['guest-ip'] as string, '--guest-ip').text,
      trustGuestIp: values['trust-guest-ip'] === true,
    };
    if (overrides.trustGuestIp && overrides.guestIp === undefined) throw new UsageError('--trust-guest-ip goes with --guest-ip');
    if (values[KEEP_BRIDGE_FLAG] === true && values[BYPASS_BRIDGE_FLAG] === true) {
      throw new UsageError(BRIDGE_FLAGS_CONTRADICT);
    }
    const choice: BridgeChoice = values[KEEP_BRIDGE_FLAG] === true ? 'keep' : 'bypass';

    // the node lock is held from discovery to the last record (one transaction)
    const dp = Dataplane.open({ root });
    try {
      const vms = await discoverVmInterfaces(netns, overrides);
      for (const c of vms.flatMap((vm) => vm.refused)) {
        io.err(`warning: refused ${c.ip}, which the pod claims (${c.claimedBy}): this node routes it ${c.routedTo ? `to ${c.routedTo}` : 'nowhere'}`);
      }
      const skipEgress = values[SKIP_EGRESS_FLAG] === true;
      const redirectTo = new Map<string, boolean>();
      for (const vm of vms) {
        const why = policyInTheWay(vm.hostVeth)?.why ?? null;
        redirectTo.set(vm.guestIp, why === null || skipEgress);
        if (why !== null && !skipEgress) {
          io.err(`warning: ${why}: accelerate mode leaves ${vm.guestIp} to the kernel path (and that policy); --${SKIP_EGRESS_FLAG} redirects past it`);
        }
      }
      for (const vm of vms) {
        const kept = bridgeKeptBecause(choice, vm);
        if (kept !== null && choice === 'bypass') io.err(`warning: keeping the bridge ${vm.bridge} on the path of ${vm.guestIp}: the bridge bypass is unsafe there, ${kept}`);
        const c = coverVm(dp, vm, await readNetnsId(native(), vm.netns), { mode, bypass: kept === null, redirect: redirectTo.get(vm.guestIp) });
        const target = { netns, ifname: vm.uplink.ifname, hook: 'ingress' as const };
        const what = `guest ${vm.guestIp} at ${vm.guestMac} (MAC from ${vm.guestMacFrom}), gateway ${vm.hostVeth.mac} via ${vm.hostVeth.ifname} (ifindex ${vm.hostVeth.ifindex})`;
        const bridge = c.fromGuest ? `; bridge bypassed: from_guest on ${vm.guestPort!.ifname} (${c.fromGuest.record.mode})` : `; bridge kept: ${kept}`;
        if (!c.changed) {
          io.out(`already attached: fixup on ${describe(target)} (${c.fixup.record.mode}), ${what}${bridge}; nothing changed`);
        } else {
          io.out(`${c.fixup.created ? 'attached' : 'kept'} fixup on ${describe(target)} (${c.fixup.record.mode}); endpoint ${c.endpoint}: ${what}${bridge}${c.bypassRemoved ? '; bridge bypass removed' : ''}`);
        }
      }
    } finally {
      dp.closeAndPruneIfEmpty(); // after a failure on first use, no state is left behind
    }
    return 0;
  },
};

async function accelerate(values: Values, mode: 'auto' | AttachMode, root: string | undefined, io: Io): Promise<number> {
  if (values.netns !== undefined || values.dev !== undefined || values['guest-mac'] !== undefined || values['guest-ip'] !== undefined || values['trust-guest-ip'] !== undefined) {
    throw new UsageError('--accelerate takes --host-dev, not --netns/--dev/--guest-*: endpoints come from attaching VM pods');
  }
  if (typeof values['host-dev'] !== 'string') throw new UsageError('--accelerate needs --host-dev <ifname>');
  const target = { ifname: parseIfname(values['host-dev'], '--host-dev'), hook: 'ingress' as const };
  if (native().ifindex(undefined, target.ifname) === 0) throw new NoSuchInterfaceError(target.ifname, 'this node');
  const dp = Dataplane.open({ root });
  try {
    if (values[SKIP_EGRESS_FLAG] !== true) {
      const devices = new Map((await iproute.links()).map((l) => [l.ifindex, { ifname: l.ifname, kind: l.linkinfo?.info_kind }]));
      for (const ep of dp.endpoints().filter((e) => e.redirect && e.hostIfindex)) {
        const dev = devices.get(ep.hostIfindex);
        const why = dev ? (policyInTheWay(dev)?.why ?? null) : null;
        if (why !== null) {
          throw new UsageError(
            `refusing to accelerate: ${why}, which redirect would skip for ${ep.guestIp}; run vmpeer attach --netns for its pod again (it then takes the kernel path), or pass --${SKIP_EGRESS_FLAG}`,
          );
        }
      }
    }
    const { record, created } = dp.attach('redirect', target, await readNetnsId(native()), { mode, first: values.first === true });
    io.err(ACCELERATE_WARNING);
    const conntrack = conntrackWarning();
    if (conntrack) io.err(`warning: ${conntrack}`);
    io.out(created ? `attached redirect on ${describe(target)} (${record.mode})` : `already attached: redirect on ${describe(target)} (${record.mode}); nothing changed`);
  } finally {
    dp.closeAndPruneIfEmpty();
  }
  return 0;
}
