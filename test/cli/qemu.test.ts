/**
 * The fix for a real guest: a QEMU VM (Debian kernel, virtio-net on the VM
 * pod's tap, bridged exactly as KubeVirt does) behind the emulated CNI fast
 * path answers only the first packet of a flow, until `vmpeer attach`.
 */
import test from 'ava';
import { Lab } from '../../lib/lab/index.js';
import { bpffsDir } from '../helpers/netns.js';
import { vmpeer } from '../../lib/testkit/cli.js';

test('a QEMU guest on a real tap: the fault, then vmpeer attach fixes it', async (t) => {
  t.timeout(5 * 60_000);
  const lab = await Lab.create({ prefix: 'vpt', vmPods: 1, plainPods: 1, qemu: true });
  t.teardown(() => lab.destroy());
  const vm = lab.vms[0]!;
  const root = bpffsDir(t);
  t.truthy(vm.qemu, 'a real guest');

  t.deepEqual((await lab.ping(lab.client, vm.podIp, { count: 6, waitS: 3 })).replies, [0], 'the fault: 1 of N');
  const attach = await vmpeer(lab.node.ns.path, ['attach', '--netns', vm.podNs.name, '--bpffs', root]);
  t.is(attach.code, 0, attach.stderr);
  t.regex(attach.stdout, new RegExp(`guest ${vm.podIp.replace(/\./g, '\\.')} at ${vm.guestMac}`), 'the MAC the guest uses, learned on the tap');

  t.is((await lab.ping(lab.client, vm.podIp, { count: 10, waitS: 3 })).received, 10, 'client on another node: every echo answered');
  t.is((await lab.ping(lab.plain[0]!, vm.podIp, { count: 10, waitS: 3 })).received, 10, 'on-node client: every echo answered');
  const echo = await lab.tcpEcho(lab.client, vm.podIp, 'hello real guest', { timeoutMs: 5000 });
  t.true(echo.echoed, `TCP echo: ${echo.error}`);
  const bulk = await lab.transfer(lab.client, vm.podIp, 1024 * 1024, { timeoutMs: 60_000 });
  t.is(bulk.intact, 1024 * 1024, `1 MiB intact: ${bulk.error}`);
  t.true(lab.emulatorStats().redirected > 20, 'over the peer-redirect fast path');

  t.is((await vmpeer(lab.node.ns.path, ['detach', '--netns', vm.podNs.name, '--bpffs', root])).code, 0);
});
