/**
 * Accelerate mode: vmpeer's own corrected peer-redirect on the node's uplink
 * carries the VM traffic (CNI emulator off), and a foreign tc program at the
 * same hook keeps running, in its place.
 */
import test from 'ava';
import path from 'node:path';
import { BpfObject } from '../../lib/bpf/object.js';
import { native, packageRoot } from '../../lib/native.js';
import { Lab } from '../../lib/lab/index.js';
import { bpffsDir } from '../helpers/netns.js';
import { vmpeer } from '../../lib/testkit/cli.js';
import { attachForeign } from '../helpers/foreign.js';

const FOREIGN = path.join(packageRoot, 'dist', 'bpf', 'test', 'pkt_type_probe.bpf.o');

for (const first of [false, true]) {
  test(`redirect on the uplink delivers to the VM; a foreign program stays in place (${first ? '--first' : 'appended'})`, async (t) => {
    const lab = await Lab.create({ prefix: 'vpt', vmPods: 1, plainPods: 1, emulator: false });
    t.teardown(() => lab.destroy());
    const vm = lab.vms[0]!;
    const root = bpffsDir(t);
    const node = lab.node.ns.path;
    const uplink = { netns: node, ifname: lab.node.uplink.name, hook: 'ingress' as const };

    const foreign = BpfObject.open(FOREIGN);
    t.teardown(() => foreign.close());
    attachForeign(t, foreign.program('probe'), uplink, 'before');

    await lab.ping(lab.client, vm.podIp, { count: 1 });
    t.is((await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root])).code, 0);
    const accel = await vmpeer(node, ['attach', '--accelerate', '--host-dev', lab.node.uplink.name, ...(first ? ['--first'] : []), '--bpffs', root]);
    t.is(accel.code, 0, accel.stderr);
    t.regex(accel.stderr, /warning: accelerate mode .* bypasses host netfilter/);
    const order = native().listHook(uplink).map((e) => e.progName);
    t.deepEqual(order, first ? ['redirect', 'probe'] : ['probe', 'redirect']);

    t.is((await lab.ping(lab.client, vm.podIp, { count: 20, intervalMs: 20 })).received, 20);
    t.true((await lab.tcpEcho(lab.client, vm.podIp, 'accelerated')).echoed);
    t.is((await lab.ping(lab.client, lab.plain[0]!.podIp, { count: 5, intervalMs: 20 })).received, 5, 'the plain pod still takes the kernel path');
    const status = JSON.parse((await vmpeer(node, ['status', '--json', '--bpffs', root])).stdout);
    t.true(status.endpoints[0].counters.redirected >= 20, `redirected ${status.endpoints[0].counters.redirected}`);
    const seen = foreign.map('pkt_types').keys().length;
    t.true(first ? seen >= 5 : seen >= 25, `the foreign program saw ${seen} packets`);

    t.is((await vmpeer(node, ['detach', '--accelerate', '--host-dev', lab.node.uplink.name, '--bpffs', root])).code, 0);
    t.deepEqual(native().listHook(uplink).map((e) => e.progName), ['probe'], 'only the foreign program is left');
    t.is((await vmpeer(node, ['detach', '--netns', vm.podNs.name, '--bpffs', root])).code, 0);
  });
}
