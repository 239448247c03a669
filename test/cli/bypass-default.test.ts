/**
 * What the bridge bypass skips, checked with the bypass on by default (a
 * plain `vmpeer attach --netns`): each exchange below must still work, on
 * real packets, while the guest's unicast IP traffic is bypassed (its
 * counters rise). DHCP from a server on the pod's bridge (KubeVirt's answers
 * on the bridge's address), ARP both ways, IPv6 neighbour discovery and
 * all-nodes multicast, the guest's announcements (gratuitous ARP, unsolicited
 * neighbour advertisement: what a guest sends after a live migration, whose
 * whole course test/lifecycle/migration runs with the default), and what
 * captures on tap0, eth0-nic and k6t-eth0 see.
 * A second guest port: test/cli/bypass, test/daemon/bypass.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { Lab, type LabOptions } from '../../lib/lab/index.js';
import { BRIDGE_IP, GATEWAY_IP, POD_IF, VM_BRIDGE, VM_NIC, VM_TAP } from '../../lib/lab/addressing.js';
import { runIn } from '../../lib/lab/exec.js';
import { bpffsDir } from '../helpers/netns.js';
import { vmpeer } from '../../lib/testkit/cli.js';
import { arpRequest, ether, ETH_P_IPV6, internetChecksum, IPPROTO_ICMPV6, ipv6 } from '../../lib/testkit/packets.js';
import { sendFrames } from '../helpers/frames-io.js';

const PINGS = { count: 10, intervalMs: 20, waitS: 1 };
/** On the bridge device: every frame it forwards too, not just those for the bridge itself. */
const PROMISC = { promiscuous: true };

async function bypassedLab(t: ExecutionContext, options: Partial<LabOptions> = {}) {
  const l = await Lab.create({ prefix: 'vpt', vmPods: 1, plainPods: 0, ...options });
  t.teardown(() => l.destroy());
  const vm = l.vms[0]!;
  const root = bpffsDir(t);
  await l.ping(l.client, vm.podIp, { count: 1 }); // the guest answers: the bridge learns its MAC
  const attach = await vmpeer(l.node.ns.path, ['attach', '--netns', vm.podNs.name, '--bpffs', root]);
  t.is(attach.code, 0, attach.stderr);
  t.regex(attach.stdout, /bridge bypassed: from_guest on tap0/, 'the bypass is the default');
  const counters = async () => {
    const status = JSON.parse((await vmpeer(l.node.ns.path, ['status', '--json', '--bpffs', root])).stdout);
    t.like(status.endpoints[0], { guestIp: vm.podIp, bypass: true, bridgeKept: null });
    return status.endpoints[0].counters as { bypassedIn: number; bypassedOut: number };
  };
  return { l, vm, root, counters };
}

