/**
 * The fix end to end on the lab: a KubeVirt VM pod behind an emulated CNI
 * fast path (bpf_redirect_peer, Ethernet header untouched) answers only the
 * first packet of each flow; `vmpeer attach` makes every packet arrive;
 * `vmpeer detach` brings the fault back.
 */
import test from 'ava';
import { Lab } from '../../lib/lab/index.js';
import { bpffsDir } from '../helpers/netns.js';
import { vmpeer } from '../../lib/testkit/cli.js';

const PINGS = 20;
const FAST = { count: PINGS, intervalMs: 20, waitS: 1 };

test('attach fixes a VM for clients on other nodes and on the same node; detach brings the fault back', async (t) => {
  const lab = await Lab.create({ prefix: 'vpt', vmPods: 1, plainPods: 1 });
  t.teardown(() => lab.destroy());
  const vm = lab.vms[0]!;
  const onNode = lab.plain[0]!;
  const root = bpffsDir(t);
  const node = lab.node.ns.path;

  t.is((await lab.ping(lab.client, vm.podIp, FAST)).received, 1, 'the fault: only the first echo of the flow is answered');
  const before = await lab.tcpEcho(lab.client, vm.podIp, 'hello', { timeoutMs: 1500 });
  t.true(before.connected && !before.echoed, 'the fault: TCP connects, the payload never arrives');

  const attach = await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root]);
  t.is(attach.code, 0, attach.stderr);
  t.regex(attach.stdout, new RegExp(`attached fixup on eth0-nic \\(ingress\\) in ${vm.podNs.path} \\((tcx|clsact)\\)`));
  t.regex(attach.stdout, new RegExp(`guest ${vm.podIp.replace(/\./g, '\\.')} at ${vm.guestMac}`));

  t.is((await lab.ping(lab.client, vm.podIp, FAST)).received, PINGS, 'other node: every echo answered');
  t.true((await lab.tcpEcho(lab.client, vm.podIp, 'hello vm')).echoed, 'other node: TCP echo');
  const bulk = await lab.transfer(lab.client, vm.podIp, 10 * 1024 * 1024, { timeoutMs: 60_000 });
  t.is(bulk.intact, 10 * 1024 * 1024, `other node: 10 MB intact (${bulk.error ?? ''})`);
  t.is((await lab.ping(onNode, vm.podIp, FAST)).received, PINGS, 'same node: every echo answered');
  t.true((await lab.tcpEcho(onNode, vm.podIp, 'hello from the node')).echoed, 'same node: TCP echo');
  t.true(lab.emulatorStats().redirected > PINGS, 'the traffic really took the peer-redirect fast path');

  const again = await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root]);
  t.is(again.code, 0);
  t.regex(again.stdout, /already attached: .*nothing changed/);

  const status = JSON.parse((await vmpeer(node, ['status', '--json', '--bpffs', root])).stdout);
  // fixup at the uplink and, the bridge bypass being the default, from_guest at the guest port
  t.is(status.attachments.length, 2);
  t.like(status.attachments.find((a: { program: string }) => a.program === 'fixup'), { hook: 'ingress', ifname: 'eth0-nic', netns: vm.podNs.path });
  t.like(status.attachments.find((a: { program: string }) => a.program === 'from_guest'), { hook: 'ingress', ifname: 'tap0', netns: vm.podNs.path });
  t.is(status.endpoints.length, 1);
  t.like(status.endpoints[0], { guestIp: vm.podIp, guestMac: vm.guestMac, gatewayMac: 'ee:ee:ee:ee:ee:ee', hostVeth: vm.hostVeth.name, bypass: true });
  t.true(status.endpoints[0].counters.fixed >= 2 * PINGS, `frames fixed: ${status.endpoints[0].counters.fixed}`);

  const detach = await vmpeer(node, ['detach', '--netns', vm.podNs.name, '--bpffs', root]);
  t.is(detach.code, 0, detach.stderr);
  t.regex(detach.stdout, /detached fixup from eth0-nic/);
  t.regex(detach.stdout, /removed endpoint/);
  t.is((await lab.ping(lab.client, vm.podIp, FAST)).received, 1, 'the fault is back');
  t.deepEqual(
    JSON.parse((await vmpeer(node, ['status', '--json', '--bpffs', root])).stdout).attachments,
    [],
    'nothing left attached',
  );
});

test('after the flow timeout, one first packet gets through again (seed reproduction)', async (t) => {
  const lab = await Lab.create({ prefix: 'vpt', vmPods: 1, plainPods: 1, flowTimeoutMs: 1000 });
  t.teardown(() => lab.destroy());
  const vm = lab.vms[0]!;
  // one flow: pings 0.. go out every 100 ms, then a pause longer than the timeout
  const first = await lab.ping(lab.client, vm.podIp, { count: 5, intervalMs: 100, waitS: 1 });
  t.deepEqual(first.replies, [0]);
  const plain = await lab.ping(lab.client, lab.plain[0]!.podIp, { count: 5, intervalMs: 100 });
  t.is(plain.received, 5, 'a plain pod behind the same fast path is fine');
  // a slow flow: every echo comes after the flow expired, so each is a "first packet"
  const slow = await lab.ping(lab.client, vm.podIp, { count: 3, intervalMs: 1500, waitS: 1 });
  t.is(slow.received, 3, 'each packet after the timeout took the kernel path again');
});
