/**
 * `fixup` on a real bridge port, for the frames BPF_PROG_TEST_RUN cannot
 * carry: since Linux 6.x it refuses IPv4 frames shorter than an IP header and
 * IPv6 frames shorter than an IPv6 header, but such frames do reach tc
 * ingress on a real interface.
 *
 *   netns "node" a0 ──veth── b0 [fixup] ─ bridge br0 ─ b1 ──veth── c0 netns "guest"
 */
import test from 'ava';
import { BpfObject } from '../../lib/bpf/object.js';
import { OBJECT_PATH } from '../../lib/dataplane/dataplane.js';
import { decodeStats, encodeStatKey } from '../../lib/dataplane/codec.js';
import { EndpointTable } from '../../lib/dataplane/endpoint-table.js';
import { STAT_NAMES } from '../../lib/dataplane/layout.js';
import { macToBytes } from '../../lib/validate.js';
import { CLIENT4, CLIENT6, CLIENT_MAC, GATEWAY_MAC, GUEST4, GUEST6, GUEST_MAC } from '../helpers/bpf.js';
import { netns, veth } from '../helpers/netns.js';
import { capture, sendFrames } from '../helpers/frames-io.js';
import { ETH_P_IP, ETH_P_IPV6, ether, frames } from '../../lib/testkit/packets.js';

test('truncated IP headers pass unchanged on a live port; mis-addressed frames are fixed', async (t) => {
  const node = netns(t, 'nd');
  const pod = netns(t, 'pd');
  const guest = netns(t, 'gs');
  veth(t, { ns: node, name: 'a0' }, { ns: pod, name: 'b0' });
  veth(t, { ns: pod, name: 'b1' }, { ns: guest, name: 'c0', mac: GUEST_MAC });
  pod.ip('link', 'add', 'br0', 'type', 'bridge');
  pod.ip('link', 'set', 'b0', 'master', 'br0');
  pod.ip('link', 'set', 'b1', 'master', 'br0');
  pod.run('bridge', ['link', 'set', 'dev', 'b0', 'learning', 'off']);
  pod.ip('link', 'set', 'br0', 'up');
  for (const ns of [node, pod, guest]) ns.run('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
  // br_netfilter (built into this kernel) would validate and drop truncated IP headers in the bridge
  pod.run('sysctl', ['-qew', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0']);

  const obj = BpfObject.open(OBJECT_PATH);
  t.teardown(() => obj.close());
  for (const ip of [GUEST4, GUEST6]) {
    EndpointTable.of(obj.maps).set({ guestIp: ip, guestMac: GUEST_MAC, gatewayMac: GATEWAY_MAC, hostIfindex: 0, redirect: false });
  }
  const link = obj.program('fixup').attach({ netns: pod.path, ifname: 'b0', hook: 'ingress' });
  t.teardown(() => link.detach());

  const truncated4 = ether(GUEST_MAC, CLIENT_MAC, ETH_P_IP, Buffer.from('45000054abcd4000400112', 'hex'));
  const truncated6 = ether(GUEST_MAC, CLIENT_MAC, ETH_P_IPV6, Buffer.alloc(39, 0x60));
  const misaddressed = frames('02:00:00:00:00:99', CLIENT_MAC, CLIENT4, GUEST4).udp!;
  const misaddressed6 = frames('02:00:00:00:00:99', CLIENT_MAC, CLIENT6, GUEST6).tcp!;

  const got = await capture(guest, 'c0', 1000, () => sendFrames(node, 'a0', [truncated4, truncated6, misaddressed, misaddressed6]));
  const has = (f: Buffer) => got.some((g) => g.equals(f));
  const fixed = (f: Buffer) => Buffer.concat([macToBytes(GUEST_MAC), macToBytes(GATEWAY_MAC), f.subarray(12)]);

  t.true(has(truncated4), 'truncated IPv4 header arrived unchanged');
  t.true(has(truncated6), 'truncated IPv6 header arrived unchanged');
  t.true(has(fixed(misaddressed)), 'IPv4 frame arrived re-addressed to the guest');
  t.true(has(fixed(misaddressed6)), 'IPv6 frame arrived re-addressed to the guest');
  const stats = decodeStats(STAT_NAMES.map((_, slot) => obj.map('stats').lookup(encodeStatKey(slot)) ?? []));
  t.is(stats.passMalformed, 2n);
  t.is(stats.fixed, 2n);
});
