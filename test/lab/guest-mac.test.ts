/**
 * A VMI with its own macAddress (guest MAC ≠ the pod's dummy MAC) fails the
 * same way, and a capture at the guest shows why: frames of the fast path
 * arrive addressed to a MAC that is not the guest's (routed, one hop taken,
 * but with the Ethernet header untouched), the kernel path's frame to the
 * guest's MAC.
 */
import test from 'ava';
import { type Lab, parsePcap } from '../../lib/lab/index.js';
import { lab } from '../helpers/lab.js';

const GUEST_MAC = '52:54:00:c0:ff:ee';
const N = 6;
const ICMP = 1;

async function echoRequestsAtGuest(l: Lab, from: 'client' | 'pod') {
  const vm = l.vms[0]!;
  const src = from === 'client' ? l.client : l.plain[0]!;
  const cap = await l.capture(vm.guestNs!, 'eth0', `icmp and dst host ${vm.podIp}`);
  const ping = await l.ping(src, vm.podIp, { count: N });
  const frames = (await cap.stop()).filter((f) => f.ipv4?.protocol === ICMP && f.data[34] === 8);
  return { ping, frames, src };
}

test('custom guest MAC: the fault is the same, fast-path frames reach the guest mis-addressed', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 1, guestMacs: [GUEST_MAC] });
  const vm = l.vms[0]!;
  t.is(vm.guestMac, GUEST_MAC);
  t.not(vm.dummyMac, GUEST_MAC);

  const { ping, frames } = await echoRequestsAtGuest(l, 'client');
  t.deepEqual(ping.replies, [0], 'ping 1 of N');
  t.is(frames.length, N, 'every echo request reached the guest interface');
  const [first, ...rest] = frames;
  t.is(first!.dst, GUEST_MAC, 'kernel path: addressed to the guest by the neighbour table');
  t.is(first!.src, vm.hostVeth.mac, '... from the gateway (the host veth)');
  t.is(first!.ipv4!.ttl, 63, '... one hop taken');
  for (const f of rest) {
    t.not(f.dst, GUEST_MAC, 'fast path: not addressed to the guest');
    t.is(f.dst, l.node.uplink.mac, "fast path: still addressed to the node's uplink");
    t.is(f.src, l.client.iface.mac);
    t.is(f.ipv4!.ttl, 63, 'fast path: routed, one hop taken, as the kernel path');
  }

  const e = await l.tcpEcho(l.client, vm.podIp, 'custom mac', { timeoutMs: 1000 });
  t.true(e.connected);
  t.false(e.echoed);
});

test('custom guest MAC from an on-node client pod: fast-path frames carry the gateway MAC as destination', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 1, guestMacs: [GUEST_MAC] });
  const { ping, frames } = await echoRequestsAtGuest(l, 'pod');
  t.deepEqual(ping.replies, [0]);
  t.is(frames.length, N);
  t.is(frames[0]!.dst, GUEST_MAC);
  for (const f of frames.slice(1)) {
    t.is(f.dst, 'ee:ee:ee:ee:ee:ee', "the client pod's frame, addressed to its own gateway");
    t.is(f.src, l.plain[0]!.iface.mac);
  }
});

test('custom guest MAC, kernel path: every frame is addressed to the guest and everything works', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 1, guestMacs: [GUEST_MAC], emulator: false });
  const { ping, frames } = await echoRequestsAtGuest(l, 'client');
  t.is(ping.received, N);
  t.is(frames.length, N);
  t.true(frames.every((f) => f.dst === GUEST_MAC && f.ipv4!.ttl === 63));
  t.true((await l.tcpEcho(l.client, l.vms[0]!.podIp, 'ok')).echoed);
});

test('parsePcap reads what tcpdump writes (both byte orders, µs and ns)', (t) => {
  const frame = Buffer.alloc(42);
  Buffer.from([0x52, 0x54, 0, 1, 2, 3, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0x08, 0x00]).copy(frame);
  frame[14] = 0x45;
  frame[22] = 61;
  frame[23] = 1;
  Buffer.from([198, 18, 0, 2, 198, 18, 1, 10]).copy(frame, 26);
  for (const [le, magic] of [[true, 0xa1b2c3d4], [false, 0xa1b2c3d4], [true, 0xa1b23c4d]] as const) {
    const g = Buffer.alloc(24);
    const r = Buffer.alloc(16);
    const w = (b: Buffer, v: number, at: number) => (le ? b.writeUInt32LE(v, at) : b.writeUInt32BE(v, at));
    w(g, magic, 0);
    w(r, 1000, 0);
    w(r, 500, 4);
    w(r, frame.length, 8);
    w(r, frame.length, 12);
    const [f] = parsePcap(Buffer.concat([g, r, frame, r.subarray(0, 5)]));
    t.is(f!.dst, '52:54:00:01:02:03');
    t.is(f!.src, 'ee:ee:ee:ee:ee:ee');
    t.deepEqual(f!.ipv4, { src: '198.18.0.2', dst: '198.18.1.10', ttl: 61, protocol: 1 });
    t.is(f!.time, 1000 + 500 / (magic === 0xa1b23c4d ? 1e9 : 1e6));
  }
});
