/**
 * Discovery's decisions on KubeVirt-shaped interface data (iproute2's JSON,
 * as `ip -j -d link` and friends print it): which port is the uplink, which
 * MAC the guest really uses, and what is not a VM pod.
 */
import test from 'ava';
import { ClaimRefusedError, discoverVmInterfaces, GuestMacUnknownError, NotAVmPodError } from '../../lib/discovery/vm-pod.js';
import { GuestIpNotRoutedError, ownedAddresses, routedDevice } from '../../lib/discovery/ownership.js';
import type { Address, FdbEntry, IpRoute, Link, Neighbour, Route } from '../../lib/discovery/iproute.js';
import { shapeOf } from '../../lib/daemon/probe.js';
import { policyInTheWay } from '../../lib/dataplane/egress-policy.js';
import type { Native } from '../../lib/native.js';

const GUEST_MAC = '02:aa:bb:cc:dd:ee';
const DUMMY_MAC = '0a:58:c6:12:01:0a';
const POD_IP = '198.18.1.10';
const NETNS = '/var/run/netns/cni-1234';

interface World {
  pod: Link[];
  node: Link[];
  addresses: Address[];
  fdb: FdbEntry[];
  neighbours: Neighbour[];
  routes: Route[];
}

function kubevirtPod(): World {
  return {
    pod: [
      { ifindex: 1, ifname: 'lo' },
      { ifindex: 2, ifname: 'eth0-nic', address: '0a:58:c6:12:01:99', master: 'k6t-eth0', link_index: 7, link_netnsid: 0, linkinfo: { info_kind: 'veth', info_slave_kind: 'bridge', info_slave_data: { learning: false } } },
      { ifindex: 3, ifname: 'k6t-eth0', address: '0a:58:c6:12:01:99', linkinfo: { info_kind: 'bridge' } },
      { ifindex: 4, ifname: 'tap0', master: 'k6t-eth0', linkinfo: { info_kind: 'tun', info_data: { type: 'tap' }, info_slave_kind: 'bridge' } },
      { ifindex: 5, ifname: 'eth0', address: DUMMY_MAC, operstate: 'DOWN', linkinfo: { info_kind: 'dummy' } },
    ],
    node: [
      { ifindex: 1, ifname: 'lo' },
      { ifindex: 2, ifname: 'ens3', address: '52:54:00:00:00:01' },
      { ifindex: 7, ifname: 'cali1b864d60622', address: 'ee:ee:ee:ee:ee:ee', link_index: 2, link_netnsid: 3, linkinfo: { info_kind: 'veth' } },
    ],
    addresses: [
      { ifindex: 3, ifname: 'k6t-eth0', addr_info: [{ family: 'inet', local: '169.254.75.10', prefixlen: 32, scope: 'global' }] },
      { ifindex: 5, ifname: 'eth0', addr_info: [{ family: 'inet', local: POD_IP, prefixlen: 32, scope: 'global' }] },
    ],
    fdb: [
      { mac: '0a:58:c6:12:01:99', ifname: 'eth0-nic', master: 'k6t-eth0', state: 'permanent' },
      { mac: '33:33:00:00:00:01', ifname: 'tap0', flags: ['self'], state: 'permanent' },
      { mac: GUEST_MAC, ifname: 'tap0', master: 'k6t-eth0' },
    ],
    neighbours: [],
    routes: [{ dst: POD_IP, dev: 'cali1b864d60622', scope: 'link' }],
  };
}

function iproute(w: World): IpRoute {
  return {
    links: async (netns?: string) => (netns ? w.pod : w.node),
    addresses: async () => w.addresses,
    fdb: async () => w.fdb,
    neighbours: async () => w.neighbours,
    routes: async () => w.routes,
  };
}

test('a KubeVirt bridge-binding pod: uplink, guest port, host veth, pod IP, and the MAC the guest uses', async (t) => {
  const [vm, ...more] = await discoverVmInterfaces(NETNS, {}, iproute(kubevirtPod()));
  t.deepEqual(more, []);
  t.deepEqual(vm, {
    netns: NETNS,
    bridge: 'k6t-eth0',
    uplink: { ifname: 'eth0-nic', ifindex: 2 },
    guestPorts: ['tap0'],
    guestPort: { ifname: 'tap0', ifindex: 4 },
    hostVeth: { ifname: 'cali1b864d60622', ifindex: 7, mac: 'ee:ee:ee:ee:ee:ee', kind: 'veth' },
    guestIp: POD_IP,
    guestMac: GUEST_MAC,
    guestMacFrom: 'fdb',
    refused: [],
  });
  t.not(vm!.guestMac, DUMMY_MAC, 'never the dummy eth0 MAC');
});

