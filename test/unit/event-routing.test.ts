/**
 * The tracker's indexes of pods (lib/daemon/pod-index.ts, tracking.ts) and
 * the node events the watchers route through them (watchers.ts): each event
 * reaches the pods it names, by veth peer, host veth, guest IP or claim, and
 * no other, on a node of 1000 pods; the indexes follow each check's reading
 * of a pod, and a pod that is gone leaves them. No kernel side: the netns
 * sources, the endpoint table, the node view and the claims are stand-ins.
 */
import test from 'ava';
import { pino } from 'pino';
import type { Dataplane } from '../../lib/dataplane/dataplane.js';
import type { VmPort } from '../../lib/discovery/vm-pod.js';
import type { Claims } from '../../lib/daemon/claims.js';
import type { DaemonConfig } from '../../lib/daemon/config.js';
import type { NetlinkEvent } from '../../lib/daemon/monitor.js';
import type { Pod } from '../../lib/daemon/pod.js';
import type { NodeView } from '../../lib/daemon/probe.js';
import type { NetnsEntry, NetnsSources } from '../../lib/daemon/sources.js';
import { PodTracker } from '../../lib/daemon/tracking.js';
import { Watchers } from '../../lib/daemon/watchers.js';

function tracker(endpoints: Record<string, number> = {}) {
  const found = new Map<number, NetnsEntry>();
  const sources = { scan: () => ({ found: new Map(found), unsettled: 0 }) } as unknown as NetnsSources;
  const dp = { endpoint: (ip: string) => (ip in endpoints ? { podNetns: endpoints[ip] } : null) } as unknown as Dataplane;
  const removed: number[] = [];
  const t = new PodTracker(sources, dp, pino({ level: 'silent' }), { added: () => undefined, moved: () => undefined, removed: (p) => removed.push(p.inode) }, () => false);
  const add = (...inodes: number[]): Pod[] => {
    for (const inode of inodes) found.set(inode, { inode, path: `/run/netns/p${inode}`, via: 'dir' });
    t.syncSources();
    return inodes.map((i) => t.pods.get(i)!);
  };
  const drop = (inode: number) => {
    found.delete(inode);
    t.syncSources();
  };
  return { t, add, drop, removed };
}

const names = (set: Iterable<Pod>) => [...set].map((p) => p.inode).sort((a, b) => a - b);
const links = (hostVeths: string[], peers: number[] = [], guestIps: string[] = []) => ({ hostVeths, peers, guestIps });

test('a pod is found by the host veths, peers and guest IPs its last check saw, and only those', (t) => {
  const { t: tr, add } = tracker();
  const [a, b] = add(1, 2);
  tr.setLinks(a!, links(['cali1', 'cali1b'], [11], ['10.0.0.1']));
  tr.setLinks(b!, links(['cali2'], [12, 13], ['10.0.0.2']));
  t.deepEqual(names(tr.behindHostVeth('cali1')), [1]);
  t.deepEqual(names(tr.behindHostVeth('cali1b')), [1]);
  t.deepEqual(names(tr.behindHostVeth('cali2')), [2]);
  t.deepEqual(names(tr.behindHostVeth('cali3')), []);
  t.deepEqual(names(tr.withPeer(13)), [2]);
  t.deepEqual(names(tr.withGuestIp('10.0.0.1')), [1]);
  // the next check sees other links: the old ones no longer lead to it
  tr.setLinks(a!, links(['cali3'], [14], ['10.0.0.3']));
  t.deepEqual(names(tr.behindHostVeth('cali1')), []);
  t.deepEqual(names(tr.withPeer(11)), []);
  t.deepEqual(names(tr.withGuestIp('10.0.0.1')), []);
  t.deepEqual(names(tr.behindHostVeth('cali3')), [1]);
  // two pods that both claim a name (one is stale): both are found, the event checks both
  tr.setLinks(b!, links(['cali2', 'cali3'], [12], ['10.0.0.3']));
  t.deepEqual(names(tr.behindHostVeth('cali3')), [1, 2]);
  t.deepEqual(names(tr.withGuestIp('10.0.0.3')), [1, 2]);
  tr.setLinks(a!, links([]));
  t.deepEqual(names(tr.behindHostVeth('cali3')), [2]);
  t.deepEqual(names(tr.withPeer(14)), [], 'a check that saw no links: none lead to it');
});

