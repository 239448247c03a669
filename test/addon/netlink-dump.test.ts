/**
 * The addon's rtnetlink dumps, through lib/discovery/iproute.ts, against what
 * iproute2 prints for the same kernel state: a pod-like netns (bridge with a
 * veth uplink to the node and a guest port, a DOWN bridge standing in for the
 * dummy, learned / static FDB entries) and a node netns (host veth with
 * neighbours and routes).
 */
import { spawnSync } from 'node:child_process';
import test, { type ExecutionContext } from 'ava';
import { iproute, readNetns } from '../../lib/discovery/iproute.js';
import { addon } from './common.js';
import { netns, uniqueName, type Netns } from '../helpers/netns.js';

/** `keys` of `o` that are defined; nested objects by the same rule, empty ones left out. */
function pick(o: Record<string, unknown>, keys: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, sub] of Object.entries(keys)) {
    const v = o[k];
    if (v === undefined) continue;
    if (sub && typeof sub === 'object' && v && typeof v === 'object' && !Array.isArray(v)) {
      const inner = pick(v as Record<string, unknown>, sub as Record<string, unknown>);
      if (Object.keys(inner).length > 0) out[k] = inner;
    } else {
      out[k] = v;
    }
  }
  return out;
}

const LINK_KEYS = {
  ifindex: 1,
  ifname: 1,
  address: 1,
  operstate: 1,
  flags: 1,
  master: 1,
  link_index: 1,
  link_netnsid: 1,
  linkinfo: { info_kind: 1, info_slave_kind: 1, info_slave_data: { learning: 1 }, info_data: { type: 1 } },
};

const byKey = <T>(items: T[], key: (x: T) => string) => [...items].sort((a, b) => key(a).localeCompare(key(b)));

function ipJson(ns: Netns | null, ...args: string[]): Array<Record<string, unknown>> {
  const out = ns ? ns.run(args[0]!, ['-j', ...args.slice(1)]) : '';
  return out.trim() ? (JSON.parse(out) as Array<Record<string, unknown>>) : [];
}

interface World {
  node: Netns;
  pod: Netns;
  hostVeth: string;
  learned: string;
}