/** The IPv6 link-local address of `dev` in `ns`, once duplicate address detection is done. */
async function linkLocal(ns: string, dev: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { stdout } = await runIn(ns, 'ip', ['-6', '-j', 'addr', 'show', 'dev', dev, 'scope', 'link']);
    const addrs = (JSON.parse(stdout || '[]') as Array<{ addr_info: Array<{ local: string; tentative?: boolean }> }>).flatMap((l) => l.addr_info);
    const ready = addrs.find((a) => !a.tentative);
    if (ready) return ready.local;
    if (Date.now() > deadline) throw new Error(`no link-local address on ${dev} in ${ns}: ${stdout}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function flushNeighbours(ns: string, dev: string): Promise<void> {
  await runIn(ns, 'ip', ['neigh', 'flush', 'dev', dev]);
}

/** The neighbour entry of `ip` on `dev` in `ns` ('' when none). */
async function neighbour(ns: string, dev: string, ip: string): Promise<string> {
  return (await runIn(ns, 'ip', ['neigh', 'show', 'dev', dev, 'to', ip])).stdout.trim();
}

/** Three echoes to `ip` out of `dev` (busybox: the lab's namespaces have no iputils). */
async function ping6(ns: string, dev: string, ip: string): Promise<string> {
  const r = await runIn(ns, 'busybox', ['ping6', '-c', '3', '-i', '0.2', '-w', '5', '-I', dev, ip], { allowFail: true });
  return `${r.stdout}${r.stderr}`;
}

function tmp(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpt-dhcp-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('DHCP: a server on the pod bridge (as KubeVirt runs it) leases the guest its IP with the bypass on', async (t) => {
  const { l, vm, counters } = await bypassedLab(t);
  const guest = vm.guestNs!;
  const dir = tmp(t);
  const conf = path.join(dir, 'udhcpd.conf');
  fs.writeFileSync(
    conf,
    [`interface ${VM_BRIDGE}`, `start ${vm.podIp}`, `end ${vm.podIp}`, `lease_file ${dir}/leases`, `pidfile ${dir}/pid`, `opt router ${GATEWAY_IP}`, 'opt subnet 255.255.255.255', 'opt lease 3600', ''].join('\n'),
  );
  fs.writeFileSync(path.join(dir, 'leases'), '');
  const server = l.spawn(vm.podNs, 'busybox', ['udhcpd', '-f', conf]);
  t.teardown(() => server.kill('SIGKILL'));
  await new Promise((r) => setTimeout(r, 300));
  const onBridge = await l.capture(vm.podNs, VM_BRIDGE, 'udp port 67 or udp port 68', PROMISC);

  const before = await counters();
  // unicast IP traffic meanwhile: the bypass is in use while DHCP talks to the bridge
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count);
  const client = await runIn(guest.path, 'busybox', ['udhcpc', '-i', POD_IF, '-f', '-q', '-n', '-t', '5', '-T', '1', '-s', '/bin/true'], { allowFail: true });
  t.regex(`${client.stdout}${client.stderr}`, new RegExp(`lease of ${vm.podIp.replace(/\./g, '\\.')} obtained.*from ${BRIDGE_IP.replace(/\./g, '\\.')}`), 'the guest got its lease from the server on the bridge');
  const frames = await onBridge.stop();
  t.true(frames.some((f) => f.src === vm.guestMac && f.ipv4?.dst === '255.255.255.255'), 'the guest\'s DHCP requests reached the bridge');
  t.true(frames.some((f) => f.dst === vm.guestMac || f.dst === 'ff:ff:ff:ff:ff:ff'), 'the server\'s answers left on the bridge');
  const after = await counters();
  t.true(after.bypassedIn - before.bypassedIn >= PINGS.count && after.bypassedOut - before.bypassedOut >= PINGS.count, 'the echoes took the bypass');
});

test('ARP both ways and IPv6 neighbour discovery and all-nodes multicast go through the bridge with the bypass on', async (t) => {
  const { l, vm, counters } = await bypassedLab(t, { ipv6: true });
  const guest = vm.guestNs!.path;
  const node = l.node.ns.path;

  // ARP: both neighbour tables emptied, then traffic that needs them
  await flushNeighbours(guest, POD_IF);
  await flushNeighbours(node, vm.hostVeth.name);
  const arp = await l.capture(vm.podNs, VM_BRIDGE, 'arp', PROMISC);
  const before = await counters();
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, 'every echo answered after both ARP caches were flushed');
  t.is((await l.ping(vm.guest!, l.client.ip, PINGS)).received, PINGS.count, 'the guest reaches the client');
  const arpFrames = await arp.stop();
  t.true(arpFrames.some((f) => f.src === vm.guestMac), 'the guest\'s ARP went through the bridge');
  t.true(arpFrames.some((f) => f.dst === vm.guestMac || f.dst === 'ff:ff:ff:ff:ff:ff'), 'ARP for the guest went through the bridge');
  t.regex(await neighbour(guest, POD_IF, GATEWAY_IP), /lladdr ee:ee:ee:ee:ee:ee/, 'the guest resolved its gateway');
  t.regex(await neighbour(node, vm.hostVeth.name, vm.podIp), new RegExp(`lladdr ${vm.guestMac}`), 'the node resolved the guest');
  const after = await counters();
  t.true(after.bypassedIn - before.bypassedIn >= PINGS.count && after.bypassedOut - before.bypassedOut >= 2 * PINGS.count, JSON.stringify({ before, after }));

  // IPv6: neighbour discovery (solicitations to a solicited-node group) and all-nodes multicast
  const guestLl = await linkLocal(guest, POD_IF);
  const hostLl = await linkLocal(node, vm.hostVeth.name);
  await flushNeighbours(guest, POD_IF);
  await flushNeighbours(node, vm.hostVeth.name);
  const nd = await l.capture(vm.podNs, VM_BRIDGE, 'icmp6', PROMISC);
  const unicast = await ping6(node, vm.hostVeth.name, guestLl);
  t.regex(unicast, /3 packets received/, `the node reached the guest's link-local address by neighbour discovery: ${unicast}`);
  const toHost = await ping6(guest, POD_IF, hostLl);
  t.regex(toHost, /3 packets received/, `the guest reached the host veth's link-local address: ${toHost}`);
  const all = { stdout: await ping6(node, vm.hostVeth.name, 'ff02::1') };
  t.true(all.stdout.includes(`from ${guestLl}`), `the guest answered an all-nodes (ff02::1) echo: ${all.stdout}`);
  const ndFrames = await nd.stop();
  const icmp6Type = (f: { data: Buffer }) => (f.data.readUInt16BE(12) === 0x86dd && f.data[20] === 58 ? f.data[54] : -1);
  t.true(ndFrames.some((f) => f.src === vm.guestMac && (icmp6Type(f) === 135 || icmp6Type(f) === 136)), 'the guest\'s neighbour solicitations/advertisements went through the bridge');
  t.true(ndFrames.some((f) => f.dst === '33:33:00:00:00:01'), 'the all-nodes echo was flooded by the bridge');
  t.regex(await neighbour(guest, POD_IF, hostLl), /lladdr ee:ee:ee:ee:ee:ee/);
});