test('without a learned FDB entry, the node neighbour entry for the guest IP tells the MAC', async (t) => {
  const w = kubevirtPod();
  w.fdb = w.fdb.filter((e) => e.mac !== GUEST_MAC);
  w.neighbours = [{ dst: POD_IP, dev: 'cali1b864d60622', lladdr: GUEST_MAC, state: ['REACHABLE'] }];
  const [vm] = await discoverVmInterfaces(NETNS, {}, iproute(w));
  t.like(vm, { guestMac: GUEST_MAC, guestMacFrom: 'neighbour' });
});

test('a guest that has sent nothing: its MAC is unknown (not guessed from the dummy)', async (t) => {
  const w = kubevirtPod();
  w.fdb = w.fdb.filter((e) => e.mac !== GUEST_MAC);
  w.neighbours = [{ dst: POD_IP, dev: 'cali1b864d60622', state: ['FAILED'] }];
  const err = await t.throwsAsync(discoverVmInterfaces(NETNS, {}, iproute(w)), { instanceOf: GuestMacUnknownError });
  t.regex(err!.message, /has not sent a frame yet.*pass --guest-mac/);
});

test('several learned MACs: the neighbour entry picks one, else the user must', async (t) => {
  const w = kubevirtPod();
  w.fdb.push({ mac: '02:00:00:00:00:77', ifname: 'tap0', master: 'k6t-eth0' });
  await t.throwsAsync(discoverVmInterfaces(NETNS, {}, iproute(w)), { instanceOf: GuestMacUnknownError, message: /learned 2 MACs .* pass --guest-mac/ });
  w.neighbours = [{ dst: POD_IP, dev: 'cali1b864d60622', lladdr: GUEST_MAC, state: ['STALE'] }];
  t.like((await discoverVmInterfaces(NETNS, {}, iproute(w)))[0], { guestMac: GUEST_MAC, guestMacFrom: 'neighbour' });
});

test('no pod IP on the dummy: the node /32 route to the host veth tells it', async (t) => {
  const w = kubevirtPod();
  w.addresses = w.addresses.filter((a) => a.ifname !== 'eth0');
  t.like((await discoverVmInterfaces(NETNS, {}, iproute(w)))[0], { guestIp: POD_IP });
});

