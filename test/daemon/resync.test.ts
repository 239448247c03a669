/**
 * What the daemon does when nothing tells it: its attachments removed by
 * someone else. A clsact filter removed in a pod (by `tc`, as another agent
 * or a person would) is an event to that pod's monitor, which verifies the
 * pod at once: it is back long before any resync. A tcx link detached sends
 * no event: the periodic resync, which looks into a fifth of the pods each
 * time, checks every other VM pod's tcx links from their pins, and attaches
 * again what is gone. Real packets through the emulated fast path before
 * and after.
 */
import { execFileSync } from 'node:child_process';
import test from 'ava';
import { announce } from '../../lib/lab/dynamic.js';
import { LOOK_ROUNDS } from '../../lib/daemon/reconciler.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';
import { startDaemon, State, type LogLine } from '../helpers/daemon.js';
import { exactlyCovered } from '../helpers/state.js';

const PINGS = { count: 20, intervalMs: 5, waitS: 1 };

test('a clsact filter or qdisc removed in a pod: its tc event verifies the pod, and vmpeer attaches again (no resync)', async (t) => {
  const l = await lab(t, { vmPods: 2, plainPods: 0 });
  await Promise.all(l.vms.map((vm) => announce(vm)));
  const root = `${bpffsDir(t)}/vmpeer`;
  // an hour: nothing here may wait for the periodic resync
  const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-`, args: ['--mode', 'clsact', '--resync-interval', '1h'] });
  await d.ready();
  const readyAt = d.logs.length;
  const [vm, other] = l.vms as [(typeof l.vms)[0], (typeof l.vms)[0]];
  const state = new State(t, root);
  exactlyCovered(t, root, vm, 'before');
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, 'every echo answered before');

  // every ingress filter at the uplink deleted: fixup with them
  let from = d.logs.length;
  execFileSync('nsenter', [`--net=${vm.podNs.path}`, 'tc', 'filter', 'del', 'dev', vm.nic.name, 'ingress']);
  const reattached = (x: LogLine, ifname: string) => x.change === 'attach' && x.netns === vm.podNs.path && x.ifname === ifname;
  await d.waitLog((x) => reattached(x, vm.nic.name), 5_000, from);
  const check = d.logs.slice(from).find((x) => x.msg === 'dropped a stale attachment record');
  t.truthy(check, 'the stale record was dropped first');
  exactlyCovered(t, root, vm, 'after the filter was deleted');
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, 'every echo answered after');

  // the guest port's qdisc deleted: from_guest (the bridge bypass) with it
  from = d.logs.length;
  execFileSync('nsenter', [`--net=${vm.podNs.path}`, 'tc', 'qdisc', 'del', 'dev', vm.tap, 'clsact']);
  await d.waitLog((x) => reattached(x, vm.tap), 5_000, from);
  exactlyCovered(t, root, vm, 'after the qdisc was deleted');
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, 'every echo answered after');
  t.false(d.logs.slice(readyAt).some((x) => x.change !== undefined && x.netns === other.podNs.path), 'the other pod was left alone');
  t.true(state.covered(other));
});

test('the periodic resync looks into a fifth of the pods, checks the others from their pins, and attaches again the tcx links detached meanwhile', async (t) => {
  const l = await lab(t, { vmPods: 5, plainPods: 0 });
  await Promise.all(l.vms.map((vm) => announce(vm)));
  const root = `${bpffsDir(t)}/vmpeer`;
  const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-`, args: ['--mode', 'tcx', '--resync-interval', '1s', '--log-level', 'trace'] });
  await d.ready();
  const state = new State(t, root);
  for (const vm of l.vms) exactlyCovered(t, root, vm, vm.podNs.name);

  // LOOK_ROUNDS periodic resyncs: each looks into ceil(pods / LOOK_ROUNDS) pods; together, into every pod
  const resyncs = (from: number) => d.logs.slice(from).filter((x) => x.msg === 'full resync done' && x.reason === 'periodic resync');
  let from = d.logs.length;
  await d.waitLog(() => resyncs(from).length >= 1, 5_000, from); // a resync that started before `from` may be half seen
  from = d.logs.indexOf(resyncs(from)[0]!) + 1;
  await d.waitLog(() => resyncs(from).length >= LOOK_ROUNDS, 15_000, from);
  const rounds = resyncs(from).slice(0, LOOK_ROUNDS);
  const pods = rounds[0]!.pods as number;
  t.true(pods >= l.vms.length, `${pods} pods (the VM pods and the lab's other netns under the prefix)`);
  for (const r of rounds) {
    t.is(r.lookedInto, Math.ceil(pods / LOOK_ROUNDS), 'a fifth of the pods looked into');
    t.true((r.fromPins as number) >= l.vms.length - Math.ceil(pods / LOOK_ROUNDS), 'the other VM pods checked from their pins');
  }
  const end = d.logs.indexOf(rounds.at(-1)!);
  const looked = new Set(d.logs.slice(from, end + 1).filter((x) => x.msg === 'checked pod' && x.reason === 'periodic resync').map((x) => x.netns));
  for (const vm of l.vms) t.true(looked.has(vm.podNs.path), `${vm.podNs.name} looked into within ${LOOK_ROUNDS} resyncs`);

  // every uplink's tcx link detached (BPF_LINK_DETACH: no netlink event); one resync finds them all
  for (const r of state.dp.attachments().filter((x) => x.program === 'fixup')) {
    t.is(r.mode, 'tcx');
    execFileSync('bpftool', ['link', 'detach', 'pinned', r.pin]);
  }
  for (const vm of l.vms) t.deepEqual(state.hook(vm.podNs.path, vm.nic.name), [], 'detached');
  from = d.logs.length;
  await d.waitLog(() => l.vms.every((vm) => d.logs.slice(from).some((x) => x.change === 'attach' && x.netns === vm.podNs.path && x.ifname === vm.nic.name)), 10_000, from);
  const found = d.logs.slice(from).filter((x) => x.msg === 'checked pod' && x.reason === 'periodic resync: an attachment is not as last verified');
  t.true(found.length >= l.vms.length - Math.ceil(pods / LOOK_ROUNDS), `${found.length} pods found from their pins`);
  const resyncsTaken = resyncs(from).filter((x) => d.logs.indexOf(x) <= Math.max(...l.vms.map((vm) => d.logs.findIndex((y, i) => i >= from && y.change === 'attach' && y.netns === vm.podNs.path)))).length;
  t.true(resyncsTaken <= 2, `all attached again within ${resyncsTaken} resyncs (the slices alone would take ${LOOK_ROUNDS})`);
  for (const vm of l.vms) {
    exactlyCovered(t, root, vm, `${vm.podNs.name} after its link was detached`);
    t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, `${vm.podIp}: every echo answered`);
  }
});
