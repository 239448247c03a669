/**
 * vmpeer removes only what it made, and a CLI never changes state under a
 * running daemon: the daemon holds the node lock for its life.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { announce, DynamicPods } from '../../lib/lab/dynamic.js';
import { BpfObject } from '../../lib/bpf/object.js';
import { OBJECT_PATH } from '../../lib/dataplane/dataplane.js';
import { native } from '../../lib/native.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir, netns } from '../helpers/netns.js';
import { vmpeer } from '../../lib/testkit/cli.js';
import { startDaemon, State, until } from '../helpers/daemon.js';

/** Pins a map of a freshly loaded object at `pin`, as another agent would pin its own. */
function foreignPin(pin: string): void {
  const obj = BpfObject.open(OBJECT_PATH);
  try {
    native().objPin(obj.map('stats').fd, pin);
  } finally {
    obj.close();
  }
}

test('a no-op detach beside a running daemon changes nothing: the root survives, a later VM pod is covered, /metrics stays 200', async (t) => {
  const l = await lab(t, { vmPods: 0, plainPods: 0 });
  const root = `${bpffsDir(t)}/vmpeer`;
  const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-` });
  await d.ready();

  const detach = await vmpeer(l.node.ns.path, ['detach', '--accelerate', '--host-dev', 'eth0', '--bpffs', root]);
  t.is(detach.code, 0, detach.stderr);
  t.regex(detach.stdout, /nothing attached/);
  t.true(fs.existsSync(path.join(root, 'maps', 'endpoints')), 'the state root survives');
  t.true(fs.existsSync(path.join(root, 'links')) && fs.existsSync(path.join(root, 'filters')));

  // a change beside the daemon is refused, cleanly
  const attach = await vmpeer(l.node.ns.path, ['attach', '--accelerate', '--host-dev', 'eth0', '--bpffs', root]);
  t.is(attach.code, 1);
  t.regex(attach.stderr, /the vmpeer daemon \(pid \d+\) manages the state/);
  t.notRegex(attach.stderr, /\n\s+at /, 'no stack trace');

  const vm = await new DynamicPods(l).add();
  await announce(vm);
  const state = new State(t, root);
  await until(() => state.covered(vm), 10_000, 50);
  t.is((await l.ping(l.client, vm.podIp, { count: 10, intervalMs: 10 })).received, 10, 'the new VM pod is covered');
  t.is((await d.http('/metrics')).status, 200);
  t.is((await d.http('/readyz')).status, 200);
});

test('a foreign pin in the state directory survives attach, detach and the daemon’s --cleanup-on-exit; a root holding foreign entries is refused with exit 2', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 0 });
  const vm = l.vms[0]!;
  await announce(vm);
  const node = l.node.ns.path;

  // another agent's pin directly in the directory given as --bpffs: refused, untouched
  const shared = bpffsDir(t);
  foreignPin(path.join(shared, 'other_agent_map'));
  for (const args of [['attach', '--netns', vm.podNs.name], ['detach', '--netns', vm.podNs.name], ['attach', '--accelerate', '--host-dev', 'eth0']]) {
    const r = await vmpeer(node, [...args, '--bpffs', shared]);
    t.is(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    t.regex(r.stderr, /holds other_agent_map, which vmpeer did not create/);
  }
  t.deepEqual(fs.readdirSync(shared), ['other_agent_map']);

  // a foreign pin that appeared inside vmpeer's own folders later
  const root = `${bpffsDir(t)}/vmpeer`;
  t.is((await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root])).code, 0);
  const foreign = path.join(root, 'links', 'other_agent_link');
  foreignPin(foreign);
  const detach = await vmpeer(node, ['detach', '--netns', vm.podNs.name, '--bpffs', root]);
  t.is(detach.code, 0, detach.stderr);
  t.true(fs.existsSync(foreign), 'survives detach');
  t.false(fs.existsSync(path.join(root, 'maps')), "vmpeer's own empty folders and pins are gone");
  t.deepEqual(fs.readdirSync(root), ['links']);
  t.is((await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root])).code, 0);
  t.true(fs.existsSync(foreign), 'survives attach');

  const d = startDaemon(t, { nodeNs: node, root, prefix: `${l.name}-`, args: ['--cleanup-on-exit'] });
  await d.ready();
  t.deepEqual(await d.kill('SIGTERM'), { code: 0, signal: null });
  t.true(fs.existsSync(foreign), 'survives --cleanup-on-exit');
  t.deepEqual(fs.readdirSync(root), ['links']);
  t.deepEqual(fs.readdirSync(path.join(root, 'links')), ['other_agent_link']);
  t.deepEqual(native().listHook({ netns: vm.podNs.path, ifname: vm.nic.name, hook: 'ingress' }), [], 'and vmpeer’s own attachment is gone');
});

test('a --bpffs root that is itself a bpffs mount point is refused with exit 2 (CLI and daemon)', async (t) => {
  const mnt = bpffsDir(t);
  const r = spawnSync('mount', ['-t', 'bpf', 'bpf', mnt], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.teardown(() => void spawnSync('umount', [mnt]));
  const before = fs.readdirSync(mnt); // a new bpffs has the kernel's own entries (maps.debug, progs.debug)
  const ns = netns(t);
  const attach = await vmpeer(ns.path, ['attach', '--accelerate', '--host-dev', 'lo', '--bpffs', mnt]);
  t.is(attach.code, 2);
  t.regex(attach.stderr, /is a bpffs mount point/);
  const daemon = await vmpeer(ns.path, ['daemon', '--bpffs', mnt, '--metrics-address', '127.0.0.1:0', '--netns-dir', mnt]);
  t.is(daemon.code, 2, daemon.stdout + daemon.stderr);
  t.deepEqual(fs.readdirSync(mnt), before, 'nothing created on it');
});

test("pins removed under a running daemon (an older vmpeer's recursive removal): its next resync goes unready, says why, and rebuilds them from the kernel", async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 0 });
  const vm = l.vms[0]!;
  await announce(vm);
  const root = `${bpffsDir(t)}/vmpeer`;
  const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-`, args: ['--resync-interval', '1s'] });
  await d.ready();
  const from = d.logs.length;
  // what `vmpeer detach` of earlier versions did; the daemon may pin again while it runs (ENOTEMPTY), so retried
  fs.rmSync(root, { recursive: true, force: true, maxRetries: 20, retryDelay: 5 });
  const why = await d.waitLog((x) => x.msg.startsWith('not ready: vmpeer'), 10_000, from);
  t.true((why.missing as string[]).some((m) => m.includes('maps/endpoints')), JSON.stringify(why));
  await d.waitLog((x) => x.msg.startsWith('ready'), 10_000, from);
  t.is((await d.http('/readyz')).status, 200);
  const state = new State(t, root);
  t.true(state.covered(vm), 'record and endpoint pinned again');
  t.deepEqual(state.hook(vm.podNs.path, vm.nic.name).map((e) => e.progName), ['fixup'], 'the filter adopted, not doubled');
  t.is((await l.ping(l.client, vm.podIp, { count: 10, intervalMs: 10 })).received, 10);
  t.is((await d.http('/metrics')).status, 200);
  // and the CLI sees the daemon's lock on the new directory
  const attach = await vmpeer(l.node.ns.path, ['attach', '--netns', vm.podNs.name, '--bpffs', root]);
  t.is(attach.code, 1);
  t.regex(attach.stderr, /vmpeer daemon \(pid \d+\) manages the state/);
});

test('a pinned map of another layout is refused with exit 1, naming the map and what to do', async (t) => {
  const root = `${bpffsDir(t)}/vmpeer`;
  fs.mkdirSync(path.join(root, 'maps'), { recursive: true });
  foreignPin(path.join(root, 'maps', 'endpoints')); // another shape under vmpeer's name, as another version would leave
  const ns = netns(t);
  const r = await vmpeer(ns.path, ['attach', '--accelerate', '--host-dev', 'lo', '--bpffs', root]);
  t.is(r.code, 1, r.stdout + r.stderr);
  t.regex(r.stderr, new RegExp(`the pinned map ${root}/maps/endpoints \\(.*\\) does not match this build's endpoints`));
  t.regex(r.stderr, /another vmpeer version made it/);
  t.notRegex(r.stderr, /too old/);
  t.deepEqual(native().listHook({ netns: ns.path, ifname: 'lo', hook: 'ingress' }), []);
  t.false(fs.existsSync(path.join(root, 'maps_next')), 'nothing staged: the refusal comes before any change');
});