/** The ICMP echoes between the client and the guest in a capture: requests to it, replies from it. */
function echoes(frames: Array<{ ipv4?: { src: string; dst: string; protocol: number }; data: Buffer }>, guestIp: string, clientIp: string) {
  const icmp = frames.filter((f) => f.ipv4?.protocol === 1);
  return {
    requests: icmp.filter((f) => f.ipv4!.dst === guestIp && f.ipv4!.src === clientIp && f.data[34] === 8).length,
    replies: icmp.filter((f) => f.ipv4!.src === guestIp && f.ipv4!.dst === clientIp && f.data[34] === 0).length,
  };
}

test('captures with the bypass on: tap0 sees the guest\'s unicast frames both ways, eth0-nic those to it, k6t-eth0 none', async (t) => {
  const { l, vm, root, counters } = await bypassedLab(t);
  const n = PINGS.count;
  const capture = async () => {
    const caps = await Promise.all([
      l.capture(vm.podNs, VM_TAP, 'icmp'),
      l.capture(vm.podNs, VM_NIC, 'icmp'),
      l.capture(vm.podNs, VM_BRIDGE, 'icmp', PROMISC),
      l.capture(l.node.ns, vm.hostVeth.name, 'icmp'),
    ]);
    t.is((await l.ping(l.client, vm.podIp, PINGS)).received, n);
    await new Promise((r) => setTimeout(r, 300)); // the last reply written out by every tcpdump before it stops
    const [tap, nic, bridge, host] = await Promise.all(caps.map((c) => c.stop()));
    return { tap: echoes(tap!, vm.podIp, l.client.ip), nic: echoes(nic!, vm.podIp, l.client.ip), bridge: echoes(bridge!, vm.podIp, l.client.ip), host: echoes(host!, vm.podIp, l.client.ip) };
  };

  const before = await counters();
  const bypassed = await capture();
  const after = await counters();
  t.true(after.bypassedIn - before.bypassedIn >= n && after.bypassedOut - before.bypassedOut >= n, 'the echoes took the bypass');
  t.deepEqual(bypassed.tap, { requests: n, replies: n }, 'tap0: both ways');
  // from_guest's bpf_redirect_peer() hands the guest's frame to the host veth's ingress: it
  // never leaves through eth0-nic, whose packet taps see a frame on transmit (net/core/dev.c dev_queue_xmit_nit())
  t.deepEqual(bypassed.nic, { requests: n, replies: 0 }, 'eth0-nic: the frames to the guest only');
  // the emulated CNI fast path peer-redirects the requests past the host veth: only the first one is on it
  t.is(bypassed.host.replies, n, 'the host veth (node netns): every reply');
  t.deepEqual(bypassed.bridge, { requests: 0, replies: 0 }, 'k6t-eth0: none, the bridge is not on their path');

  // the same captures with the bridge kept: k6t-eth0 and eth0-nic see both ways
  const keep = await vmpeer(l.node.ns.path, ['attach', '--netns', vm.podNs.name, '--keep-bridge', '--bpffs', root]);
  t.is(keep.code, 0, keep.stderr);
  t.regex(keep.stdout, /bridge kept: --keep-bridge; bridge bypass removed/);
  const kept = await capture();
  t.deepEqual({ ...kept, host: kept.host.replies }, { tap: { requests: n, replies: n }, nic: { requests: n, replies: n }, bridge: { requests: n, replies: n }, host: n }, 'through the bridge');
});

