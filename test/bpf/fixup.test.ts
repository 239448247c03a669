/**
 * `fixup` on built frames (BPF_PROG_TEST_RUN): frames for a known guest that
 * carry another destination MAC are re-addressed; everything else passes
 * byte-for-byte unchanged, and every outcome is counted.
 */
import test from 'ava';
import {
  CLIENT4, CLIENT6, CLIENT_MAC, GATEWAY_MAC, GUEST4, GUEST6, GUEST_MAC, NODE_MAC, TC_ACT_UNSPEC, fixture, statDelta,
} from '../helpers/bpf.js';
import {
  ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_UDP, arpRequest, ether, frames, icmpEcho, ipv4, ipv4HeaderChecksumOk,
  ipv6, l4ChecksumOk, udp, vlan,
} from '../../lib/testkit/packets.js';
import { macToBytes } from '../../lib/validate.js';

const readdressed = (frame: Buffer) => Buffer.concat([macToBytes(GUEST_MAC), macToBytes(GATEWAY_MAC), frame.subarray(12)]);

for (const [family, client, guest] of [['IPv4', CLIENT4, GUEST4], ['IPv6', CLIENT6, GUEST6]] as const) {
  for (const [proto, frame] of Object.entries(frames(NODE_MAC, CLIENT_MAC, client, guest))) {
    test(`${family} ${proto} with the node's MAC is re-addressed to the guest`, (t) => {
      const f = fixture(t);
      let out!: { retval: number; data: Buffer };
      t.deepEqual(statDelta(f, () => (out = f.run('fixup', frame))), { fixed: 1n });
      t.is(out.retval, TC_ACT_UNSPEC);
      t.deepEqual(out.data, readdressed(frame));
      t.true(l4ChecksumOk(out.data), 'L3/L4 untouched, checksums still valid');
      t.deepEqual(f.counters(guest), { fixed: 1n, redirected: 0n, passed: 0n, bypassedIn: 0n, bypassedOut: 0n });
    });

    test(`${family} ${proto} already addressed to the guest passes unchanged`, (t) => {
      const f = fixture(t);
      const correct = readdressed(frame);
      let out!: { retval: number; data: Buffer };
      t.deepEqual(statDelta(f, () => (out = f.run('fixup', correct))), { passAddressed: 1n });
      t.is(out.retval, TC_ACT_UNSPEC);
      t.deepEqual(out.data, correct);
      t.deepEqual(f.counters(guest), { fixed: 0n, redirected: 0n, passed: 1n, bypassedIn: 0n, bypassedOut: 0n });
    });
  }

  test(`${family} to an unknown IP passes unchanged`, (t) => {
    const f = fixture(t);
    const other = family === 'IPv4' ? '198.18.1.99' : '2001:db8::99';
    const frame = frames(NODE_MAC, CLIENT_MAC, client, other).tcp!;
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('fixup', frame))), { passUnknown: 1n });
    t.is(out.retval, TC_ACT_UNSPEC);
    t.deepEqual(out.data, frame);
  });
}

test('the seed case: a TTL-63 echo request after a peer redirect is fixed, TTL untouched', (t) => {
  const f = fixture(t);
  const frame = frames(NODE_MAC, CLIENT_MAC, CLIENT4, GUEST4, 63).icmp!;
  const out = f.run('fixup', frame);
  t.deepEqual(out.data, readdressed(frame));
  t.is(out.data[14 + 8], 63);
  t.true(ipv4HeaderChecksumOk(out.data));
});

test('IPv4 with options is re-addressed, options intact', (t) => {
  const f = fixture(t);
  const options = Buffer.from([0x94, 0x04, 0x00, 0x00]); // router alert
  const frame = ether(NODE_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: CLIENT4, dst: GUEST4, protocol: IPPROTO_ICMP, options }, icmpEcho(1, 1, Buffer.alloc(8))));
  const out = f.run('fixup', frame);
  t.deepEqual(out.data, readdressed(frame));
});

test('IPv4 fragments are re-addressed: every fragment carries the guest IP', (t) => {
  const f = fixture(t);
  for (const fragOff of [0x2000 /* first, MF */, 0x0010 /* last, offset 128 */]) {
    const frame = ether(NODE_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: CLIENT4, dst: GUEST4, protocol: IPPROTO_UDP, fragOff }, Buffer.alloc(64, 7)));
    t.deepEqual(f.run('fixup', frame).data, readdressed(frame));
  }
  t.is(f.counters(GUEST4).fixed, 2n);
});

