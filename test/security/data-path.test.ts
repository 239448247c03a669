/**
 * Data path edges on live ports. A frame of another VLAN for a guest's IP is
 * not the guest's: `redirect` passes it untouched. The kernel pulls a VLAN tag
 * out of the frame into skb metadata (skb_vlan_untag() in
 * __netif_receive_skb_core()) before tc ingress runs, on any device, so over a
 * plain veth the program sees vlan_present with the inner IPv4 header; that is
 * the case this test builds (BPF_PROG_TEST_RUN cannot set vlan_present).
 */
import test from 'ava';
import { capture, sendFrames } from '../helpers/frames-io.js';
import type { Netns } from '../helpers/netns.js';
import { ETH_P_8021Q, IPPROTO_ICMP, ether, icmpEcho, ipv4 } from '../helpers/packets.js';
import { vmpeer } from '../helpers/cli.js';
import { State } from '../helpers/daemon.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';

test("accelerate: a VLAN-tagged frame for a guest's IP is passed untouched, never redirected", async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 0, emulator: false });
  const vm = l.vms[0]!;
  const node = l.node.ns.path;
  const root = `${bpffsDir(t)}/vmpeer`;
  const bpffs = ['--bpffs', root];
  t.teardown(async () => {
    await vmpeer(node, ['detach', '--accelerate', '--host-dev', l.node.uplink.name, ...bpffs]);
    await vmpeer(node, ['detach', '--netns', vm.podNs.name, ...bpffs]);
  });
  await l.ping(l.client, vm.podIp, { count: 1 });
  t.is((await vmpeer(node, ['attach', '--netns', vm.podNs.name, ...bpffs])).code, 0);
  t.is((await vmpeer(node, ['attach', '--accelerate', '--host-dev', l.node.uplink.name, ...bpffs])).code, 0);
  const state = new State(t, root);
  t.is((await l.ping(l.client, vm.podIp, { count: 5, intervalMs: 20 })).received, 5, 'untagged: accelerated');
  const redirected = state.dp.endpoint(vm.podIp)!.counters.redirected;
  t.true(redirected >= 5n);

  // the client sends echo requests to the guest's IP on VLAN 7 of the same wire (raw frames:
  // the lab's kernels may have no 8021q module; the receiving side needs none to untag)
  const icmp = ipv4({ src: l.client.ip, dst: vm.podIp, protocol: IPPROTO_ICMP }, icmpEcho(7, 1, Buffer.alloc(32)));
  const tag = Buffer.from([0x00, 0x07, 0x08, 0x00]); // TCI: VLAN 7; inner EtherType IPv4
  const frame = ether(l.node.uplink.mac, l.client.iface.mac, ETH_P_8021Q, Buffer.concat([tag, icmp]));
  const before = state.dp.stats().passNotIp;
  const atGuest = await capture({ path: vm.guestNs!.path } as Netns, 'eth0', 300, () => sendFrames({ path: l.client.ns.path } as Netns, l.client.iface.name, Array(5).fill(frame)));
  t.is(atGuest.filter((f) => f.includes(icmp.subarray(20))).length, 0, "none reaches the guest");
  t.is(state.dp.endpoint(vm.podIp)!.counters.redirected, redirected, 'none redirected');
  t.true(state.dp.stats().passNotIp >= before + 5n, 'passed as VLAN-tagged');
});
