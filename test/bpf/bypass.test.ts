/**
 * The bridge bypass on built frames (BPF_PROG_TEST_RUN, which runs programs
 * on loopback, ifindex 1): `fixup` sends frames for a bypassed guest to the
 * guest port only when they arrive on the pod's uplink, and `from_guest`
 * sends only the guest's own unicast IP frames to its gateway into the host
 * veth. Both only in the guest's own pod: the programs run as POD's own
 * instances (vmpeer_pod), and another pod's instance, or the shared fixup,
 * never takes the bypass. Everything else takes the bridge, unchanged.
 */
import test from 'ava';
import {
  CLIENT4, CLIENT6, CLIENT_MAC, GATEWAY_MAC, GUEST4, GUEST6, GUEST_MAC, NODE_MAC, TC_ACT_REDIRECT, TC_ACT_UNSPEC, fixture, statDelta,
} from '../helpers/bpf.js';
import { arpRequest, frames } from '../../lib/testkit/packets.js';
import { macToBytes } from '../../lib/validate.js';

const LOOPBACK = 1;
const BRIDGE_MAC = '02:00:00:00:00:fe'; // KubeVirt's DHCP server answers on the bridge's MAC
const here = { uplinkIfindex: LOOPBACK, guestIfindex: LOOPBACK };
const POD = 4026530001; // the netns inode of the guest's pod
const OTHER_POD = 4026530002; // an identically built pod: the same ifindexes
const elsewhere = { uplinkIfindex: 99, guestIfindex: 98 }; // another pod's ports: ifindexes are per netns
const counters = (c: Partial<Record<'fixed' | 'passed' | 'bypassedIn' | 'bypassedOut', bigint>>) => ({
  fixed: 0n, redirected: 0n, passed: 0n, bypassedIn: 0n, bypassedOut: 0n, ...c,
});
const readdressed = (frame: Buffer) => Buffer.concat([macToBytes(GUEST_MAC), macToBytes(GATEWAY_MAC), frame.subarray(12)]);

for (const [family, client, guest] of [['IPv4', CLIENT4, GUEST4], ['IPv6', CLIENT6, GUEST6]] as const) {
  const toGuest = frames(NODE_MAC, CLIENT_MAC, client, guest).tcp!;
  const fromGuest = frames(GATEWAY_MAC, GUEST_MAC, guest, client).tcp!;

  test(`${family}: fixup re-addresses a frame for a bypassed guest and sends it to the guest port`, (t) => {
    const f = fixture(t, [{ guestIp: guest, bypass: here, podNetns: POD }]);
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('fixup', toGuest, 1, POD))), { fixed: 1n });
    t.is(out.retval, TC_ACT_REDIRECT);
    t.deepEqual(out.data, readdressed(toGuest));
    t.deepEqual(f.counters(guest), counters({ fixed: 1n, bypassedIn: 1n }));
  });

  test(`${family}: fixup sends a frame already addressed to a bypassed guest to the guest port unchanged`, (t) => {
    const f = fixture(t, [{ guestIp: guest, bypass: here, podNetns: POD }]);
    const correct = readdressed(toGuest);
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('fixup', correct, 1, POD))), { passAddressed: 1n });
    t.is(out.retval, TC_ACT_REDIRECT);
    t.deepEqual(out.data, correct);
    t.deepEqual(f.counters(guest), counters({ bypassedIn: 1n }));
  });

  test(`${family}: fixup leaves the bypass alone on a port that is not the guest's uplink`, (t) => {
    const f = fixture(t, [{ guestIp: guest, bypass: elsewhere, podNetns: POD }]);
    const out = f.run('fixup', toGuest, 1, POD);
    t.is(out.retval, TC_ACT_UNSPEC);
    t.deepEqual(out.data, readdressed(toGuest));
    t.deepEqual(f.counters(guest), counters({ fixed: 1n }));
  });

  test(`${family}: from_guest sends the guest's frame to its gateway into the host veth, unchanged`, (t) => {
    const f = fixture(t, [{ guestIp: guest, bypass: here, podNetns: POD }]);
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('from_guest', fromGuest, 1, POD))), { bypassedOut: 1n });
    t.is(out.retval, TC_ACT_REDIRECT);
    t.deepEqual(out.data, fromGuest);
    t.deepEqual(f.counters(guest), counters({ bypassedOut: 1n }));
  });

  test(`${family}: another pod's fixup, or the shared one, re-addresses a frame for the guest but never sends it to the guest port`, (t) => {
    const f = fixture(t, [{ guestIp: guest, bypass: here, podNetns: POD }]);
    for (const pod of [OTHER_POD, 0]) {
      const out = f.run('fixup', toGuest, 1, pod);
      t.is(out.retval, TC_ACT_UNSPEC, `instance of pod ${pod}`);
      t.deepEqual(out.data, readdressed(toGuest));
    }
    t.deepEqual(f.counters(guest), counters({ fixed: 2n }));
  });

  test(`${family}: another pod's from_guest leaves a frame forging the guest (its IP and MAC) to that pod's bridge`, (t) => {
    const f = fixture(t, [{ guestIp: guest, bypass: here, podNetns: POD }]);
    let out!: { retval: number; data: Buffer };
    t.deepEqual(statDelta(f, () => (out = f.run('from_guest', fromGuest, 1, OTHER_POD))), { passNoBypass: 1n });
    t.is(out.retval, TC_ACT_UNSPEC);
    t.deepEqual(out.data, fromGuest);
    t.deepEqual(f.counters(guest), counters({}), "the guest's counters do not move");
  });

  const stays: [string, Buffer, (typeof here) | null, string][] = [
    ['to the bridge (DHCP server)', frames(BRIDGE_MAC, GUEST_MAC, guest, client).udp!, here, 'passNotGateway'],
    ['from another MAC', frames(GATEWAY_MAC, '02:66:66:66:66:66', guest, client).tcp!, here, 'passNotGateway'],
    ['of a guest without the bypass', fromGuest, null, 'passNoBypass'],
    ['on a port that is not the guest port', fromGuest, elsewhere, 'passNoBypass'],
    ['from an unknown IP', frames(GATEWAY_MAC, GUEST_MAC, family === 'IPv4' ? '198.18.1.99' : '2001:db8::99', client).tcp!, here, 'passUnknown'],
    ['broadcast', frames('ff:ff:ff:ff:ff:ff', GUEST_MAC, guest, client).udp!, here, 'passNotUnicast'],
  ];
  for (const [name, frame, bypass, stat] of stays) {
    test(`${family}: from_guest leaves a frame ${name} to the bridge`, (t) => {
      const f = fixture(t, [{ guestIp: guest, bypass, podNetns: POD }]);
      let out!: { retval: number; data: Buffer };
      t.deepEqual(statDelta(f, () => (out = f.run('from_guest', frame, 1, POD))), { [stat]: 1n });
      t.is(out.retval, TC_ACT_UNSPEC);
      t.deepEqual(out.data, frame);
      t.deepEqual(f.counters(guest), counters({}));
    });
  }
}

test('from_guest leaves ARP to the bridge', (t) => {
  const f = fixture(t, [{ guestIp: GUEST4, bypass: here, podNetns: POD }]);
  const reply = arpRequest(GUEST_MAC, GUEST4, CLIENT4);
  macToBytes(GATEWAY_MAC).copy(reply, 0);
  t.deepEqual(statDelta(f, () => t.is(f.run('from_guest', reply, 1, POD).retval, TC_ACT_UNSPEC)), { passNotIp: 1n });
});
