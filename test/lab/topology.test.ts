/**
 * The lab's wiring matches what Calico and KubeVirt set up (docs/design.md §3, §4),
 * builds fast, stays out of the caller's netns, and leaves nothing behind.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import test from 'ava';
import {
  BRIDGE_IP, CALICO_HOST_MAC, CLIENT_IP, GATEWAY_IP, Lab, NODE_UPLINK_IP, VM_BRIDGE, VM_NIC, VM_TAP, labName, labOwnerPid,
} from '../../lib/lab/index.js';
import { alive, lab } from '../helpers/lab.js';
import { TEST_PREFIX } from '../helpers/netns.js';

function inNs(path: string, cmd: string, ...args: string[]): string {
  return execFileSync('nsenter', [`--net=${path}`, cmd, ...args], { encoding: 'utf8' });
}

interface JLink {
  ifname: string;
  address: string;
  operstate: string;
  flags: string[];
  master?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string; info_slave_data?: { learning?: boolean } };
}
interface JAddr {
  ifname: string;
  addr_info: Array<{ local: string; prefixlen: number; family: string }>;
}

function links(path: string): Map<string, JLink> {
  const list = JSON.parse(inNs(path, 'ip', '-j', '-d', 'link', 'show')) as JLink[];
  return new Map(list.map((l) => [l.ifname, l]));
}
function addrs(path: string, dev: string): string[] {
  const list = JSON.parse(inNs(path, 'ip', '-j', '-4', 'addr', 'show', 'dev', dev)) as JAddr[];
  return list.flatMap((a) => a.addr_info.map((i) => `${i.local}/${i.prefixlen}`));
}
function routes(path: string): string {
  return inNs(path, 'ip', '-4', 'route', 'show');
}
function sysctl(path: string, key: string): string {
  return inNs(path, 'sysctl', '-n', key).trim();
}

// serial: measured before the other tests of this file load the machine. Inside
// scripts/vmtest's emulated guests everything runs ~25x slower: the bound is relaxed there.
test.serial('a lab with one VM pod and one plain pod builds in well under 2 s', async (t) => {
  const bound = process.env.VMTEST_KERNEL ? 30_000 : 2000;
  const start = performance.now();
  const l = await lab(t, { vmPods: 1, plainPods: 1 });
  const ms = performance.now() - start;
  t.log(`built in ${ms.toFixed(0)} ms (emulator attached: ${l.emulatorAttached}, ${l.emulator.mode}; dummy: ${l.vms[0]!.dummyKind})`);
  t.true(ms < bound, `${ms.toFixed(0)} ms, bound ${bound} ms`);
  t.true(l.emulatorAttached);
});

test('node and client: uplink, Calico host veths with proxy ARP, /32 routes', async (t) => {
  const l = await lab(t, { vmPods: 2, plainPods: 2 });
  const node = l.node.ns.path;
  t.deepEqual(addrs(node, 'eth0'), [`${NODE_UPLINK_IP}/24`]);
  t.deepEqual(addrs(l.client.ns.path, 'eth0'), [`${CLIENT_IP}/24`]);
  t.regex(routes(l.client.ns.path), /198\.18\.1\.0\/24 via 198\.18\.0\.1 dev eth0/);
  t.is(sysctl(node, 'net.ipv4.ip_forward'), '1');
  const nodeLinks = links(node);
  for (const p of [...l.vms, ...l.plain]) {
    const v = p.hostVeth;
    t.regex(v.name, /^cali[0-9a-f]{11}$/);
    t.is(v.mac, CALICO_HOST_MAC);
    t.is(nodeLinks.get(v.name)?.address, CALICO_HOST_MAC);
    t.is(nodeLinks.get(v.name)?.operstate, 'UP');
    t.deepEqual(addrs(node, v.name), [], 'Calico host veths carry no address');
    t.is(sysctl(node, `net.ipv4.conf.${v.name}.proxy_arp`), '1');
    t.is(sysctl(node, `net.ipv4.neigh.${v.name}.proxy_delay`), '0');
    t.regex(routes(node), new RegExp(`${p.podIp.replace(/\./g, '\\.')} dev ${v.name} scope link`));
  }
  // the lab's names exist in no namespace but its own
  const host = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  for (const p of [...l.vms, ...l.plain]) t.false(host.includes(p.hostVeth.name), `${p.hostVeth.name} in the caller's netns`);
});

test('VM pod: KubeVirt bridge binding (eth0-nic port without learning, k6t-eth0, tap0, DOWN dummy eth0)', async (t) => {
  const guestMac = '52:54:00:12:34:56';
  const l = await lab(t, { vmPods: 2, plainPods: 0, guestMacs: [undefined, guestMac] });
  for (const vm of l.vms) {
    const pod = vm.podNs.path;
    const ls = links(pod);
    const nic = ls.get(VM_NIC)!;
    t.is(nic.master, VM_BRIDGE);
    t.is(nic.linkinfo?.info_slave_kind, 'bridge');
    t.is(nic.linkinfo?.info_slave_data?.learning, false, 'learning off on eth0-nic');
    t.is(nic.address, vm.nic.mac);
    t.not(vm.nic.mac, vm.guestMac, 'eth0-nic does not carry the guest MAC');
    t.not(vm.nic.mac, vm.dummyMac);
    t.is(parseInt(vm.nic.mac.slice(0, 2), 16) & 3, 2, 'locally administered unicast');
    t.is(ls.get(VM_TAP)?.master, VM_BRIDGE);
    t.is(ls.get(VM_TAP)?.linkinfo?.info_slave_data?.learning, true, 'the bridge learns the guest on tap0');
    t.is(ls.get(VM_BRIDGE)?.linkinfo?.info_kind, 'bridge');
    t.deepEqual(addrs(pod, VM_BRIDGE), [`${BRIDGE_IP}/32`]);
    const dummy = ls.get('eth0')!;
    t.false(dummy.flags.includes('UP'), 'the dummy eth0 is DOWN');
    t.is(dummy.linkinfo?.info_kind, vm.dummyKind);
    t.is(dummy.address, vm.dummyMac);
    t.deepEqual(addrs(pod, 'eth0'), [`${vm.podIp}/32`]);
    t.is(sysctl(pod, 'net.ipv4.conf.all.arp_ignore'), '1');
    if (vm.bridgeTxChecksumOff) {
      t.regex(inNs(pod, 'ethtool', '-k', VM_BRIDGE), /tx-checksumming: off/);
    } else {
      t.log('ethtool is not installed: tx checksum offload left on');
    }
    // the pod end of the cali veth: eth0-nic@ifN names the host veth's ifindex
    t.regex(inNs(pod, 'ip', '-o', 'link', 'show', VM_NIC), new RegExp(`${VM_NIC}@if${vm.hostVeth.ifindex}:`));

    // the guest: its MAC, POD_IP/32, 169.254.1.1 on-link and the default route through it
    const g = vm.guestNs!.path;
    t.is(links(g).get('eth0')?.address, vm.guestMac);
    t.deepEqual(addrs(g, 'eth0'), [`${vm.podIp}/32`]);
    const r = routes(g);
    t.regex(r, /default via 169\.254\.1\.1 dev eth0/);
    t.regex(r, /169\.254\.1\.1 dev eth0 scope link/);
  }
  t.is(l.vms[0]!.guestMac, l.vms[0]!.dummyMac, 'default guest MAC: the pod MAC');
  t.is(l.vms[1]!.guestMac, guestMac);
  t.not(l.vms[1]!.dummyMac, guestMac);
});

test('plain pod: eth0 with POD_IP/32 and the default route via 169.254.1.1, Calico style', async (t) => {
  const l = await lab(t, { vmPods: 0, plainPods: 1 });
  const p = l.plain[0]!;
  t.deepEqual(addrs(p.ns.path, 'eth0'), [`${p.podIp}/32`]);
  t.regex(routes(p.ns.path), new RegExp(`default via ${GATEWAY_IP.replace(/\./g, '\\.')} dev eth0`));
  const r = await l.ping(p, l.client.ip, { count: 2 });
  t.is(r.received, 2);
  t.regex(inNs(p.ns.path, 'ip', 'neigh', 'show', GATEWAY_IP), /lladdr ee:ee:ee:ee:ee:ee/, 'proxy ARP answered the gateway');
});

test('after a guest talked, the bridge knows its MAC on tap0', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 0, emulator: false });
  const vm = l.vms[0]!;
  t.is((await l.ping(l.client, vm.podIp, { count: 1 })).received, 1);
  const fdb = inNs(vm.podNs.path, 'bridge', 'fdb', 'show', 'br', VM_BRIDGE);
  t.regex(fdb, new RegExp(`${vm.guestMac} dev ${VM_TAP} master ${VM_BRIDGE}`));
  t.regex(inNs(vm.guestNs!.path, 'ip', 'neigh', 'show', GATEWAY_IP), /lladdr ee:ee:ee:ee:ee:ee/);
});

test('destroy() removes every netns and process, and is safe to call twice', async (t) => {
  const l = await Lab.create({ prefix: TEST_PREFIX, vmPods: 1, plainPods: 1 });
  t.teardown(() => l.destroy());
  t.true((await l.tcpEcho(l.client, l.plain[0]!.podIp, 'x')).echoed, 'agents started');
  t.true((await l.tcpEcho(l.client, l.vms[0]!.podIp, 'x', { timeoutMs: 1000 })).connected);
  const pids = await l.processIds();
  t.is(pids.length, 3, 'agents in the client, the plain pod and the guest');
  t.true(pids.every(alive));
  t.true(l.namespaces.every((n) => existsSync(n.path)));

  await Promise.all([l.destroy(), l.destroy()]);
  await l.destroy();
  t.true(l.destroyed);
  t.true(l.namespaces.every((n) => !existsSync(n.path)), 'every netns is gone');
  t.false(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(l.name));
  t.true(pids.every((p) => !alive(p)), 'every process is gone');
  await t.throwsAsync(() => l.ping(l.client, l.plain[0]!.podIp), { message: /destroyed/ });
});

test('run(), spawn() and describe(): commands in the lab namespaces, killed by destroy()', async (t) => {
  const l = await Lab.create({ prefix: TEST_PREFIX, vmPods: 1, plainPods: 1 });
  t.teardown(() => l.destroy());
  const out = await l.run(l.node.ns, 'ip', ['-o', 'link', 'show', l.vms[0]!.hostVeth.name]);
  t.true(out.stdout.includes('ee:ee:ee:ee:ee:ee'));
  const child = l.spawn(l.client.ns, 'sleep', ['600']);
  t.true(alive(child.pid));
  t.true((await l.processIds()).includes(child.pid!));
  await t.throwsAsync(() => l.run({ name: 'x', path: '/var/run/netns/x' }, 'true', []), { message: /not a namespace of this lab/ });
  const text = l.describe();
  t.log(text);
  for (const s of [l.name, l.vms[0]!.podNs.name, l.vms[0]!.guestMac, l.plain[0]!.podIp, 'attached']) t.true(text.includes(s), s);
  await l.destroy();
  t.false(alive(child.pid));
});

test('lab names carry the owner pid, so a sweeper can spare labs still in use', async (t) => {
  const name = labName('vpt');
  t.regex(name, new RegExp(`^vpt${process.pid}-[0-9a-f]{6}$`));
  t.is(labOwnerPid(`${name}-vm0g`), process.pid);
  t.is(labOwnerPid('vptab12cd34'), null, 'a test netns of test/helpers/netns.ts');
  t.throws(() => labName('vp-t'), { instanceOf: TypeError });
  const l = await lab(t, { vmPods: 1, plainPods: 0 });
  t.true(l.namespaces.every((n) => n.name.startsWith(l.name) && labOwnerPid(n.name) === process.pid));
});

test('adopt(): a netns added while the lab runs is deleted with it', async (t) => {
  const l = await Lab.create({ prefix: TEST_PREFIX, vmPods: 0, plainPods: 1 });
  t.teardown(() => l.destroy());
  const extra = { name: `${l.name}-x0`, path: `/var/run/netns/${l.name}-x0` };
  execFileSync('ip', ['netns', 'add', extra.name]);
  t.teardown(() => {
    if (existsSync(extra.path)) execFileSync('ip', ['netns', 'delete', extra.name]);
  });
  await t.throwsAsync(() => l.run(extra, 'true', []), { message: /not a namespace of this lab/ });
  l.adopt(extra);
  l.adopt(extra);
  t.is(l.namespaces.filter((n) => n.path === extra.path).length, 1);
  t.is((await l.run(extra, 'ip', ['-o', 'link', 'show', 'lo'])).code, 0);
  const gone = { name: `${l.name}-x1`, path: `/var/run/netns/${l.name}-x1` };
  l.adopt(gone);
  t.true(l.disown(gone));
  t.false(l.disown(gone));
  await l.destroy();
  t.false(existsSync(extra.path));
});
