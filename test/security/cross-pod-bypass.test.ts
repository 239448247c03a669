/**
 * The bridge bypass stays inside the pod an endpoint belongs to. Two VM pods
 * built the same way have the same ifindexes (tap0, eth0-nic), so a check of
 * ifindexes alone lets guest A, forging guest B's IP and MAC, have its frames
 * sent past its bridge as B's (and counted as B's), and lets frames for B
 * that arrive at A's uplink be bypassed into A's guest. Each pod with the
 * bypass runs its own instances of fixup and from_guest, which act only on
 * that pod's endpoints.
 *
 * With A's guest port disabled on A's bridge, the bridge carries nothing to
 * or from A's guest: whatever still gets through was bypassed.
 */
import test from 'ava';
import { VM_TAP } from '../../lib/lab/addressing.js';
import { runIn } from '../../lib/lab/exec.js';
import type { LabVm } from '../../lib/lab/index.js';
import type { NetnsRef } from '../../lib/lab/netns.js';
import { native } from '../../lib/native.js';
import { ETH_P_IP, IPPROTO_ICMP, ether, icmpEcho, internetChecksum, ipv4 } from '../../lib/testkit/packets.js';
import { vmpeer } from '../../lib/testkit/cli.js';
import { State } from '../helpers/daemon.js';
import { sendFrames } from '../helpers/frames-io.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir, type Netns } from '../helpers/netns.js';

const FRAMES = 20;
const ECHO_ID = 0x5c0e;

/** An ICMP echo reply nobody asked for: nothing on the way or at its end answers it (an error to B's IP would move B's counters). */
function unsolicitedReply(src: string, dst: string): Buffer {
  const icmp = icmpEcho(ECHO_ID, 1, Buffer.from('sent by guest A'));
  icmp[0] = 0; // echo reply
  icmp.writeUInt16BE(0, 2);
  icmp.writeUInt16BE(internetChecksum(icmp), 2);
  return ipv4({ src, dst, protocol: IPPROTO_ICMP }, icmp);
}

const guestPort = (vm: LabVm, state: 'disabled' | 'forwarding') =>
  runIn(vm.podNs.path, 'bridge', ['link', 'set', 'dev', VM_TAP, 'state', state === 'disabled' ? '0' : '3']);

test("bridge bypass: guest A forging guest B stays on A's bridge, B's counters do not move; frames for B at A's uplink are not bypassed into A's guest", async (t) => {
  const l = await lab(t, { vmPods: 2, plainPods: 0 });
  const [a, b] = [l.vms[0]!, l.vms[1]!];
  const node = l.node.ns.path;
  const root = `${bpffsDir(t)}/vmpeer`;
  const bpffs = ['--bpffs', root];
  const n = native();
  t.teardown(async () => {
    await guestPort(a, 'forwarding').catch(() => undefined);
    for (const vm of l.vms) await vmpeer(node, ['detach', '--netns', vm.podNs.name, ...bpffs]);
  });

  // what makes the attack possible: ifindexes cannot tell the pods apart
  t.is(n.ifindex(a.podNs.path, VM_TAP), n.ifindex(b.podNs.path, VM_TAP), 'the same guest port ifindex in both pods');
  t.is(n.ifindex(a.podNs.path, a.nic.name), n.ifindex(b.podNs.path, b.nic.name), 'the same uplink ifindex in both pods');

  for (const vm of l.vms) {
    await l.ping(l.client, vm.podIp, { count: 1 }); // the guest answers: its bridge learns its MAC
    const r = await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bypass-bridge', ...bpffs]);
    t.is(r.code, 0, r.stderr);
  }
  const state = new State(t, root);
  const epB = state.dp.endpoint(b.podIp)!;
  t.truthy(epB.bypass, "B's endpoint asks for the bypass");
  const countersB = () => state.dp.endpoint(b.podIp)!.counters;

  // guest A sends as B: B's IP and MAC, to the gateway MAC B's endpoint expects (Calico's is the same on every veth)
  const forged = ether(epB.gatewayMac, b.guestMac, ETH_P_IP, unsolicitedReply(b.podIp, l.client.ip));
  const fromGuestA = async (at: { ns: NetnsRef; ifname: string }) => {
    const cap = await l.capture(at.ns, at.ifname, `icmp and src host ${b.podIp}`);
    sendFrames({ path: a.guestNs!.path } as Netns, 'eth0', Array(FRAMES).fill(forged));
    await new Promise((r) => setTimeout(r, 300));
    return (await cap.stop()).length;
  };

  const before = countersB();
  await guestPort(a, 'disabled');
  t.is(await fromGuestA({ ns: l.node.ns, ifname: a.hostVeth.name }), 0, "with A's guest port disabled, no forged frame reaches the node: none was sent past A's bridge");
  await guestPort(a, 'forwarding');
  t.is(await fromGuestA({ ns: a.podNs, ifname: a.nic.name }), FRAMES, "with it forwarding, every forged frame leaves through A's bridge (its uplink's egress)");
  t.deepEqual(countersB(), before, "B's counters do not move");

  // frames for B's IP arriving at A's uplink (sent into A's host veth on the node)
  const forB = ether(a.nic.mac, a.hostVeth.mac, ETH_P_IP, unsolicitedReply(l.client.ip, b.podIp));
  await guestPort(a, 'disabled');
  const cap = await l.capture(a.guestNs!, 'eth0', `icmp and dst host ${b.podIp}`);
  sendFrames({ path: node } as Netns, a.hostVeth.name, Array(FRAMES).fill(forB));
  await new Promise((r) => setTimeout(r, 300));
  t.is((await cap.stop()).length, 0, "no frame for B is bypassed into A's guest");
  t.is(countersB().bypassedIn, before.bypassedIn, "B's bypassed_in does not move");

  // B itself keeps its bypass: its guest is reached with its own guest port disabled
  await guestPort(b, 'disabled');
  t.teardown(() => guestPort(b, 'forwarding').catch(() => undefined));
  t.is((await l.ping(l.client, b.podIp, { count: 5, intervalMs: 20, waitS: 1 })).received, 5, "B's own traffic still skips B's bridge");
  t.true(countersB().bypassedIn >= before.bypassedIn + 5n && countersB().bypassedOut >= before.bypassedOut + 5n, JSON.stringify(countersB(), (_, v) => (typeof v === 'bigint' ? String(v) : v)));
});
