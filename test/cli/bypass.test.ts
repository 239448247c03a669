/**
 * The bridge bypass end to end on the lab: a plain `vmpeer attach` (the
 * bypass is the default; --bypass-bridge still asks for it) takes the VM
 * pod's bridge out of the guest's IP traffic in both directions. The proof:
 * with the guest port disabled on the bridge (it then forwards nothing to or
 * from the guest), every packet still arrives; with --keep-bridge, nothing
 * does. Behind the CNI-emulated fast path (fixup) and behind vmpeer's own
 * redirect (accelerate mode). A bridge with a second guest port keeps the
 * bridge on the path, and says why.
 */
import test, { type ExecutionContext } from 'ava';
import { Lab, type LabOptions } from '../../lib/lab/index.js';
import { VM_TAP } from '../../lib/lab/addressing.js';
import { runIn } from '../../lib/lab/exec.js';
import { bpffsDir } from '../helpers/netns.js';
import { vmpeer } from '../../lib/testkit/cli.js';

const PINGS = 20;
const FAST = { count: PINGS, intervalMs: 20, waitS: 1 };
const BR_STATE_DISABLED = 0;
const BR_STATE_FORWARDING = 3;

async function lab(t: ExecutionContext, options: Partial<LabOptions> = {}) {
  const l = await Lab.create({ prefix: 'vpt', vmPods: 1, plainPods: 1, ...options });
  t.teardown(() => l.destroy());
  return l;
}

/** Sets the guest port's state on the pod's bridge: disabled, it forwards no frame to or from the guest. */
async function guestPort(podNs: string, state: number): Promise<void> {
  await runIn(podNs, 'bridge', ['link', 'set', 'dev', VM_TAP, 'state', String(state)]);
}

test('attach (the bypass by default): the guest is reached past its bridge; --keep-bridge puts the bridge back', async (t) => {
  const l = await lab(t);
  const vm = l.vms[0]!;
  const root = bpffsDir(t);
  const node = l.node.ns.path;

  await l.ping(l.client, vm.podIp, { count: 1 }); // the guest answers: the bridge learns its MAC
  const attach = await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root]);
  t.is(attach.code, 0, attach.stderr);
  t.regex(attach.stdout, /attached fixup on eth0-nic .*; bridge bypassed: from_guest on tap0 \((tcx|clsact)\)/);

  t.is((await l.ping(l.client, vm.podIp, FAST)).received, PINGS, 'other node: every echo answered');
  const bulk = await l.transfer(l.client, vm.podIp, 10 * 1024 * 1024, { timeoutMs: 60_000 });
  t.is(bulk.intact, 10 * 1024 * 1024, `other node: 10 MB intact (${bulk.error ?? ''})`);
  t.is((await l.ping(l.plain[0]!, vm.podIp, FAST)).received, PINGS, 'same node: every echo answered');

  await guestPort(vm.podNs.path, BR_STATE_DISABLED);
  t.teardown(() => guestPort(vm.podNs.path, BR_STATE_FORWARDING).catch(() => {}));
  t.is((await l.ping(l.client, vm.podIp, FAST)).received, PINGS, 'guest port disabled on the bridge: every echo still answered');
  t.true((await l.tcpEcho(l.client, vm.podIp, 'past the bridge')).echoed, 'and TCP still works');

  const status = JSON.parse((await vmpeer(node, ['status', '--json', '--bpffs', root])).stdout);
  t.deepEqual(status.attachments.map((a: { program: string; ifname: string }) => `${a.program}@${a.ifname}`).sort(), ['fixup@eth0-nic', 'from_guest@tap0']);
  t.like(status.endpoints[0], { guestIp: vm.podIp, bypass: true, bridgeKept: null });
  t.regex((await vmpeer(node, ['status', '--bpffs', root])).stdout, /bridge bypassed/);
  const c = status.endpoints[0].counters;
  t.true(c.bypassedIn >= 3 * PINGS && c.bypassedOut >= 3 * PINGS, `frames past the bridge: in ${c.bypassedIn}, out ${c.bypassedOut}`);

  const plain = await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--keep-bridge', '--bpffs', root]);
  t.is(plain.code, 0, plain.stderr);
  t.regex(plain.stdout, /bridge kept: --keep-bridge; bridge bypass removed/);
  t.like(JSON.parse((await vmpeer(node, ['status', '--json', '--bpffs', root])).stdout).endpoints[0], { bypass: false, bridgeKept: 'the bypass is off (--keep-bridge)' });
  t.is((await l.ping(l.client, vm.podIp, FAST)).received, 0, 'with --keep-bridge, the disabled port cuts the guest off: the bridge is on the path again');
  await guestPort(vm.podNs.path, BR_STATE_FORWARDING);
  t.is((await l.ping(l.client, vm.podIp, FAST)).received, PINGS, 'port forwarding again: fixed through the bridge');

  const again = await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bypass-bridge', '--bpffs', root]);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /bridge bypassed: from_guest on tap0/, '--bypass-bridge (of earlier versions) asks for the default');
  const detach = await vmpeer(node, ['detach', '--netns', vm.podNs.name, '--bpffs', root]);
  t.is(detach.code, 0, detach.stderr);
  t.regex(detach.stdout, /detached from_guest from tap0[^]*detached fixup from eth0-nic/);
  t.deepEqual(JSON.parse((await vmpeer(node, ['status', '--json', '--bpffs', root])).stdout).attachments, [], 'nothing left attached');
});