test('overrides win over discovery; a --guest-ip the node does not route to the pod needs --trust-guest-ip', async (t) => {
  const w = kubevirtPod();
  const overrides = { guestMac: '02:00:00:00:00:42' as const, guestIp: '198.18.1.42', dev: 'eth0-nic' };
  await t.throwsAsync(discoverVmInterfaces(NETNS, overrides, iproute(w)), { instanceOf: GuestIpNotRoutedError, message: /routes it nowhere, not to the pod's host veth cali1b864d60622; pass --trust-guest-ip/ });
  const [trusted] = await discoverVmInterfaces(NETNS, { ...overrides, trustGuestIp: true }, iproute(w));
  t.like(trusted, { guestMac: '02:00:00:00:00:42', guestMacFrom: 'override', guestIp: '198.18.1.42' });
  w.routes.push({ dst: '198.18.1.42', dev: 'cali1b864d60622', scope: 'link' });
  const [vm] = await discoverVmInterfaces(NETNS, overrides, iproute(w));
  t.like(vm, { guestMac: '02:00:00:00:00:42', guestMacFrom: 'override', guestIp: '198.18.1.42' });
});

test("the dummy's address is a claim: one the node routes to another pod's veth is refused, the routed one is used", async (t) => {
  const w = kubevirtPod();
  w.addresses[1]!.addr_info[0]!.local = '198.18.1.77'; // another pod's IP
  w.routes.push({ dst: '198.18.1.77', dev: 'caliother', scope: 'link' });
  const [vm] = await discoverVmInterfaces(NETNS, {}, iproute(w));
  t.like(vm, { guestIp: POD_IP, refused: [{ ip: '198.18.1.77', routedTo: 'caliother', claimedBy: 'pod address' }] });
  w.routes = w.routes.filter((r) => r.dst !== POD_IP);
  const e = await t.throwsAsync(discoverVmInterfaces(NETNS, {}, iproute(w)), { instanceOf: ClaimRefusedError, message: /claims 198\.18\.1\.77 \(routed to caliother\)/ });
  t.deepEqual(e!.refused, [{ ip: '198.18.1.77', routedTo: 'caliother', claimedBy: 'pod address' }]);
});

test('ownership follows the node route: longest prefix, then the lowest metric (a migration target)', (t) => {
  const routes: Route[] = [
    { dst: 'default', dev: 'ens3' },
    { dst: '198.18.0.0/16', dev: 'vxlan' },
    { dst: POD_IP, dev: 'calisource', scope: 'link', metric: 1024 },
  ];
  t.is(routedDevice(POD_IP, routes), 'calisource');
  t.is(routedDevice('198.18.9.9', routes), 'vxlan');
  t.is(routedDevice('8.8.8.8', routes), 'ens3');
  t.is(routedDevice('2001:db8::1', routes), null);
  t.deepEqual(ownedAddresses('calisource', routes), [POD_IP]);
  routes.push({ dst: `${POD_IP}/32`, dev: 'calitarget', scope: 'link', metric: 512 });
  t.is(routedDevice(POD_IP, routes), 'calitarget');
  t.deepEqual(ownedAddresses('calisource', routes), [], 'a route that loses to a better one owns nothing');
  t.deepEqual(ownedAddresses('calitarget', routes), [POD_IP]);
});

test('a plain pod is not a VM pod', async (t) => {
  const w = kubevirtPod();
  w.pod = [
    { ifindex: 1, ifname: 'lo' },
    { ifindex: 2, ifname: 'eth0', address: DUMMY_MAC, link_index: 7, link_netnsid: 0, linkinfo: { info_kind: 'veth' } },
  ];
  await t.throwsAsync(discoverVmInterfaces(NETNS, {}, iproute(w)), { instanceOf: NotAVmPodError, message: /is not a bridged VM pod/ });
});

test("a bridge whose veth port does not lead to this node is not a VM pod's", async (t) => {
  const w = kubevirtPod();
  w.node = w.node.filter((l) => !l.ifname.startsWith('cali'));
  await t.throwsAsync(discoverVmInterfaces(NETNS, {}, iproute(w)), { instanceOf: NotAVmPodError });
});

test('--dev naming no interface, or not the uplink', async (t) => {
  await t.throwsAsync(discoverVmInterfaces(NETNS, { dev: 'eth9' }, iproute(kubevirtPod())), { instanceOf: NotAVmPodError, message: /no interface eth9/ });
  await t.throwsAsync(discoverVmInterfaces(NETNS, { dev: 'tap0' }, iproute(kubevirtPod())), { instanceOf: NotAVmPodError, message: /not a bridged VM pod/ });
});

/** The same pod with a netkit pair as its pod device (Calico's netkit mode, L2): eth0-nic is the netkit peer. */
function netkitPod(): World {
  const w = kubevirtPod();
  w.pod[1] = { ...w.pod[1]!, linkinfo: { ...w.pod[1]!.linkinfo, info_kind: 'netkit' } };
  w.node[2] = { ...w.node[2]!, linkinfo: { info_kind: 'netkit' } };
  return w;
}

test('a netkit pair is a pod device like a veth: its peer is the uplink port, its primary in the node the host device', async (t) => {
  const [vm, ...more] = await discoverVmInterfaces(NETNS, {}, iproute(netkitPod()));
  t.is(more.length, 0);
  t.like(vm, { uplink: { ifname: 'eth0-nic', ifindex: 2 }, hostVeth: { ifname: 'cali1b864d60622', ifindex: 7 }, guestIp: POD_IP, guestMac: GUEST_MAC });
  t.deepEqual(shapeOf(netkitPod().pod), { shape: 'vm', peers: [7] });
});

test('the two ends of a pod device must be the same kind: a netkit port whose ifindexes point at a node veth is not an uplink', async (t) => {
  const w = netkitPod();
  w.node[2] = { ...w.node[2]!, linkinfo: { info_kind: 'veth' } };
  await t.throwsAsync(discoverVmInterfaces(NETNS, {}, iproute(w)), { instanceOf: NotAVmPodError, message: /no bridge there has a veth or netkit port leading to this node/ });
  const other = kubevirtPod();
  other.pod[1] = { ...other.pod[1]!, linkinfo: { ...other.pod[1]!.linkinfo, info_kind: 'macvlan' } };
  t.deepEqual(shapeOf(other.pod), { shape: 'partial', peers: [] }, 'other kinds are not pod devices');
});

test('accelerate mode never redirects toward a netkit host device: its programs (the pod policy) run where redirect skips them', (t) => {
  const kernelUntouched = new Proxy({}, { get: () => () => t.fail('a netkit device needs no kernel query') }) as Native;
  const policy = policyInTheWay({ ifname: 'cali1b864d60622', kind: 'netkit' }, kernelUntouched);
  t.regex(policy?.why ?? '', /^cali1b864d60622 is a netkit device, whose programs \(a CNI's policy for the pod\) run where redirect would skip them$/);
  t.deepEqual(policy?.programs, []);
});
