/**
 * The addon's netlink watcher: link, neighbour and bridge FDB notifications
 * from a netns, tc filters and qdiscs removed (not added), the end of a subscription (its socket closed, no fd left,
 * the netns it held freed), and through lib/daemon/monitor.ts.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import test from 'ava';
import { Monitor } from '../../lib/daemon/monitor.js';
import type { NetlinkBatch, NetlinkEvent } from '../../lib/native.js';
import { addon, openObject, program } from './common.js';
import { netns, uniqueName, type Netns } from '../helpers/netns.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const openFds = () => fs.readdirSync('/proc/self/fd').length;

/** This process's children (of every thread; a thread that ended meanwhile, such as a netns thread, has none). */
const childProcesses = () =>
  fs
    .readdirSync('/proc/self/task')
    .flatMap((task) => {
      try {
        return fs.readFileSync(`/proc/self/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ESRCH') return [];
        throw e;
      }
    })
    .sort();

/** Collects the events of one subscription; `until` waits for one that matches. */
class Events {
  readonly seen: NetlinkEvent[] = [];
  readonly batches: NetlinkBatch[] = [];

  onBatch = (batch: NetlinkBatch): void => {
    this.batches.push(batch);
    this.seen.push(...batch.events);
  };

  async until(match: (e: NetlinkEvent) => boolean, what: string, timeoutMs = 3000): Promise<NetlinkEvent> {
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(10)) {
      const e = this.seen.find(match);
      if (e) return e;
    }
    throw new Error(`no event: ${what}; saw ${JSON.stringify(this.seen)}`);
  }
}

function linkExists(ns: Netns, ifname: string): boolean {
  return spawnSync('nsenter', [`--net=${ns.path}`, 'ip', 'link', 'show', 'dev', ifname], { stdio: 'ignore' }).status === 0;
}

// warm-up: the watcher's epoll fd is created with the first subscription and stays
test.before(async () => {
  addon.unwatchNetlink(await addon.watchNetlink(undefined, () => undefined));
});

test.serial('link add / delete, neighbours and FDB entries of a netns, named in that netns', async (t) => {
  const ns = netns(t, 'w');
  const events = new Events();
  const id = await addon.watchNetlink(ns.path, events.onBatch);
  t.teardown(() => addon.unwatchNetlink(id));

  ns.ip('link', 'add', 'br0', 'type', 'bridge');
  ns.ip('link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  const added = await events.until((e) => e.kind === 'link' && e.ifname === 'va' && !e.deleted, 'va added');
  t.true(added.kind === 'link' && added.ifindex > 0);

  ns.ip('link', 'set', 'va', 'up');
  ns.ip('link', 'set', 'vb', 'up');
  ns.ip('neigh', 'add', '10.1.2.3', 'lladdr', '0a:00:00:00:00:01', 'dev', 'va', 'nud', 'permanent');
  t.deepEqual(await events.until((e) => e.kind === 'neigh' && e.ip === '10.1.2.3', 'neighbour added'), {
    kind: 'neigh',
    deleted: false,
    ip: '10.1.2.3',
    dev: 'va',
    mac: '0a:00:00:00:00:01',
  });
  ns.ip('neigh', 'del', '10.1.2.3', 'dev', 'va');
  await events.until((e) => e.kind === 'neigh' && e.ip === '10.1.2.3' && e.deleted, 'neighbour deleted');

  ns.ip('link', 'set', 'vb', 'master', 'br0');
  ns.run('bridge', ['fdb', 'add', '0a:00:00:00:00:02', 'dev', 'vb', 'master', 'static']);
  t.deepEqual(await events.until((e) => e.kind === 'fdb' && e.mac === '0a:00:00:00:00:02' && !e.deleted, 'FDB entry added'), {
    kind: 'fdb',
    deleted: false,
    dev: 'vb',
    mac: '0a:00:00:00:00:02',
  });
  ns.run('bridge', ['fdb', 'del', '0a:00:00:00:00:02', 'dev', 'vb', 'master']);
  await events.until((e) => e.kind === 'fdb' && e.mac === '0a:00:00:00:00:02' && e.deleted, 'FDB entry deleted');

  ns.ip('link', 'del', 'va');
  await events.until((e) => e.kind === 'link' && e.ifname === 'va' && e.deleted, 'va deleted');
  await events.until((e) => e.kind === 'link' && e.ifname === 'vb' && e.deleted, 'its peer deleted with it');
  t.true(events.batches.every((b) => !b.lost && b.ended === undefined));
});

test.serial('tc: a filter and a qdisc removed are events (named by their device), added ones are not', async (t) => {
  const ns = netns(t, 'w');
  ns.ip('link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  const obj = openObject(t);
  const events = new Events();
  const id = await addon.watchNetlink(ns.path, events.onBatch);
  t.teardown(() => addon.unwatchNetlink(id));
  for (const dev of ['va', 'vb']) addon.attach({ netns: ns.path, ifname: dev, hook: 'ingress', mode: 'clsact', progFd: program(obj, 'fixup').fd, handle: 1, priority: 1 });
  ns.ip('link', 'set', 'va', 'up'); // a link event after the additions: they were read by then
  await events.until((e) => e.kind === 'link' && e.ifname === 'va' && !e.deleted, 'va up');
  t.deepEqual(events.seen.filter((e) => e.kind === 'tc'), [], 'additions are not reported');

  ns.run('tc', ['filter', 'del', 'dev', 'va', 'ingress']);
  const filter = await events.until((e) => e.kind === 'tc' && e.dev === 'va', 'filter removed at va');
  t.like(filter, { kind: 'tc', deleted: true, what: 'filter', dev: 'va' });
  ns.run('tc', ['qdisc', 'del', 'dev', 'vb', 'clsact']);
  const qdisc = await events.until((e) => e.kind === 'tc' && e.dev === 'vb' && e.what === 'qdisc', 'qdisc removed at vb');
  t.true(qdisc.kind === 'tc' && qdisc.ifindex > 0);
});

test.serial('names follow renames and links that existed before subscribing', async (t) => {
  const ns = netns(t, 'w');
  ns.ip('link', 'add', 'old0', 'type', 'bridge');
  ns.ip('link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  ns.ip('link', 'set', 'va', 'master', 'old0');
  const events = new Events();
  const id = await addon.watchNetlink(ns.path, events.onBatch);
  t.teardown(() => addon.unwatchNetlink(id));
  ns.run('bridge', ['fdb', 'add', '0a:00:00:00:00:03', 'dev', 'va', 'master', 'static']);
  await events.until((e) => e.kind === 'fdb' && e.mac === '0a:00:00:00:00:03' && e.dev === 'va', 'FDB entry on va');
  ns.ip('link', 'set', 'va', 'down');
  ns.ip('link', 'set', 'va', 'name', 'vc');
  ns.run('bridge', ['fdb', 'add', '0a:00:00:00:00:04', 'dev', 'vc', 'master', 'static']);
  await events.until((e) => e.kind === 'fdb' && e.mac === '0a:00:00:00:00:04' && e.dev === 'vc', 'FDB entry on the renamed port');
  t.pass();
});

test.serial('unsubscribing closes the socket (no fd left) and releases the netns it held', async (t) => {
  const node = netns(t, 'wn');
  const before = openFds();
  const ids: number[] = [];
  const pods = Array.from({ length: 5 }, () => netns(t, 'wp'));
  for (const pod of pods) ids.push(await addon.watchNetlink(pod.path, () => undefined));
  t.is(openFds(), before + pods.length, 'one socket per subscription, nothing else');
  for (const id of ids) t.true(addon.unwatchNetlink(id));
  t.false(addon.unwatchNetlink(ids[0]!), 'a second unwatch finds nothing');
  t.is(openFds(), before, 'every socket closed');

  // a subscription holds its netns: deleting the netns file does not free it (nor its veth) until unwatch
  const pod = netns(t, 'wp');
  const hostVeth = uniqueName('h');
  node.ip('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0-nic', 'netns', pod.name);
  const id = await addon.watchNetlink(pod.path, () => undefined);
  pod.delete();
  await sleep(300);
  t.true(linkExists(node, hostVeth), 'held while subscribed');
  addon.unwatchNetlink(id);
  const deadline = Date.now() + 5000;
  while (linkExists(node, hostVeth) && Date.now() < deadline) await sleep(20);
  t.false(linkExists(node, hostVeth), 'the netns (and with it the veth pair) is freed after unwatch');
  t.is(openFds(), before);
});

test.serial('a netns that does not exist: ENOENT, no fd left; bad arguments', async (t) => {
  const before = openFds();
  const err = await t.throwsAsync(addon.watchNetlink(`/var/run/netns/${uniqueName('x')}`, () => undefined));
  t.like(err, { code: 'ENOENT' });
  t.is(openFds(), before);
  t.is((await t.throwsAsync(addon.watchNetlink(undefined, 42 as unknown as () => void)))?.name, 'TypeError');
});

test.serial('Monitor: events of a netns until stop(); a netns that cannot be entered ends it', async (t) => {
  const ns = netns(t, 'w');
  const before = openFds();
  const seen: NetlinkEvent[] = [];
  const children = childProcesses();
  const m = new Monitor({ netns: ns.path, onEvent: (e) => seen.push(e), onExit: () => t.fail('no exit before stop()') });
  t.deepEqual(childProcesses(), children, 'no process');
  await m.ready; // subscribed (off the JS thread): events from here on
  ns.ip('link', 'add', 'mx', 'type', 'bridge');
  for (let i = 0; i < 300 && !seen.some((e) => e.kind === 'link' && e.ifname === 'mx'); i++) await sleep(10);
  t.true(seen.some((e) => e.kind === 'link' && e.ifname === 'mx' && !e.deleted));
  m.stop();
  t.is(openFds(), before);
  const count = seen.length;
  ns.ip('link', 'del', 'mx');
  await sleep(200);
  t.is(seen.length, count, 'nothing after stop()');

  const exit = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    new Monitor({ netns: `/var/run/netns/${uniqueName('x')}`, onEvent: () => undefined, onExit: (code, stderr) => resolve({ code, stderr }) });
  });
  t.regex(exit.stderr, /ENOENT|No such file/);
  t.is(openFds(), before);
});
