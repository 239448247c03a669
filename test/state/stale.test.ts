/**
 * Records and endpoints that outlive their pod (deleted without detach): the
 * CLI verifies a record against the kernel before it believes it, `status`
 * shows what is stale and `gc` removes it; the daemon's GC of a CLI
 * attachment outside its scope removes the filter too; a renamed uplink is
 * recorded again under its new name within one check.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { announce, DynamicPods } from '../../lib/lab/dynamic.js';
import { run } from '../../lib/lab/exec.js';
import { native } from '../../lib/native.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';
import { vmpeer } from '../../lib/testkit/cli.js';
import { inodeOf, startDaemon, State, until } from '../helpers/daemon.js';

const PING = { count: 10, intervalMs: 10 };

test('a pod deleted without detach: status shows its stale state, a new pod with its nsfs inode is attached for real, gc removes the rest', async (t) => {
  const l = await lab(t, { vmPods: 0, plainPods: 0 });
  const pods = new DynamicPods(l);
  t.teardown(() => pods.destroy());
  const root = `${bpffsDir(t)}/vmpeer`;
  const node = l.node.ns.path;

  const old = await pods.add();
  const oldInode = inodeOf(old.podNs.path)!;
  // the pod's bridge kept: one record (fixup's) to follow through the inode's reuse
  t.is((await vmpeer(node, ['attach', '--netns', old.podNs.name, '--keep-bridge', '--bpffs', root])).code, 0);
  await pods.remove(old); // no detach: the record and the endpoint stay

  const status = JSON.parse((await vmpeer(node, ['status', '--json', '--bpffs', root])).stdout);
  t.deepEqual(status.stale.map((s: { kind: string }) => s.kind).sort(), ['endpoint', 'record'], JSON.stringify(status.stale));

  // the next pod (same IP; the kernel usually hands out the freed nsfs inode again)
  const pod = await pods.add();
  const inode = inodeOf(pod.podNs.path)!;
  const record = fs.readdirSync(path.join(root, 'filters')).find((f) => new RegExp(`_ns${oldInode}(c\\d+)?_`).test(f))!;
  if (inode !== oldInode) {
    // not reused this time: give the stale record the new pod's inode, which is what reuse does
    fs.renameSync(path.join(root, 'filters', record), path.join(root, 'filters', record.replace(`_ns${oldInode}`, `_ns${inode}`)));
  }
  t.log(inode === oldInode ? 'nsfs inode reused' : 'nsfs inode not reused: record renamed to the new inode');
  t.is((await l.ping(l.client, pod.podIp, PING)).received, 1, 'the fault: the new pod is behind the fast path and not covered');
  const attach = await vmpeer(node, ['attach', '--netns', pod.podNs.name, '--keep-bridge', '--bpffs', root]);
  t.is(attach.code, 0, attach.stderr);
  t.regex(attach.stdout, /^attached fixup/m, 'attached for real, not "kept"');
  t.deepEqual(native().listHook({ netns: pod.podNs.path, ifname: pod.nic.name, hook: 'ingress' }).map((e) => e.progName), ['fixup']);
  t.is((await l.ping(l.client, pod.podIp, PING)).received, 10, 'every echo through the fast path');

  // a second pod gone without detach: gc removes exactly its state
  const other = await pods.add();
  t.is((await vmpeer(node, ['attach', '--netns', other.podNs.name, '--bpffs', root])).code, 0);
  await pods.remove(other);
  const gc = await vmpeer(node, ['gc', '--bpffs', root]);
  t.is(gc.code, 0, gc.stderr);
  t.regex(gc.stdout, /removed record fixup/);
  t.regex(gc.stdout, /removed endpoint/);
  const after = JSON.parse((await vmpeer(node, ['status', '--json', '--bpffs', root])).stdout);
  t.deepEqual(after.stale, []);
  t.is(after.attachments.length, 1);
  t.is(after.endpoints.length, 1);
  t.is((await l.ping(l.client, pod.podIp, PING)).received, 10, 'the live pod is untouched');
  t.is((await vmpeer(node, ['detach', '--netns', pod.podNs.name, '--bpffs', root])).code, 0);
});

test("the daemon's GC of a CLI attachment outside its scope leaves no filter in the kernel", async (t) => {
  const l = await lab(t, { vmPods: 2, plainPods: 0 });
  const [inside, outside] = l.vms as [(typeof l.vms)[0], (typeof l.vms)[0]];
  await Promise.all(l.vms.map((vm) => announce(vm)));
  const root = `${bpffsDir(t)}/vmpeer`;
  const node = l.node.ns.path;
  t.is((await vmpeer(node, ['attach', '--netns', outside.podNs.name, '--bpffs', root])).code, 0);
  const d = startDaemon(t, { nodeNs: node, root, prefix: inside.podNs.name });
  await d.ready();
  const state = new State(t, root);
  t.true(state.covered(inside));
  t.false(state.dp.attachments().some((r) => r.netnsInode === inodeOf(outside.podNs.path)), 'the record is gone');
  t.deepEqual(state.hook(outside.podNs.path, outside.nic.name), [], 'and so is its filter');
});

test('a renamed uplink is recorded again under its new name within one check', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 0 });
  const vm = l.vms[0]!;
  await announce(vm);
  const root = `${bpffsDir(t)}/vmpeer`;
  const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-` });
  await d.ready();
  const state = new State(t, root);
  t.true(state.covered(vm));
  const from = d.logs.length;
  await run('ip', ['-n', vm.podNs.name, 'link', 'set', vm.nic.name, 'down']);
  await run('ip', ['-n', vm.podNs.name, 'link', 'set', vm.nic.name, 'name', 'eth0-nix']);
  await run('ip', ['-n', vm.podNs.name, 'link', 'set', 'eth0-nix', 'up']);
  await until(() => state.dp.attachments().some((r) => r.ifname === 'eth0-nix'), 10_000, 50);
  t.false(state.dp.attachments().some((r) => r.ifname === vm.nic.name), 'the old name’s record is gone');
  t.deepEqual(state.hook(vm.podNs.path, 'eth0-nix').map((e) => e.progName), ['fixup'], 'one program at the renamed uplink');
  t.deepEqual(d.logs.slice(from).filter((x) => x.msg === 'pod check failed'), [], 'no failed check on the way');
  t.is((await l.ping(l.client, vm.podIp, PING)).received, 10);
});
