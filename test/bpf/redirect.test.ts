/**
 * `redirect` on built frames (BPF_PROG_TEST_RUN): frames to a known guest are
 * forwarded as the kernel would (TTL / hop limit decremented, IPv4 checksum
 * updated, MACs rewritten) and peer-redirected; everything the kernel must
 * see, and everything else, passes unchanged.
 *
 * BPF_PROG_TEST_RUN receives frames on loopback (MAC 00:00:00:00:00:00), so
 * frames "addressed to this host" carry that MAC.
 */
import test from 'ava';
import {
  CLIENT4, CLIENT6, CLIENT_MAC, GATEWAY_MAC, GUEST4, GUEST6, GUEST_MAC, HOST_MAC, NODE_MAC, TC_ACT_REDIRECT, TC_ACT_UNSPEC, fixture, statDelta,
} from '../helpers/bpf.js';
import {
  ETH_P_IP, IPPROTO_ICMP, IPPROTO_UDP, arpRequest, ether, frames, icmpEcho, internetChecksum, ipv4, ipv4HeaderChecksumOk, l4ChecksumOk,
} from '../../lib/testkit/packets.js';
import { macToBytes } from '../../lib/validate.js';

/** What the kernel's forwarding path delivers for `frame`. */
function forwarded(frame: Buffer): Buffer {
  const out = Buffer.concat([macToBytes(GUEST_MAC), macToBytes(GATEWAY_MAC), frame.subarray(12)]);
  if (out.readUInt16BE(12) === 0x0800) {
    out[14 + 8]!--;
    const ihl = (out[14]! & 0xf) * 4;
    out.writeUInt16BE(0, 14 + 10);
    out.writeUInt16BE(internetChecksum(out.subarray(14, 14 + ihl)), 14 + 10);
  } else {
    out[14 + 7]!--;
  }
  return out;
}

for (const [family, client, guest] of [['IPv4', CLIENT4, GUEST4], ['IPv6', CLIENT6, GUEST6]] as const) {
  for (const [proto, frame] of Object.entries(frames(HOST_MAC, CLIENT_MAC, client, guest))) {
    test(`${family} ${proto} to a known guest is forwarded and peer-redirected`, (t) => {
      const f = fixture(t);
      let out!: { retval: number; data: Buffer };
      t.deepEqual(statDelta(f, () => (out = f.run('redirect', frame))), { redirected: 1n });
      t.is(out.retval, TC_ACT_REDIRECT);
      t.deepEqual(out.data, forwarded(frame));
      t.is(family === 'IPv4' ? out.data[14 + 8] : out.data[14 + 7], 63);
      if (family === 'IPv4') t.true(ipv4HeaderChecksumOk(out.data), 'IPv4 header checksum verifies from scratch');
      t.true(l4ChecksumOk(out.data), 'L4 checksum unaffected');
      t.deepEqual(f.counters(guest), { fixed: 0n, redirected: 1n, passed: 0n, bypassedIn: 0n, bypassedOut: 0n });
    });
  }

  for (const ttl of [1, 0]) {
    test(`${family} with TTL/hop limit ${ttl} goes to the kernel untouched (it answers time-exceeded)`, (t) => {
      const f = fixture(t);
      const frame = frames(HOST_MAC, CLIENT_MAC, client, guest, ttl).icmp!;
      let out!: { retval: number; data: Buffer };
      t.deepEqual(statDelta(f, () => (out = f.run('redirect', frame))), { passTtl: 1n });
      t.is(out.retval, TC_ACT_UNSPEC);
      t.deepEqual(out.data, frame);
      t.deepEqual(f.counters(guest), { fixed: 0n, redirected: 0n, passed: 1n, bypassedIn: 0n, bypassedOut: 0n });
    });
  }

  test(`${family} to an unknown IP passes unchanged`, (t) => {
    const f = fixture(t);
    const frame = frames(HOST_MAC, CLIENT_MAC, client, family === 'IPv4' ? '198.18.1.99' : '2001:db8::99').udp!;
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('redirect', frame))), { passUnknown: 1n });
    t.is(out.retval, TC_ACT_UNSPEC);
    t.deepEqual(out.data, frame);
  });

  test(`${family} frames not addressed to this host are left alone`, (t) => {
    const f = fixture(t);
    const frame = frames(NODE_MAC, CLIENT_MAC, client, guest).tcp!;
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('redirect', frame))), { passNotHost: 1n });
    t.deepEqual(out.data, frame);
  });
}