test('accelerate mode with the bridge bypass: vmpeer redirect → fixup → guest port, and back into the host veth', async (t) => {
  const l = await lab(t, { emulator: false });
  const vm = l.vms[0]!;
  const root = bpffsDir(t);
  const node = l.node.ns.path;
  await l.ping(l.client, vm.podIp, { count: 1 });

  t.is((await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root])).code, 0);
  t.is((await vmpeer(node, ['attach', '--accelerate', '--host-dev', l.node.uplink.name, '--bpffs', root])).code, 0);
  await guestPort(vm.podNs.path, BR_STATE_DISABLED);
  t.teardown(() => guestPort(vm.podNs.path, BR_STATE_FORWARDING).catch(() => {}));

  t.is((await l.ping(l.client, vm.podIp, FAST)).received, PINGS, 'every echo answered with the guest port disabled');
  const bulk = await l.transfer(l.client, vm.podIp, 10 * 1024 * 1024, { timeoutMs: 60_000 });
  t.is(bulk.intact, 10 * 1024 * 1024, `10 MB intact (${bulk.error ?? ''})`);
  const ep = JSON.parse((await vmpeer(node, ['status', '--json', '--bpffs', root])).stdout).endpoints[0];
  t.true(ep.counters.redirected >= PINGS && ep.counters.bypassedIn >= PINGS && ep.counters.bypassedOut >= PINGS, JSON.stringify(ep.counters));

  t.is((await vmpeer(node, ['detach', '--accelerate', '--host-dev', l.node.uplink.name, '--bpffs', root])).code, 0);
  t.is((await vmpeer(node, ['detach', '--netns', vm.podNs.name, '--bpffs', root])).code, 0);
});

test('a bridge with a second guest port keeps the bridge on the path, and says why', async (t) => {
  const l = await lab(t, { plainPods: 0 });
  const vm = l.vms[0]!;
  const root = bpffsDir(t);
  const node = l.node.ns.path;
  await l.ping(l.client, vm.podIp, { count: 1 }); // the guest answers: the bridge learns its MAC
  await runIn(vm.podNs.path, 'ip', ['link', 'add', 'vpt-extra', 'type', 'veth', 'peer', 'name', 'vpt-extra-p']);
  await runIn(vm.podNs.path, 'ip', ['link', 'set', 'vpt-extra', 'master', 'k6t-eth0']);
  for (const args of [[], ['--bypass-bridge']]) {
    const r = await vmpeer(node, ['attach', '--netns', vm.podNs.name, ...args, '--bpffs', root]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stderr, /warning: keeping the bridge k6t-eth0 on the path of 198\.18\.1\.10: the bridge bypass is unsafe there, k6t-eth0 has 2 guest ports \(tap0, vpt-extra\)/);
    t.regex(r.stdout, /bridge kept: k6t-eth0 has 2 guest ports \(tap0, vpt-extra\)/);
  }
  const status = JSON.parse((await vmpeer(node, ['status', '--json', '--bpffs', root])).stdout);
  t.deepEqual(status.attachments.map((a: { program: string; ifname: string }) => `${a.program}@${a.ifname}`), ['fixup@eth0-nic'], 'no from_guest');
  t.like(status.endpoints[0], { bypass: false, bridgeKept: 'k6t-eth0 has 2 guest ports (tap0, vpt-extra)' });
  t.regex((await vmpeer(node, ['status', '--bpffs', root])).stdout, /bridge kept: k6t-eth0 has 2 guest ports/);

  t.is((await l.ping(l.client, vm.podIp, FAST)).received, PINGS, 'fixed through the bridge');
  await guestPort(vm.podNs.path, BR_STATE_DISABLED);
  t.teardown(() => guestPort(vm.podNs.path, BR_STATE_FORWARDING).catch(() => {}));
  t.is((await l.ping(l.client, vm.podIp, FAST)).received, 0, 'the bridge is on the path: the disabled guest port cuts the guest off');
  await guestPort(vm.podNs.path, BR_STATE_FORWARDING);

  // the second port gone, the next attach bypasses the bridge
  await runIn(vm.podNs.path, 'ip', ['link', 'del', 'vpt-extra']);
  const r = await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /bridge bypassed: from_guest on tap0/);
  t.is(r.stderr, '');
});
