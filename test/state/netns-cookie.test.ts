/**
 * Records name their netns by nsfs inode and netns cookie: a pod deleted
 * without detach leaves its record, and the next netns may get its inode
 * again. The cookie tells that netns apart even where the hook check alone
 * would believe the record (an attachment of the record's program is at its
 * hook); `status` and `gc` say so, `attach` attaches for real. A record of
 * an earlier vmpeer (no cookie) is read, verified by inode and hook, and
 * given the cookie on the next write, by the CLI and by the daemon.
 */
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { TC_HANDLE, TC_PRIORITY } from '../../lib/bpf/link.js';
import { readNetnsId } from '../../lib/dataplane/records.js';
import { DynamicPods } from '../../lib/lab/dynamic.js';
import { native } from '../../lib/native.js';
import { vmpeer } from '../../lib/testkit/cli.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';
import { inodeOf, startDaemon, State, until } from '../helpers/daemon.js';

const PING = { count: 10, intervalMs: 10 };
/** What an earlier vmpeer (or a kernel before 5.14) writes: a record without a cookie. */
const NO_COOKIE = { VMPEER_TEST_NETNS_COOKIE: 'absent' };
/** These cases are about one record (fixup's) and its name: the pod's bridge is kept, so there is no from_guest record beside it. */
const KEEP = ['--keep-bridge'];

const filtersOf = (root: string) => fs.readdirSync(path.join(root, 'filters'));

/** The id of the program a record pins. */
function progOf(root: string, name: string): number {
  const fd = native().objGet(path.join(root, 'filters', name));
  try {
    return native().progIdOf(fd);
  } finally {
    native().closeFd(fd);
  }
}

async function statusOf(node: string, root: string): Promise<{ stale: { kind: string; what: string; why: string }[]; attachments: unknown[] }> {
  const r = await vmpeer(node, ['status', '--json', '--bpffs', root]);
  if (r.code !== 0) throw new Error(`status: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function setup(t: ExecutionContext) {
  const l = await lab(t, { vmPods: 0, plainPods: 0 });
  const pods = new DynamicPods(l);
  t.teardown(() => pods.destroy());
  return { l, pods, root: `${bpffsDir(t)}/vmpeer`, node: l.node.ns.path };
}

test('a new netns with the nsfs inode of a pod deleted without detach is told apart by its cookie', async (t) => {
  const { l, pods, root, node } = await setup(t);
  const old = await pods.add();
  const oldId = await readNetnsId(native(), old.podNs.path);
  t.not(oldId.cookie, null, 'this kernel has netns cookies (Linux >= 5.14)');
  t.is((await vmpeer(node, ['attach', '--netns', old.podNs.name, ...KEEP, '--bpffs', root])).code, 0);
  const name = filtersOf(root).find((f) => f.startsWith('fixup_'))!;
  t.true(name.includes(`_ns${oldId.inode}c${oldId.cookie}_`), `the record carries inode and cookie: ${name}`);
  await pods.remove(old); // no detach: the record stays

  const pod = await pods.add();
  const id = await readNetnsId(native(), pod.podNs.path);
  if (id.inode !== oldId.inode) {
    // not reused this time: give the stale record the new netns's inode, which is what reuse does
    fs.renameSync(path.join(root, 'filters', name), path.join(root, 'filters', name.replace(`_ns${oldId.inode}c`, `_ns${id.inode}c`)));
  }
  t.log(id.inode === oldId.inode ? 'nsfs inode reused' : 'nsfs inode not reused: record renamed to the new inode');
  const stalePin = path.join(root, 'filters', filtersOf(root)[0]!);
  // the record's own program at vmpeer's handle and priority in the new netns: the hook check alone believes the record now
  const n = native();
  const fd = n.objGet(stalePin);
  try {
    n.attach({ netns: pod.podNs.path, ifname: pod.nic.name, hook: 'ingress', mode: 'clsact', progFd: fd, handle: TC_HANDLE, priority: TC_PRIORITY });
  } finally {
    n.closeFd(fd);
  }

  const status = await statusOf(node, root);
  t.deepEqual(
    status.stale.filter((s) => s.kind === 'record').map((s) => s.why),
    [`its network namespace is gone: inode ${id.inode} now belongs to another one (netns cookie ${id.cookie}, the record's ${oldId.cookie})`],
    JSON.stringify(status.stale),
  );

  const attach = await vmpeer(node, ['attach', '--netns', pod.podNs.name, ...KEEP, '--bpffs', root]);
  t.is(attach.code, 0, attach.stderr);
  t.false(fs.existsSync(stalePin), 'the stale record is gone');
  t.deepEqual(filtersOf(root), [`fixup_ingress_ns${id.inode}c${id.cookie}_${pod.nic.name}`], 'one record, of this netns');
  t.deepEqual(n.listHook({ netns: pod.podNs.path, ifname: pod.nic.name, hook: 'ingress' }).map((e) => e.progName), ['fixup']);
  t.deepEqual((await statusOf(node, root)).stale, []);
  t.is((await l.ping(l.client, pod.podIp, PING)).received, 10, 'every echo through the fast path');
  t.is((await vmpeer(node, ['detach', '--netns', pod.podNs.name, '--bpffs', root])).code, 0);
});

test('a record without a cookie (an earlier vmpeer, a kernel before 5.14) is verified the old way and gets its cookie on the next write', async (t) => {
  const { pods, root, node } = await setup(t);
  const pod = await pods.add();
  const id = await readNetnsId(native(), pod.podNs.path);
  t.is((await vmpeer(node, ['attach', '--netns', pod.podNs.name, ...KEEP, '--bpffs', root], NO_COOKIE)).code, 0);
  const before = filtersOf(root);
  t.deepEqual(before, [`fixup_ingress_ns${id.inode}_${pod.nic.name}`], 'the previous form of the name');
  const progId = progOf(root, before[0]!);
  t.deepEqual((await statusOf(node, root)).stale, [], 'read and believed');

  const again = await vmpeer(node, ['attach', '--netns', pod.podNs.name, ...KEEP, '--bpffs', root]);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /^already attached: fixup/m, 'nothing attached anew');
  t.deepEqual(filtersOf(root), [`fixup_ingress_ns${id.inode}c${id.cookie}_${pod.nic.name}`], 'the same record, renamed with its cookie');
  t.is(progOf(root, filtersOf(root)[0]!), progId, 'the same attachment');

  // the same record again without a cookie: the daemon adopts it and gives it one
  fs.renameSync(path.join(root, 'filters', filtersOf(root)[0]!), path.join(root, 'filters', before[0]!));
  const d = startDaemon(t, { nodeNs: node, root, prefix: pod.podNs.name, args: KEEP });
  await d.ready();
  await until(() => filtersOf(root).includes(`fixup_ingress_ns${id.inode}c${id.cookie}_${pod.nic.name}`), 5000);
  t.deepEqual(filtersOf(root), [`fixup_ingress_ns${id.inode}c${id.cookie}_${pod.nic.name}`]);
  t.true(new State(t, root).covered(pod));
  t.true(d.logs.some((x) => /adopted fixup/.test(x.msg ?? '')), 'adopted, not attached anew');
  t.is(inodeOf(pod.podNs.path), id.inode);
});
