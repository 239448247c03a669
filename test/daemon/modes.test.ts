/**
 * The daemon's other modes: accelerate (redirect on host interfaces, with
 * the netfilter warning, removed again when the option goes), and clsact
 * attachments (kernels before 6.6) adopted and upgraded without a gap.
 */
import test from 'ava';
import { announce } from '../../lib/lab/dynamic.js';
import { pinned } from '../../lib/bpf/fdinfo.js';
import { native } from '../../lib/native.js';
import { TC_HANDLE } from '../../lib/bpf/link.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';
import { rebuiltObject, sleep, startDaemon, State } from '../helpers/daemon.js';

const PINGS = { count: 50, intervalMs: 5, waitS: 1 };

test('accelerate: redirect on the host interfaces it is told, with a warning; removed when the option goes', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 1 });
  const vm = l.vms[0]!;
  await announce(vm);
  const root = `${bpffsDir(t)}/vmpeer`;
  const uplink = l.node.uplink.name;
  const base = { nodeNs: l.node.ns.path, root, prefix: `${l.name}-` };

  const d = startDaemon(t, { ...base, args: ['--accelerate', '--host-dev', uplink, '--first'] });
  await d.ready();
  const warning = d.logs.find((x) => x.level === 'warn' && /bypasses host netfilter/.test(x.msg));
  t.truthy(warning, 'the startup warning says that VM traffic bypasses host netfilter');
  const state = new State(t, root);
  t.deepEqual(state.hook(l.node.ns.path, uplink).map((e) => e.progName), ['redirect', 'cni_emulator'], 'redirect first, the CNI program kept');
  t.is(d.changes('attach').filter((c) => c.program === 'redirect').length, 1);

  const before = state.dp.endpoint(vm.podIp)!.counters.redirected;
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count);
  t.true(state.dp.endpoint(vm.podIp)!.counters.redirected - before >= BigInt(PINGS.count - 1), 'vmpeer redirected the echoes itself');
  t.true((await l.tcpEcho(l.client, vm.podIp, 'accelerated')).echoed);
  t.deepEqual(await d.kill('SIGTERM'), { code: 0, signal: null });

  const plain = startDaemon(t, { ...base, args: ['--cleanup-on-exit'] });
  await plain.ready();
  t.deepEqual(state.hook(l.node.ns.path, uplink).map((e) => e.progName), ['cni_emulator'], 'redirect removed, the CNI program untouched');
  t.is(plain.changes('detach').length, 1);
  t.regex(plain.changes('detach')[0]!.reason!, /accelerate mode is not configured/);
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, 'fixup still covers the VM');
  t.deepEqual(await plain.kill('SIGTERM'), { code: 0, signal: null });
  t.deepEqual(state.pins(), []);
});

test('clsact mode: adopted after kill -9, upgraded to a rebuilt object without losing an echo', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 0 });
  const vm = l.vms[0]!;
  await announce(vm);
  const root = `${bpffsDir(t)}/vmpeer`;
  const rebuilt = rebuiltObject(t);
  const base = { nodeNs: l.node.ns.path, root, prefix: `${l.name}-` };
  const ours = () => state.hook(vm.podNs.path, 'eth0-nic').filter((e) => e.mode === 'clsact' && e.handle === TC_HANDLE);
  let state: State;

  const first = startDaemon(t, { ...base, args: ['--mode', 'clsact'] });
  await first.ready();
  state = new State(t, root);
  const before = ours();
  t.is(before.length, 1);
  t.is(state.dp.attachments()[0]!.mode, 'clsact');

  const count = 800;
  const pings = l.ping(l.client, vm.podIp, { count, intervalMs: 5, waitS: 2 });
  await sleep(500);
  await first.kill('SIGKILL');
  const second = startDaemon(t, { ...base, args: ['--mode', 'clsact'] });
  await second.ready();
  t.deepEqual(ours(), before, 'adopted: the same filter');
  t.is(second.changes().length, 0);
  await second.kill('SIGTERM');

  const third = startDaemon(t, { ...base, args: ['--mode', 'clsact', '--object', rebuilt, '--cleanup-on-exit'] });
  await third.ready();
  const after = ours();
  t.is(after.length, 1, 'one vmpeer filter after the swap');
  t.not(after[0]!.progId, before[0]!.progId);
  t.is(after[0]!.priority, before[0]!.priority, 'the same filter, its program replaced in place (BPF_TC_F_REPLACE)');
  t.is(pinned(native(), state.dp.attachments().find((r) => r.program === 'fixup')!.pin)!.progId, after[0]!.progId, 'the record names the new program');
  // fixup and, the bridge bypass being the default, from_guest
  t.deepEqual(third.changes('upgrade').map((c) => c.program).sort(), ['fixup', 'from_guest']);

  const r = await pings;
  t.is(r.received, r.transmitted, `${r.transmitted - r.received} of ${r.transmitted} lost across kill -9, adoption and upgrade`);
  t.deepEqual(await third.kill('SIGTERM'), { code: 0, signal: null });
  t.deepEqual(ours(), []);
});