/** An unsolicited neighbour advertisement (RFC 4861 7.2.6) for `target` at `mac`, to all nodes (ff02::1). */
function unsolicitedNa(mac: string, target: string): Buffer {
  const allNodes = Buffer.from('ff020000000000000000000000000001', 'hex');
  const body = Buffer.alloc(32);
  body[0] = 136; // neighbour advertisement
  body[4] = 0x20; // override
  const packet = ipv6({ src: target, dst: target, nextHeader: IPPROTO_ICMPV6, hopLimit: 255 }, body);
  allNodes.copy(packet, 24); // the destination (the packet helpers build unicast headers only)
  packet.copy(body, 8, 8, 24); // the target address: the source's
  body[24] = 2; // target link-layer address option, 8 bytes
  body[25] = 1;
  Buffer.from(mac.split(':').map((x) => parseInt(x, 16))).copy(body, 26);
  let sum = IPPROTO_ICMPV6 + body.length;
  for (let i = 8; i < 40; i += 2) sum += packet.readUInt16BE(i);
  body.writeUInt16BE(internetChecksum(body, sum), 2);
  body.copy(packet, 40);
  return ether('33:33:00:00:00:01', mac, ETH_P_IPV6, packet);
}

test("the guest's announcements (gratuitous ARP, unsolicited NA) reach the node through the bridge with the bypass on", async (t) => {
  const { l, vm, counters } = await bypassedLab(t, { ipv6: true });
  const guestLl = await linkLocal(vm.guestNs!.path, POD_IF);
  const atHost = await l.capture(l.node.ns, vm.hostVeth.name, 'arp or icmp6');
  const onBridge = await l.capture(vm.podNs, VM_BRIDGE, 'arp or icmp6', PROMISC);
  const before = await counters();
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count);
  sendFrames({ path: vm.guestNs!.path } as never, POD_IF, [arpRequest(vm.guestMac, vm.podIp, vm.podIp), unsolicitedNa(vm.guestMac, guestLl)]);
  await new Promise((r) => setTimeout(r, 300));
  const [host, bridge] = [await atHost.stop(), await onBridge.stop()];
  const garp = (f: { src: string; dst: string; ethertype: number; data: Buffer }) =>
    f.src === vm.guestMac && f.dst === 'ff:ff:ff:ff:ff:ff' && f.ethertype === 0x0806 && f.data.subarray(28, 32).equals(f.data.subarray(38, 42));
  const na = (f: { src: string; dst: string; data: Buffer }) => f.src === vm.guestMac && f.dst === '33:33:00:00:00:01' && f.data[20] === 58 && f.data[54] === 136;
  t.true(host.some(garp), 'the gratuitous ARP reached the host veth');
  t.true(host.some(na), 'the unsolicited neighbour advertisement reached the host veth');
  t.true(bridge.some(garp) && bridge.some(na), 'both through the bridge');
  const after = await counters();
  t.true(after.bypassedIn - before.bypassedIn >= PINGS.count && after.bypassedOut - before.bypassedOut >= PINGS.count, 'meanwhile the echoes took the bypass');
});