test('TTL 64 → 63: the incremental checksum equals a from-scratch one for many headers', (t) => {
  const f = fixture(t);
  for (let id = 0; id < 2000; id += 1) {
    // vary every header word the checksum covers, including ones that make it wrap
    const frame = ether(HOST_MAC, CLIENT_MAC, ETH_P_IP, ipv4(
      { src: CLIENT4, dst: GUEST4, protocol: IPPROTO_UDP, id: (id * 7919) & 0xffff, tos: id & 0xfc, ttl: 2 + (id % 254) },
      Buffer.alloc(8 + (id % 40)),
    ));
    const out = f.run('redirect', frame);
    t.is(out.retval, TC_ACT_REDIRECT);
    if (!out.data.equals(forwarded(frame))) t.fail(`header ${id}: ${out.data.subarray(14, 34).toString('hex')}`);
  }
  t.pass();
});

test('IPv4 with options is forwarded, checksum over the whole header', (t) => {
  const f = fixture(t);
  const options = Buffer.from([0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00]);
  const frame = ether(HOST_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: CLIENT4, dst: GUEST4, protocol: IPPROTO_ICMP, options }, icmpEcho(1, 1, Buffer.alloc(8))));
  const out = f.run('redirect', frame);
  t.is(out.retval, TC_ACT_REDIRECT);
  t.deepEqual(out.data, forwarded(frame));
  t.true(ipv4HeaderChecksumOk(out.data));
});

for (const [name, fragOff] of [['first fragment (MF)', 0x2000], ['middle fragment', 0x2010], ['last fragment', 0x0010]] as const) {
  test(`IPv4 ${name} goes to the kernel untouched`, (t) => {
    const f = fixture(t);
    const frame = ether(HOST_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: CLIENT4, dst: GUEST4, protocol: IPPROTO_UDP, fragOff }, Buffer.alloc(64, 1)));
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('redirect', frame))), { passFragment: 1n });
    t.deepEqual(out.data, frame);
  });
}

test("DF alone is not a fragment: forwarded", (t) => {
  const f = fixture(t);
  const frame = ether(HOST_MAC, CLIENT_MAC, ETH_P_IP, ipv4({ src: CLIENT4, dst: GUEST4, protocol: IPPROTO_UDP, fragOff: 0x4000 }, Buffer.alloc(16)));
  t.is(f.run('redirect', frame).retval, TC_ACT_REDIRECT);
});

test('an endpoint without redirect (no host veth known) is left to the kernel', (t) => {
  const f = fixture(t, [{ guestIp: GUEST4, redirect: false }, { guestIp: GUEST6, hostIfindex: 0 }]);
  for (const frame of [frames(HOST_MAC, CLIENT_MAC, CLIENT4, GUEST4).tcp!, frames(HOST_MAC, CLIENT_MAC, CLIENT6, GUEST6).tcp!]) {
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('redirect', frame))), { passNoRedirect: 1n });
    t.deepEqual(out.data, frame);
  }
});

test('ARP, broadcast, multicast and malformed frames pass unchanged', (t) => {
  const f = fixture(t);
  const cases: [Buffer, string][] = [
    [arpRequest(CLIENT_MAC, CLIENT4, GUEST4), 'passNotUnicast'],
    [frames('ff:ff:ff:ff:ff:ff', CLIENT_MAC, CLIENT4, GUEST4).udp!, 'passNotUnicast'],
    [frames('33:33:00:00:00:0a', CLIENT_MAC, CLIENT6, GUEST6).udp!, 'passNotUnicast'],
    [ether(HOST_MAC, CLIENT_MAC, ETH_P_IP, Buffer.alloc(20, 0x3f)), 'passMalformed'],
    [ether(HOST_MAC, CLIENT_MAC, 0x8100, Buffer.alloc(60)), 'passNotIp'],
  ];
  for (const [frame, stat] of cases) {
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('redirect', frame))), { [stat]: 1n });
    t.is(out.retval, TC_ACT_UNSPEC);
    t.deepEqual(out.data, frame);
  }
});
