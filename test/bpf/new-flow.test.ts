/**
 * `redirect` never peer-redirects the first packet of a flow (BPF_PROG_TEST_RUN):
 * a TCP SYN (and SYN-ACK), a TCP header too short to show its flags, and an
 * IPv6 packet whose transport header sits behind extension headers take the
 * kernel path, where the CNI's policy at the host veth's egress and conntrack
 * see them (Calico #13356). Established TCP, UDP and ICMP are redirected.
 *
 * Cases the kernel does not let a test build here:
 *   - skb->vlan_present: BPF_PROG_TEST_RUN takes no VLAN fields in its ctx
 *     (net/bpf/test_run.c, convert___skb_to_skb), so test/security/data-path
 *     sends a tagged frame over a live veth instead (the kernel untags it into
 *     skb metadata before tc ingress, whatever the offloads).
 *   - CHECKSUM_COMPLETE: test runs build CHECKSUM_NONE skbs and no software
 *     device delivers CHECKSUM_COMPLETE to tc ingress (veth and tap give NONE,
 *     PARTIAL or UNNECESSARY; real NICs such as mlx5 give COMPLETE). The IPv6
 *     hop-limit change adds its delta with bpf_csum_update(), a no-op for every
 *     other ip_summed; what is asserted here is that the frame is otherwise
 *     byte-for-byte the forwarded one.
 */
import test from 'ava';
import { CLIENT4, CLIENT6, CLIENT_MAC, GUEST4, GUEST6, HOST_MAC, TC_ACT_REDIRECT, TC_ACT_UNSPEC, fixture, statDelta } from '../helpers/bpf.js';
import { ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, ether, ipv4, ipv6, tcp, udp } from '../helpers/packets.js';

const SYN = 0x02;
const SYN_ACK = 0x12;
const ACK_PSH = 0x18;

const tcp4 = (flags: number) => ether(HOST_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: CLIENT4, dst: GUEST4, protocol: IPPROTO_TCP }, tcp(CLIENT4, GUEST4, 40000, 80, flags, Buffer.alloc(0))));
const tcp6 = (flags: number) => ether(HOST_MAC, CLIENT_MAC, ETH_P_IPV6, ipv6({ src: CLIENT6, dst: GUEST6, nextHeader: IPPROTO_TCP }, tcp(CLIENT6, GUEST6, 40000, 80, flags, Buffer.alloc(0))));

for (const [family, build] of [['IPv4', tcp4], ['IPv6', tcp6]] as const) {
  for (const [name, flags] of [['SYN', SYN], ['SYN-ACK', SYN_ACK]] as const) {
    test(`${family} TCP ${name} is never peer-redirected: the kernel path, untouched`, (t) => {
      const f = fixture(t);
      const frame = build(flags);
      let out!: { retval: number; data: Buffer };
      t.deepEqual(statDelta(f, () => (out = f.run('redirect', frame))), { passNewFlow: 1n });
      t.is(out.retval, TC_ACT_UNSPEC);
      t.deepEqual(out.data, frame);
      t.is(f.counters(family === 'IPv4' ? GUEST4 : GUEST6).passed, 1n);
    });
  }

  test(`${family} established TCP (ACK) is redirected`, (t) => {
    const f = fixture(t);
    t.is(f.run('redirect', build(ACK_PSH)).retval, TC_ACT_REDIRECT);
  });

  test(`${family} TCP header cut short before its flags: the kernel decides`, (t) => {
    const f = fixture(t);
    const frame = build(ACK_PSH);
    const cut = frame.subarray(0, frame.length - 8); // 12 bytes of the TCP header left
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('redirect', cut))), { passNewFlow: 1n });
    t.deepEqual(out.data, cut);
  });
}

test('IPv4 TCP SYN behind IP options is found (the header length is read)', (t) => {
  const f = fixture(t);
  const options = Buffer.from([0x94, 0x04, 0x00, 0x00]);
  const frame = ether(HOST_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: CLIENT4, dst: GUEST4, protocol: IPPROTO_TCP, options }, tcp(CLIENT4, GUEST4, 40000, 80, SYN, Buffer.alloc(0))));
  t.deepEqual(statDelta(f, () => t.is(f.run('redirect', frame).retval, TC_ACT_UNSPEC)), { passNewFlow: 1n });
});

for (const [name, next] of [['hop-by-hop options', 0], ['routing', 43], ['fragment', 44], ['destination options', 60]] as const) {
  test(`IPv6 with a ${name} header first: not parsed through, so the kernel path`, (t) => {
    const f = fixture(t);
    // an 8-byte extension header leading to UDP
    const ext = Buffer.concat([Buffer.from([IPPROTO_UDP, 0, 0, 0, 0, 0, 0, 0]), udp(CLIENT6, GUEST6, 1, 2, Buffer.alloc(8))]);
    const frame = ether(HOST_MAC, CLIENT_MAC, ETH_P_IPV6, ipv6({ src: CLIENT6, dst: GUEST6, nextHeader: next }, ext));
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('redirect', frame))), { passNewFlow: 1n });
    t.deepEqual(out.data, frame);
  });
}