const untouched: [string, Buffer, string][] = [
  ['ARP request (broadcast)', arpRequest(CLIENT_MAC, CLIENT4, GUEST4), 'passNotUnicast'],
  [
    'ARP reply (unicast)',
    (() => {
      const a = arpRequest(CLIENT_MAC, CLIENT4, GUEST4);
      macToBytes(GUEST_MAC).copy(a, 0);
      return a;
    })(),
    'passNotIp',
  ],
  ['IPv4 broadcast', frames('ff:ff:ff:ff:ff:ff', CLIENT_MAC, CLIENT4, GUEST4).udp!, 'passNotUnicast'],
  ['IPv4 multicast MAC', frames('01:00:5e:00:00:01', CLIENT_MAC, CLIENT4, GUEST4).udp!, 'passNotUnicast'],
  ['IPv6 multicast MAC', frames('33:33:00:00:00:01', CLIENT_MAC, CLIENT6, GUEST6).icmp!, 'passNotUnicast'],
  [
    'VLAN-tagged IPv4 to the guest',
    ether(NODE_MAC, CLIENT_MAC, ETH_P_8021Q, vlan(100, ETH_P_IP, ipv4({ src: CLIENT4, dst: GUEST4, protocol: IPPROTO_UDP }, udp(CLIENT4, GUEST4, 1, 2, Buffer.alloc(4))))),
    'passNotIp',
  ],
  // (IP headers shorter than 20/40 bytes: BPF_PROG_TEST_RUN refuses them, live.test.ts sends them on a real port)
  [
    'IPv4 with IHL 4',
    (() => {
      const fr = Buffer.from(frames(NODE_MAC, CLIENT_MAC, CLIENT4, GUEST4).icmp!);
      fr[14] = 0x44;
      return fr;
    })(),
    'passMalformed',
  ],
  [
    'IPv6 EtherType carrying an IPv4 header',
    (() => {
      const fr = Buffer.from(frames(NODE_MAC, CLIENT_MAC, CLIENT6, GUEST6).icmp!);
      fr[14] = 0x45;
      return fr;
    })(),
    'passMalformed',
  ],
  ['unknown EtherType', ether(NODE_MAC, CLIENT_MAC, 0x88b5, Buffer.alloc(46, 1)), 'passNotIp'],
  ['IPv6 header, no payload', ether(NODE_MAC, CLIENT_MAC, ETH_P_IPV6, ipv6({ src: CLIENT6, dst: GUEST6, nextHeader: 59 }, Buffer.alloc(0))), 'fixed'],
];

for (const [name, frame, stat] of untouched.filter(([, , s]) => s !== 'fixed')) {
  test(`passes unchanged: ${name}`, (t) => {
    const f = fixture(t);
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('fixup', frame))), { [stat]: 1n });
    t.is(out.retval, TC_ACT_UNSPEC);
    t.deepEqual(out.data, frame);
    t.deepEqual(f.counters(GUEST4), { fixed: 0n, redirected: 0n, passed: 0n, bypassedIn: 0n, bypassedOut: 0n });
  });
}

test('a bare IPv6 header to the guest (no next header) is still re-addressed', (t) => {
  const f = fixture(t);
  const frame = untouched.find(([, , s]) => s === 'fixed')![1];
  t.deepEqual(f.run('fixup', frame).data, readdressed(frame));
});

test('frames of 0-13 bytes never reach a tc program: the kernel refuses them', (t) => {
  // at tc ingress every skb has been through eth_type_trans(), which pulls 14 bytes
  const f = fixture(t);
  for (let len = 0; len < 14; len++) {
    const err = t.throws(() => f.run('fixup', Buffer.alloc(len, 0x02)));
    t.regex(err!.message, /EINVAL/);
  }
});

test('an Ethernet header with an IPv4 EtherType and 20 bytes of garbage is malformed, unchanged', (t) => {
  const f = fixture(t);
  const frame = ether(NODE_MAC, CLIENT_MAC, ETH_P_IP, Buffer.alloc(20, 0xff));
  let out!: { retval: number; data: Buffer };
  t.deepEqual(statDelta(f, () => (out = f.run('fixup', frame))), { passMalformed: 1n });
  t.deepEqual(out.data, frame);
});

test('a custom guest MAC (VMI macAddress) is what frames are addressed to', (t) => {
  const custom = '02:aa:bb:cc:dd:ee';
  const f = fixture(t, [{ guestIp: GUEST4, guestMac: custom }]);
  const frame = frames(NODE_MAC, CLIENT_MAC, CLIENT4, GUEST4).tcp!;
  const out = f.run('fixup', frame);
  t.deepEqual(out.data.subarray(0, 6), macToBytes(custom));
  // a frame addressed to the pod's original (dummy) MAC is also re-addressed
  const toDummy = Buffer.concat([macToBytes(GUEST_MAC), frame.subarray(6)]);
  t.deepEqual(f.run('fixup', toDummy).data.subarray(0, 6), macToBytes(custom));
});
