/**
 * The daemon's bridge bypass, the default: every VM pod gets from_guest at
 * its guest port and an endpoint that asks for the bypass, so its guest is
 * reached with the guest port disabled on the bridge; with --keep-bridge the
 * bypass goes again, and the bridge is back on the path. A pod whose bridge
 * has a second guest port keeps its bridge, and the daemon says why.
 */
import test from 'ava';
import { announce } from '../../lib/lab/dynamic.js';
import { VM_TAP } from '../../lib/lab/addressing.js';
import { runIn } from '../../lib/lab/exec.js';
import { native } from '../../lib/native.js';
import { netnsInode } from '../../lib/dataplane/records.js';
import { podOfProgram } from '../../lib/dataplane/pod-instances.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';
import { startDaemon, State, until } from '../helpers/daemon.js';

const PINGS = { count: 20, intervalMs: 10, waitS: 1 };

const guestPortState = (podNs: string, state: 'disabled' | 'forwarding') =>
  runIn(podNs, 'bridge', ['link', 'set', 'dev', VM_TAP, 'state', state === 'disabled' ? '0' : '3']);

test('by default: from_guest at every guest port, the guests reached past their bridges; taken down by --keep-bridge', async (t) => {
  const l = await lab(t, { vmPods: 2, plainPods: 0 });
  for (const vm of l.vms) await announce(vm);
  const root = `${bpffsDir(t)}/vmpeer`;
  const base = { nodeNs: l.node.ns.path, root, prefix: `${l.name}-` };
  const n = native();

  const d = startDaemon(t, { ...base, args: [] });
  await d.ready();
  const state = new State(t, root);
  for (const vm of l.vms) {
    t.deepEqual(state.hook(vm.podNs.path, VM_TAP).map((e) => e.progName), ['from_guest'], `from_guest at ${vm.podNs.name}'s guest port`);
    t.deepEqual(state.dp.endpoint(vm.podIp)!.bypass, { uplinkIfindex: n.ifindex(vm.podNs.path, vm.nic.name), guestIfindex: n.ifindex(vm.podNs.path, VM_TAP) });
  }
  t.is(d.changes('attach').filter((c) => c.program === 'from_guest').length, 2);
  // covered at once through the bridge (the shared fixup), bypassed once the pod's own programs are loaded
  // (lib/daemon/bypass-warmup.ts): no pod's first check waits for a verifier run
  for (const vm of l.vms) {
    const mine = d.logs.filter((x) => x.netns === vm.podNs.path && x.change !== undefined).map((x) => `${x.change} ${x.program ?? ''}`.trim());
    t.deepEqual(mine.filter((c) => /fixup|from_guest/.test(c)), ['attach fixup', 'upgrade fixup', 'attach from_guest'], `${vm.podNs.name}: ${mine.join(', ')}`);
  }
  // each pod runs its own instances, which take the bypass only for that pod's endpoints
  const serves = (vm: (typeof l.vms)[number]) =>
    [...state.hook(vm.podNs.path, vm.nic.name), ...state.hook(vm.podNs.path, VM_TAP)].filter((e) => e.progName === 'fixup' || e.progName === 'from_guest').map((e) => podOfProgram(n, e.progId));
  for (const vm of l.vms) t.deepEqual(serves(vm), [netnsInode(vm.podNs.path), netnsInode(vm.podNs.path)], `${vm.podNs.name}: fixup and from_guest serve their own pod`);

  const vm = l.vms[0]!;
  // neighbours first: ARP still takes the bridge
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, 'every echo answered');
  await guestPortState(vm.podNs.path, 'disabled');
  t.teardown(() => guestPortState(vm.podNs.path, 'forwarding').catch(() => {}));
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, 'guest port disabled on the bridge: every echo still answered');
  const c = state.dp.endpoint(vm.podIp)!.counters;
  t.true(c.bypassedIn >= BigInt(PINGS.count) && c.bypassedOut >= BigInt(PINGS.count), `in ${c.bypassedIn}, out ${c.bypassedOut}`);
  t.deepEqual(await d.kill('SIGTERM'), { code: 0, signal: null });

  const plain = startDaemon(t, { ...base, args: ['--cleanup-on-exit'], env: { VMPEER_KEEP_BRIDGE: 'true' } });
  await plain.ready();
  for (const v of l.vms) {
    t.deepEqual(state.hook(v.podNs.path, VM_TAP), [], 'from_guest detached');
    t.is(state.dp.endpoint(v.podIp)!.bypass, null, 'the endpoint no longer asks for the bypass');
    t.deepEqual(serves(v), [0], 'the shared fixup again, replaced in place');
  }
  t.is(plain.changes('detach').filter((c) => c.program === 'from_guest').length, 2);
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, 0, 'the disabled guest port cuts the guest off: the bridge is on the path again');
  await guestPortState(vm.podNs.path, 'forwarding');
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, 'fixed through the bridge');
  t.deepEqual(await plain.kill('SIGTERM'), { code: 0, signal: null });
  t.deepEqual(state.pins(), []);
});

test('a pod whose bridge has a second guest port keeps its bridge, logged; the bypass comes when the port goes', async (t) => {
  const l = await lab(t, { vmPods: 2, plainPods: 0 });
  for (const vm of l.vms) await announce(vm);
  const [two, one] = [l.vms[0]!, l.vms[1]!];
  await runIn(two.podNs.path, 'ip', ['link', 'add', 'vpt-extra', 'type', 'veth', 'peer', 'name', 'vpt-extra-p']);
  await runIn(two.podNs.path, 'ip', ['link', 'set', 'vpt-extra', 'master', two.bridge]);
  const root = `${bpffsDir(t)}/vmpeer`;
  const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-` });
  await d.ready();
  const state = new State(t, root);
  const kept = await d.waitLog((x) => x.netns === two.podNs.path && /keeping the bridge/.test(String(x.msg)));
  t.is(kept.why, `${two.bridge} has 2 guest ports (tap0, vpt-extra)`);
  t.deepEqual(state.hook(two.podNs.path, VM_TAP), [], 'no from_guest where the bridge stays');
  t.is(state.dp.endpoint(two.podIp)!.bypass, null);
  t.truthy(state.dp.endpoint(one.podIp)!.bypass, 'the other pod is bypassed');
  t.deepEqual(state.hook(one.podNs.path, VM_TAP).map((e) => e.progName), ['from_guest']);
  t.is((await l.ping(l.client, two.podIp, PINGS)).received, PINGS.count, 'fixed through the bridge');

  await runIn(two.podNs.path, 'ip', ['link', 'del', 'vpt-extra']);
  await d.waitLog((x) => x.netns === two.podNs.path && /the bridge bypass is safe for this pod again/.test(String(x.msg)), 20_000);
  await until(() => state.dp.endpoint(two.podIp)!.bypass !== null, 10_000);
  t.deepEqual(state.hook(two.podNs.path, VM_TAP).map((e) => e.progName), ['from_guest']);
  await guestPortState(two.podNs.path, 'disabled');
  t.teardown(() => guestPortState(two.podNs.path, 'forwarding').catch(() => {}));
  t.is((await l.ping(l.client, two.podIp, PINGS)).received, PINGS.count, 'past the bridge now');
  t.deepEqual(await d.kill('SIGTERM'), { code: 0, signal: null });
});
