/**
 * Frame identity: what the guest receives on vmpeer's paths is byte for byte
 * what the kernel's forwarding path delivers for the same packet, and the
 * fixed frame is classified (pkt_type) on the pod's uplink port as the
 * kernel path's frame is. The pod's bridge is kept (--keep-bridge): the
 * classification is what the bridge acts on, and with the bypass (the
 * default) fixup sends the frame to tap0 before a program after it runs
 * (test/bpf/bypass checks the bypassed frame).
 *
 * One crafted UDP packet is sent from the client three times:
 *   1. the emulated CNI's first packet of the flow: the kernel path;
 *   2. an established packet: peer-redirected by the CNI, fixed by vmpeer;
 *   3. CNI emulator off, vmpeer's redirect on the node's uplink (accelerate).
 */
import test from 'ava';
import path from 'node:path';
import { BpfObject } from '../../lib/bpf/object.js';
import { packageRoot } from '../../lib/native.js';
import { Lab } from '../../lib/lab/index.js';
import { bpffsDir } from '../helpers/netns.js';
import { vmpeer } from '../../lib/testkit/cli.js';
import { sendFrames } from '../helpers/frames-io.js';
import { attachForeign } from '../helpers/foreign.js';
import { ETH_P_IP, IPPROTO_UDP, ether, ipv4, udp } from '../../lib/testkit/packets.js';

const PROBE = path.join(packageRoot, 'dist', 'bpf', 'test', 'pkt_type_probe.bpf.o');
const PACKET_OTHERHOST = 3;

test('the fixed and the accelerated frame equal the kernel path frame; pkt_type matches on the uplink port', async (t) => {
  const lab = await Lab.create({ prefix: 'vpt', vmPods: 1, plainPods: 0 });
  t.teardown(() => lab.destroy());
  const vm = lab.vms[0]!;
  const root = bpffsDir(t);
  const node = lab.node.ns.path;

  await lab.ping(lab.client, vm.podIp, { count: 1 }); // the guest answers: the bridge learns its MAC
  const attach = await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--keep-bridge', '--bpffs', root]);
  t.is(attach.code, 0, attach.stderr);
  const probe = BpfObject.open(PROBE);
  t.teardown(() => probe.close());
  attachForeign(t, probe.program('probe'), { netns: vm.podNs.path, ifname: vm.nic.name, hook: 'ingress' }, 'after');

  const id = 0x4a17;
  const payload = Buffer.from('the same packet, three ways');
  const packet = ether(lab.node.uplink.mac, lab.client.iface.mac, ETH_P_IP,
    ipv4({ src: lab.client.ip, dst: vm.podIp, protocol: IPPROTO_UDP, id, ttl: 64 }, udp(lab.client.ip, vm.podIp, 40000, 9, payload)));
  const guestNs = vm.guestNs!;
  const cap = await lab.capture(guestNs, 'eth0', 'udp port 9');
  const send = async () => {
    sendFrames({ path: lab.client.ns.path } as never, lab.client.iface.name, [packet]);
    await new Promise((r) => setTimeout(r, 200));
  };
  await send(); // kernel path
  await send(); // CNI fast path + fixup
  lab.setEmulator(false);
  const accel = await vmpeer(node, ['attach', '--accelerate', '--host-dev', lab.node.uplink.name, '--bpffs', root]);
  t.is(accel.code, 0, accel.stderr);
  t.regex(accel.stderr, /bypasses host netfilter/);
  await send(); // vmpeer redirect
  const frames = (await cap.stop()).map((f) => f.data);

  t.is(frames.length, 3, 'the guest received the packet three times');
  const [kernel, fixed, accelerated] = frames as [Buffer, Buffer, Buffer];
  t.is(kernel[14 + 8], 63, 'the kernel path decremented the TTL');
  t.deepEqual(fixed.toString('hex'), kernel.toString('hex'), 'fixed path frame = kernel path frame');
  t.deepEqual(accelerated.toString('hex'), kernel.toString('hex'), 'accelerated frame = kernel path frame');

  const key = Buffer.alloc(2);
  key.writeUInt16LE(id);
  const seen = probe.map('pkt_types').lookup(key)![0]!.readUInt32LE(0);
  t.is(seen, 1 << PACKET_OTHERHOST, 'every arrival at the uplink port was PACKET_OTHERHOST, as the kernel path classifies it');
  t.true(lab.emulatorStats().redirected >= 1, 'packet 2 took the CNI fast path');

  for (const args of [['detach', '--accelerate', '--host-dev', lab.node.uplink.name], ['detach', '--netns', vm.podNs.name]]) {
    t.is((await vmpeer(node, [...args, '--bpffs', root])).code, 0);
  }
});
