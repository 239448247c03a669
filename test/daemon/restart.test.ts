/**
 * Stopping, crashing and upgrading the daemon never interrupts traffic. With
 * a client sending 200 echo requests a second to each of three VMs through
 * the emulated fast path:
 *   - kill -9 the daemon: the pinned links keep fixing frames;
 *   - start it again: it adopts what is there (same links, no duplicate);
 *   - restart it with a rebuilt object (different program tags): the new
 *     programs are swapped in without a gap;
 * and not one echo is lost.
 */
import fs from 'node:fs';
import test from 'ava';
import { announce } from '../../lib/lab/dynamic.js';
import { fdInfo, pinned } from '../../lib/bpf/fdinfo.js';
import { OBJECT_PATH } from '../../lib/dataplane/dataplane.js';
import { native } from '../../lib/native.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';
import { inodeOf, rebuiltObject, sleep, startDaemon, State } from '../helpers/daemon.js';

// 200 echo requests per second per VM; 20 inside the kernel matrix's emulated
// VMs (scripts/vmtest sets VMTEST_KERNEL), whose CPUs are about 15x slower
const RATE_INTERVAL_MS = process.env.VMTEST_KERNEL ? 50 : 5;

function tagsOf(object: string): { fixup: string; redirect: string; from_guest: string } {
  const n = native();
  const obj = n.openObject(object);
  try {
    const tag = (name: string) => fdInfo(obj.programs.find((p) => p.name === name)!.fd).progTag!;
    return { fixup: tag('fixup'), redirect: tag('redirect'), from_guest: tag('from_guest') };
  } finally {
    obj.close();
  }
}

test('kill -9, restart (adopt) and upgrade (rebuilt object) under 200 pings/s per VM: zero lost', async (t) => {
  t.timeout(process.env.VMTEST_KERNEL ? 600_000 : 120_000);
  const l = await lab(t, { vmPods: 3, plainPods: 0 });
  await Promise.all(l.vms.map((vm) => announce(vm)));
  const root = `${bpffsDir(t)}/vmpeer`;
  const rebuilt = rebuiltObject(t);
  // tcx links where the kernel has them (pods get clsact filters by default: modes.test.ts covers those)
  const mode = native().kernelFeatures().tcx ? ['--mode', 'tcx'] : [];
  const base = { nodeNs: l.node.ns.path, root, prefix: `${l.name}-`, args: mode };

  const first = startDaemon(t, base);
  await first.ready();
  const state = new State(t, root);
  for (const vm of l.vms) t.true(state.covered(vm));
  // fixup at each uplink, from_guest at each guest port (the bridge bypass is the default)
  const ports = l.vms.flatMap((vm) => [{ vm, ifname: 'eth0-nic', program: 'fixup' as const }, { vm, ifname: 'tap0', program: 'from_guest' as const }]);
  const hooks = () => ports.map((p) => state.hook(p.vm.podNs.path, p.ifname));
  const before = hooks();
  for (const h of before) t.is(h.length, 1);

  // the traffic: one flow per VM, 200 echo requests a second, for the whole test
  const seconds = 9;
  const count = (seconds * 1000) / RATE_INTERVAL_MS;
  const pings = Promise.all(l.vms.map((vm) => l.ping(l.client, vm.podIp, { count, intervalMs: RATE_INTERVAL_MS, waitS: 2 })));
  await sleep(1000);

  // 1. crash
  t.deepEqual(first.children(), [], 'netlink is watched in-process: no child process could outlive the daemon');
  t.deepEqual(await first.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });
  await sleep(200);
  t.false(running(first.pid), 'the daemon and its netlink sockets are gone');
  t.deepEqual(hooks(), before, 'the attachments stay while no daemon runs');
  await sleep(1000);

  // 2. restart: adopt
  const second = startDaemon(t, base);
  await second.ready();
  t.deepEqual(hooks(), before, 'adopted: the same links, nothing detached or added');
  t.is(second.changes().length, 0, `no change made on adoption: ${JSON.stringify(second.changes())}`);
  t.is(second.logs.filter((x) => x.msg.startsWith('adopted fixup')).length, 3);
  t.is(second.logs.filter((x) => x.msg.startsWith('adopted from_guest')).length, 3);
  t.is((await second.waitLog((x) => x.msg.startsWith('ready'))).adopted, 6);
  await sleep(1000);
  t.deepEqual(await second.kill('SIGTERM'), { code: 0, signal: null });
  t.deepEqual(hooks(), before, 'a normal stop leaves the dataplane as it is');

  // 3. upgrade: a rebuilt object, swapped in without a gap
  const tags = tagsOf(rebuilt);
  const third = startDaemon(t, { ...base, args: [...mode, '--object', rebuilt, '--cleanup-on-exit'] });
  await third.ready();
  const after = hooks();
  t.notDeepEqual(tags, tagsOf(OBJECT_PATH), 'the rebuilt object differs');
  const records = state.dp.attachments();
  t.is(records.length, 6);
  for (const [i, h] of after.entries()) {
    const { vm, program } = ports[i]!;
    t.is(h.length, 1, `one ${program} at each ${ports[i]!.ifname} after the swap`);
    t.is(h[0]!.progName, program);
    t.not(h[0]!.progId, before[i]![0]!.progId, 'a new program');
    const record = records.find((r) => r.netnsInode === inodeOf(vm.podNs.path) && r.program === program)!;
    const info = pinned(native(), record.pin)!;
    t.is(info.linkId, h[0]!.linkId, 'the record names the link at the hook');
    t.is(info.progTag, tags[program], 'running the rebuilt code');
  }
  t.is(third.changes('upgrade').length, 6);
  t.is(third.changes().filter((c) => c.change !== 'upgrade').length, 0);
  for (const vm of l.vms) t.true(state.covered(vm));

  const results = await pings;
  for (const [i, r] of results.entries()) {
    t.is(r.transmitted, count);
    t.is(r.received, r.transmitted, `VM ${l.vms[i]!.podIp}: ${r.transmitted - r.received} of ${r.transmitted} lost`);
  }
  t.log(`${results.map((r) => r.received).join(' + ')} echoes answered, none lost, across kill -9, restart and upgrade`);
  t.deepEqual(await third.kill('SIGTERM'), { code: 0, signal: null });
  t.deepEqual(state.pins(), []);
});


/** A process that still runs (exists and is not a zombie waiting for its reaper). */
function running(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}
