/**
 * netkit pods (Linux 6.7+; Calico's netkit mode): a KubeVirt VM pod whose pod
 * device is a netkit pair in L2 mode. Runs in the kernel matrix on the kernels
 * that have netkit (its `netkit` suite, in scripts/test-kernels.mjs's plan), not on
 * the host: its kernel has no netkit.
 *
 * What it asserts, each where the kernel decides it:
 *   - the netkit peer (L2) is accepted as the bridge's uplink port (in L3
 *     mode, without a MAC, the bridge refuses it) and the VM pod
 *     works on the kernel path (netkit's xmit scrubs the skb and classifies
 *     pkt_type by the destination MAC, drivers/net/netkit.c netkit_xmit();
 *     the MAC the node's neighbour table wrote is the guest's);
 *   - bpf_redirect_peer() toward the netkit primary enters the pod at the
 *     peer's ingress with the Ethernet header untouched (skb_do_redirect()
 *     through ndo_get_peer_dev, netkit_xmit() does not run): the fault (only
 *     the first echo of a flow answered) reproduces;
 *   - vmpeer's discovery finds the pod, fixup runs at the netkit peer's tc
 *     ingress in both attach modes (tcx and clsact) and fixes every frame;
 *     detach brings the fault back.
 *   - accelerate mode leaves the guest to the kernel path: a peer redirect
 *     would skip netkit's own programs, where a CNI runs the pod's policy.
 * Its "kernel-fact: netkit.*" lines go to the README's compatibility table.
 */
import test from 'ava';
import { bpffsDir } from '../helpers/netns.js';
import { lab as newLab } from '../helpers/lab.js';
import { netkitL3AsBridgePort, netkitPodDevice } from '../helpers/netkit.js';
import { vmpeer } from '../../lib/testkit/cli.js';

const PINGS = 10;
const FAST = { count: PINGS, intervalMs: 20, waitS: 1 };

/** Collected by scripts/test-kernels.mjs with the other kernel facts (as netkit.<name>). */
function fact(name: string, value: string | number): void {
  process.stdout.write(`kernel-fact: netkit.${name}=${value}\n`);
}

test('a VM pod on a netkit pair (L2): bridge port, the fault after a peer redirect, fixup at the netkit peer (tcx and clsact)', async (t) => {
  const lab = await newLab(t, { vmPods: 1, plainPods: 0, emulator: false });
  const vm = lab.vms[0]!;
  const node = lab.node.ns.path;
  const root = bpffsDir(t);

  const nk = await netkitPodDevice(lab, vm);
  t.deepEqual(nk.peerInfo, { kind: 'netkit', master: 'k6t-eth0' }, 'the netkit peer is the bridge uplink port');
  t.is((await lab.ping(lab.client, vm.podIp, FAST)).received, PINGS, 'kernel path: every echo answered through the netkit pair');
  fact('bridge_port', 'yes');
  // L3 mode (Cilium's default) has no MAC: br_add_if() refuses it (EINVAL), so bridge binding needs L2
  t.regex(await netkitL3AsBridgePort(vm), /Invalid argument/, 'netkit L3 is no bridge port');

  // the emulated CNI: established flows peer-redirected from the node's uplink to the netkit primary
  lab.emulator.setRoute(vm.podIp, nk.primary.ifindex);
  lab.setEmulator(true);
  const fault = await lab.ping(lab.client, vm.podIp, FAST);
  t.is(fault.received, 1, 'the fault: only the first echo of the flow is answered');
  t.true(lab.emulatorStats().redirected >= PINGS - 1, `peer-redirected toward netkit: ${lab.emulatorStats().redirected}`);
  fact('fault', `${fault.received}/${PINGS}`);

  for (const mode of ['tcx', 'clsact']) {
    const attach = await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root, '--mode', mode]);
    t.is(attach.code, 0, attach.stderr);
    t.regex(attach.stdout, new RegExp(`attached fixup on eth0-nic \\(ingress\\) in ${vm.podNs.path} \\(${mode}\\)`));
    t.true(attach.stdout.includes(`guest ${vm.podIp} at ${vm.guestMac}`) && attach.stdout.includes(`via ${nk.primary.name} (ifindex ${nk.primary.ifindex})`), attach.stdout);
    t.regex(attach.stderr, new RegExp(`${nk.primary.name} is a netkit device, .*: accelerate mode leaves ${vm.podIp.replace(/\./g, '\\.')} to the kernel path`));
    const fixed = await lab.ping(lab.client, vm.podIp, FAST);
    t.is(fixed.received, PINGS, `${mode}: every echo answered`);
    fact(`fixed_${mode}`, `${fixed.received}/${PINGS}`);
    if (mode === 'tcx') t.is((await vmpeer(node, ['detach', '--netns', vm.podNs.name, '--bpffs', root])).code, 0);
  }
  // the clsact filter and the endpoint go with the lab's netns and the test's bpffs root (teardown)
});