test("a pod that is gone leaves the indexes, and is nobody's owner", (t) => {
  const { t: tr, add, drop, removed } = tracker({ '10.0.0.9': 2 });
  const [a, b] = add(1, 2) as [Pod, Pod];
  tr.setLinks(a!, links(['cali1'], [11], ['10.0.0.1']));
  tr.setLinks(b!, links(['cali2'], [12], ['10.0.0.9']));
  t.is(tr.ownerOf('cali1', '10.0.0.1'), a);
  t.is(tr.ownerOf(null, '10.0.0.9'), b, 'no host veth: the pod holding the endpoint');
  t.is(tr.ownerOf('cali-none', '10.0.0.9'), b);
  drop(1);
  t.deepEqual(removed, [1]);
  t.deepEqual(names(tr.behindHostVeth('cali1')), []);
  t.deepEqual(names(tr.withPeer(11)), []);
  t.deepEqual(names(tr.withGuestIp('10.0.0.1')), []);
  t.is(tr.ownerOf('cali1', '10.0.0.1'), null);
  drop(2);
  t.is(tr.ownerOf(null, '10.0.0.9'), null, 'the endpoint still names it, but it is gone');
  // a check that finishes after the pod went (its reading arrives late) does not put it back
  tr.setLinks(b!, links(['cali2'], [12], ['10.0.0.9']));
  t.deepEqual(names(tr.behindHostVeth('cali2')), []);
  t.deepEqual(names(tr.withPeer(12)), []);
});

