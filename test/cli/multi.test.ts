/**
 * A node with two VM pods (one with a VMI macAddress, so guest MAC ≠ the
 * pod's dummy MAC) and a plain pod: each VM is fixed, the plain pod's
 * traffic is untouched.
 */
import test from 'ava';
import { Lab } from '../../lib/lab/index.js';
import { native } from '../../lib/native.js';
import { bpffsDir } from '../helpers/netns.js';
import { vmpeer } from '../../lib/testkit/cli.js';

const CUSTOM_MAC = '02:12:34:56:78:9a';

test('two VM pods (one with a custom MAC) fixed, a plain pod untouched', async (t) => {
  const lab = await Lab.create({ prefix: 'vpt', vmPods: 2, plainPods: 1, guestMacs: [undefined, CUSTOM_MAC] });
  t.teardown(() => lab.destroy());
  const [vm0, vm1] = lab.vms as [(typeof lab.vms)[0], (typeof lab.vms)[0]];
  const plain = lab.plain[0]!;
  const root = bpffsDir(t);
  const node = lab.node.ns.path;
  t.is(vm1.guestMac, CUSTOM_MAC);
  t.not(vm1.guestMac, vm1.dummyMac, 'the guest MAC differs from the dummy eth0 MAC');

  for (const vm of [vm0, vm1]) {
    t.is((await lab.ping(lab.client, vm.podIp, { count: 5, intervalMs: 20 })).received, 1, 'the fault');
    const r = await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, new RegExp(`at ${vm.guestMac} \\(MAC from (fdb|neighbour)\\)`), 'the MAC the guest uses, not the dummy one');
  }
  for (const vm of [vm0, vm1]) {
    t.is((await lab.ping(lab.client, vm.podIp, { count: 20, intervalMs: 20 })).received, 20);
    t.true((await lab.tcpEcho(lab.client, vm.podIp, `hello ${vm.podIp}`)).echoed);
  }
  t.is((await lab.ping(lab.client, plain.podIp, { count: 20, intervalMs: 20 })).received, 20);
  t.deepEqual(native().listHook({ netns: plain.podNs.path, ifname: plain.iface.name, hook: 'ingress' }), [], 'nothing attached in the plain pod');

  const status = JSON.parse((await vmpeer(node, ['status', '--json', '--bpffs', root])).stdout);
  t.deepEqual(status.endpoints.map((e: { guestIp: string }) => e.guestIp).sort(), [vm0.podIp, vm1.podIp].sort());
  t.false(status.endpoints.some((e: { guestIp: string }) => e.guestIp === plain.podIp));

  // detaching one VM leaves the other fixed
  t.is((await vmpeer(node, ['detach', '--netns', vm0.podNs.name, '--bpffs', root])).code, 0);
  t.is((await lab.ping(lab.client, vm0.podIp, { count: 5, intervalMs: 20 })).received, 1);
  t.is((await lab.ping(lab.client, vm1.podIp, { count: 5, intervalMs: 20 })).received, 5);
  t.is((await vmpeer(node, ['detach', '--netns', vm1.podNs.name, '--bpffs', root])).code, 0);
});