/** node ── hostVeth <==> eth0-nic ─ k6t-eth0 ─ tp (peer in a guest netns); eth0: a DOWN bridge with the pod IP. */
function world(t: ExecutionContext): World {
  const node = netns(t, 'dn');
  const pod = netns(t, 'dp');
  const guest = netns(t, 'dg');
  const hostVeth = uniqueName('h');
  const learned = '0a:11:22:33:44:55';
  node.ip('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0-nic', 'netns', pod.name);
  pod.ip('link', 'add', 'tp', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', guest.name);
  for (const cmd of [
    'link add k6t-eth0 type bridge',
    'link add eth0 address 0a:00:00:00:00:07 type bridge',
    'addr add 10.77.0.7/32 dev eth0',
    'addr add 169.254.75.10/32 dev k6t-eth0',
    'link set eth0-nic master k6t-eth0',
    'link set eth0-nic type bridge_slave learning off',
    'link set tp master k6t-eth0',
    'link set k6t-eth0 up',
    'link set eth0-nic up',
    'link set tp up',
  ])
    pod.ip(...cmd.split(' '));
  // learned for real: the guest's ARP request crosses the bridge (an entry added from user space is not "learned")
  guest.ip('link', 'set', 'eth0', 'address', learned, 'up');
  guest.ip('addr', 'add', '10.77.0.7/32', 'dev', 'eth0');
  guest.ip('route', 'add', '169.254.1.1', 'dev', 'eth0');
  // (the ports may need a moment before they forward: asked again until then)
  for (let i = 0; i < 20 && !pod.run('bridge', ['fdb', 'show', 'br', 'k6t-eth0']).includes(learned); i++) {
    spawnSync('nsenter', [`--net=${guest.path}`, 'ping', '-c', '1', '-W', '0.2', '169.254.1.1'], { stdio: 'ignore' });
  }
  if (!pod.run('bridge', ['fdb', 'show', 'br', 'k6t-eth0']).includes(learned)) throw new Error('the bridge learned nothing');
  pod.run('bridge', ['fdb', 'add', '0a:11:22:33:44:66', 'dev', 'tp', 'master', 'static']);
  for (const cmd of [
    `link set ${hostVeth} up`,
    'link add dm type bridge',
    'link set dm up',
    'addr add 192.0.2.1/24 dev dm',
    `route add 10.77.0.7/32 dev ${hostVeth} scope link`,
    `route add 10.78.0.0/16 dev ${hostVeth}`,
    'route add default via 192.0.2.254 dev dm',
    `neigh add 10.77.0.7 lladdr ${learned} dev ${hostVeth} nud reachable`,
    `neigh add 10.77.0.8 lladdr 0a:11:22:33:44:77 dev ${hostVeth} nud permanent`,
    `neigh add 10.77.0.9 dev ${hostVeth} nud failed`,
    `neigh add 10.77.0.10 lladdr 0a:11:22:33:44:88 dev ${hostVeth} nud noarp`,
  ])
    node.ip(...cmd.split(' '));
  return { node, pod, hostVeth, learned };
}

test('links, addresses, FDB, neighbours and routes equal what iproute2 prints', async (t) => {
  const w = world(t);
  for (const ns of [w.node, w.pod]) {
    const links = await iproute.links(ns.path);
    t.deepEqual(
      byKey(links.map((l) => pick(l as unknown as Record<string, unknown>, LINK_KEYS)), (l) => String(l.ifindex)),
      byKey(ipJson(ns, 'ip', '-d', 'link', 'show').map((l) => pick(l, LINK_KEYS)), (l) => String(l.ifindex)),
      `links of ${ns.name}`,
    );
    const addrKeys = { ifindex: 1, ifname: 1, address: 1 };
    const infoKeys = { family: 1, local: 1, prefixlen: 1, scope: 1 };
    const flat = (list: Array<Record<string, unknown>>) =>
      byKey(
        list.map((a) => ({ ...pick(a, addrKeys), addr_info: (a.addr_info as Array<Record<string, unknown>>).map((i) => pick(i, infoKeys)) })),
        (a) => String((a as Record<string, unknown>).ifindex),
      );
    t.deepEqual(flat((await iproute.addresses(ns.path)) as unknown as Array<Record<string, unknown>>), flat(ipJson(ns, 'ip', 'addr', 'show')), `addresses of ${ns.name}`);
  }

  const fdbKeys = { mac: 1, ifname: 1, master: 1, state: 1, flags: 1 };
  const fdbKey = (e: Record<string, unknown>) => `${e.ifname} ${e.mac} ${JSON.stringify(e.flags)}`;
  const fdb = await iproute.fdb(w.pod.path, 'k6t-eth0');
  t.deepEqual(
    byKey(fdb.map((e) => pick(e as unknown as Record<string, unknown>, fdbKeys)), fdbKey),
    byKey(ipJson(w.pod, 'bridge', 'fdb', 'show', 'br', 'k6t-eth0').map((e) => pick(e, fdbKeys)), fdbKey),
    'bridge fdb',
  );
  t.true(fdb.some((e) => e.mac === w.learned && e.ifname === 'tp' && e.state === '' && !e.flags?.includes('self')), 'the learned entry');
  t.true(fdb.some((e) => e.mac === '0a:11:22:33:44:66' && e.state === 'static'), 'the static entry');

  const neighKeys = { dst: 1, dev: 1, lladdr: 1, state: 1 };
  const neighbours = await iproute.neighbours(w.node.path, w.hostVeth);
  t.deepEqual(
    byKey(neighbours.map((n) => pick(n as unknown as Record<string, unknown>, neighKeys)), (n) => String(n.dst)),
    byKey(ipJson(w.node, 'ip', 'neigh', 'show', 'dev', w.hostVeth).map((n) => pick({ ...n, dev: w.hostVeth }, neighKeys)), (n) => String(n.dst)),
    'neighbours',
  );
  t.deepEqual(neighbours.find((n) => n.dst === '10.77.0.9')?.state, ['FAILED']);
  t.is(neighbours.find((n) => n.dst === '10.77.0.10'), undefined, 'NOARP entries are left out, as by iproute2');

  const routeKeys = { dst: 1, dev: 1, scope: 1 };
  for (const dev of [w.hostVeth, 'dm']) {
    t.deepEqual(
      byKey((await iproute.routes(w.node.path, dev)).map((r) => pick(r as unknown as Record<string, unknown>, routeKeys)), (r) => String(r.dst)),
      byKey(ipJson(w.node, 'ip', '-4', 'route', 'show', 'dev', dev).map((r) => pick({ ...r, dev }, routeKeys)), (r) => String(r.dst)),
      `routes via ${dev}`,
    );
  }
  t.deepEqual(
    (await iproute.routes(w.node.path, w.hostVeth)).map((r) => r.dst).sort(),
    ['10.77.0.7', '10.78.0.0/16'],
  );
});

test('one read holds every kind asked for; the caller\'s own netns without a path', async (t) => {
  const w = world(t);
  const snap = await readNetns(w.pod.path, ['addresses', 'fdb', 'neighbours', 'routes']);
  t.true(snap.links.some((l) => l.ifname === 'k6t-eth0' && l.linkinfo?.info_kind === 'bridge'));
  t.true(snap.addresses.some((a) => a.ifname === 'eth0' && a.addr_info.some((i) => i.local === '10.77.0.7' && i.scope === 'global')));
  t.true(snap.fdb('k6t-eth0').some((e) => e.mac === w.learned));
  t.deepEqual(snap.fdb('no-such-bridge'), []);
  const links = await readNetns(undefined);
  t.true(links.links.some((l) => l.ifname === 'lo'));
});

test('a netns that does not exist: ENOENT from open, on the promise', async (t) => {
  const err = await t.throwsAsync(addon.netlinkDump(`/var/run/netns/${uniqueName('x')}`, ['links']));
  t.like(err, { code: 'ENOENT', op: 'open netns' });
  const bad = t.throws(() => addon.netlinkDump(undefined, ['links', 'bogus' as 'links']));
  t.is(bad?.name, 'TypeError');
});