/** A node of 1000 VM pods (pod i: host veth cali<i>, peer ifindex 10000 + i, guest IP 10.<i>.7 at 52:54:..:i), and the watchers over it. */
function node() {
  const { t: tr, add } = tracker();
  const pods = add(...Array.from({ length: 1000 }, (_, i) => i + 1));
  const ipOf = (i: number) => `10.${(i >> 8) & 255}.${i & 255}.7`;
  const macOf = (i: number) => `52:54:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
  for (const p of pods) {
    const i = p.inode;
    p.kind = 'vm';
    p.seenAt = 0; // not young
    p.ports = [{ guestIp: ipOf(i), guestMac: macOf(i), hostVeth: { ifname: `cali${i}` } } as unknown as VmPort];
    tr.setLinks(p, links([`cali${i}`], [10000 + i], [ipOf(i)]));
  }
  const kicks: Array<{ pod: number; reason: string; urgent: boolean }> = [];
  let scans = 0;
  const claimants = new Map<string, number[]>();
  const w = new Watchers({
    cfg: { accelerate: false, hostDevs: [] } as unknown as DaemonConfig,
    log: pino({ level: 'silent' }),
    node: { linkEvent: () => undefined, invalidate: () => undefined } as unknown as NodeView,
    claims: { claimants: (ip: string) => claimants.get(ip) ?? [] } as unknown as Claims,
    pods: tr.pods,
    index: tr,
    kick: (pod, reason, urgent = false) => kicks.push({ pod: pod.inode, reason, urgent }),
    requestScan: () => void scans++,
    fullResync: () => undefined,
    ensureRedirects: () => undefined,
    stopping: () => false,
  });
  const event = (e: NetlinkEvent) => {
    kicks.length = 0;
    (w as unknown as { onNodeEvent(e: NetlinkEvent): void }).onNodeEvent(e);
    return kicks.map((k) => k.pod).sort((a, b) => a - b);
  };
  return { tr, pods, ipOf, macOf, kicks, claimants, event, scans: () => scans };
}

test('a node link event checks the pods with that veth peer or host veth, and only those', (t) => {
  const n = node();
  t.deepEqual(n.event({ kind: 'link', deleted: false, ifindex: 10007, ifname: 'cali7' }), [7]);
  t.deepEqual(n.event({ kind: 'link', deleted: true, ifindex: 10008, ifname: 'renamed' }), [8], 'by peer ifindex');
  t.deepEqual(n.event({ kind: 'link', deleted: false, ifindex: 99, ifname: 'cali9' }), [9], 'by host veth name');
  t.is(n.scans(), 0);
  // an interface no pod has: a new pod's veth, perhaps; the sources are scanned, young unknown pods looked at
  const young = n.pods[41]!;
  young.kind = 'unknown';
  young.seenAt = Date.now();
  t.deepEqual(n.event({ kind: 'link', deleted: false, ifindex: 77777, ifname: 'calinew' }), [42]);
  t.is(n.scans(), 1);
});

test('a node route event checks the pods behind its device, holding its address or refused it, and only those', (t) => {
  const n = node();
  n.claimants.set(n.ipOf(5), [300]);
  const route = (dst: string, ifindex: number, dev: string): NetlinkEvent => ({ kind: 'route', deleted: false, dst, dstLen: 32, ifindex, dev });
  t.deepEqual(n.event(route(n.ipOf(5), 10200, 'cali200')), [5, 200, 300]);
  t.deepEqual(n.event(route('192.0.2.1', 10012, 'eth1')), [12], 'by device ifindex');
  t.deepEqual(n.event(route('192.0.2.1', 4, 'cali13')), [13], 'by device name');
  t.deepEqual(n.event(route('192.0.2.1', 4, 'eth1')), []);
});

test('a node neighbour event checks at once the pod whose guest it shows at a new MAC, and only that one', (t) => {
  const n = node();
  const neigh = (ip: string, dev: string, mac: string): NetlinkEvent => ({ kind: 'neigh', deleted: false, ip, dev, mac });
  t.deepEqual(n.event(neigh(n.ipOf(3), 'cali3', '52:54:00:aa:bb:cc')), [3]);
  t.true(n.kicks[0]!.urgent, 'not rate-limited');
  t.deepEqual(n.event(neigh(n.ipOf(3), 'cali3', n.macOf(3))), [], 'the MAC it has');
  t.deepEqual(n.event(neigh(n.ipOf(4), 'cali3', '52:54:00:aa:bb:cc')), [], "another pod's guest IP on this veth");
  t.deepEqual(n.event({ kind: 'neigh', deleted: true, ip: n.ipOf(3), dev: 'cali3' }), []);
});

test("a guest's first frame on its bridge is checked at once; later frames wait for the pod's credit", (t) => {
  const n = node();
  const pod = n.pods[0]!;
  const kicks: Array<{ reason: string; urgent: boolean }> = [];
  const w = new Watchers({
    cfg: { accelerate: false, hostDevs: [] } as unknown as DaemonConfig,
    log: pino({ level: 'silent' }),
    node: {} as NodeView,
    claims: {} as Claims,
    pods: n.tr.pods,
    index: n.tr,
    kick: (_pod, reason, urgent = false) => kicks.push({ reason, urgent }),
    requestScan: () => undefined,
    fullResync: () => undefined,
    ensureRedirects: () => undefined,
    stopping: () => false,
  });
  const fdb = (mac: string, dev = 'tap0') => {
    kicks.length = 0;
    (w as unknown as { onPodEvent(p: Pod, e: NetlinkEvent): void }).onPodEvent(pod, { kind: 'fdb', deleted: false, dev, mac });
    return kicks.map((k) => k.urgent);
  };
  const port = (p: Partial<VmPort>) => (pod.ports = [{ guestIp: '10.0.0.7', guestPorts: ['tap0'], hostVeth: { ifname: 'cali1' }, ...p } as unknown as VmPort]);
  port({ guestMac: null });
  t.deepEqual(fdb('52:54:00:00:00:07'), [true], 'waiting for the MAC, nothing learned yet: at once');
  t.deepEqual(fdb('52:54:00:00:00:07', 'eth0-nic'), [false], 'not a guest port: no first frame of a guest');
  port({ guestMac: null, learnedMacs: 2 });
  t.deepEqual(fdb('52:54:00:00:00:08'), [false], 'the last check saw MACs there already: rate-limited');
  port({ guestMac: '52:54:00:00:00:07' });
  t.deepEqual(fdb('52:54:00:00:00:07'), [], 'the MAC it has');
  t.deepEqual(fdb('52:54:00:00:00:09'), [false], 'another MAC once the guest is known: rate-limited');
  port({ guestMac: null });
  pod.ambiguous = true;
  t.deepEqual(fdb('52:54:00:00:00:07'), [], 'a bridge with a flood of MACs: its events are ignored');
});
