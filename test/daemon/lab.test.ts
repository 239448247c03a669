/**
 * The daemon on a lab node with three VM pods and a plain pod, started with
 * exactly the capabilities the DaemonSet grants: it finds the VM pods by
 * itself and every echo through the emulated CNI fast path is answered,
 * without any CLI call; the plain pod and the node's interfaces are left
 * alone; /healthz, /readyz and /metrics answer.
 */
import test from 'ava';
import { announce } from '../../lib/lab/dynamic.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';
import { deployCapabilities, inodeOf, metric, startDaemon, State } from '../helpers/daemon.js';

const PINGS = { count: 100, intervalMs: 5, waitS: 1 };

test('the daemon covers every VM pod of the node by itself and leaves the plain pod alone', async (t) => {
  const l = await lab(t, { vmPods: 3, plainPods: 1 });
  // the guests have booted and talked (DHCP, ARP): their MACs are learned
  await Promise.all(l.vms.map((vm) => announce(vm)));
  for (const vm of l.vms) t.is((await l.ping(l.client, vm.podIp, { count: 10, intervalMs: 10 })).received, 1, 'the fault, before the daemon');

  const root = `${bpffsDir(t)}/vmpeer`;
  const caps = deployCapabilities();
  const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-`, capabilities: caps, args: ['--cleanup-on-exit'] });
  const readyMs = await d.ready();
  t.log(`ready ${readyMs} ms after start (capabilities: ${caps.join(', ')})`);
  t.is((await d.http('/healthz')).status, 200);
  t.is((await d.http('/readyz')).body, 'ready\n');
  t.is((await d.http('/nope')).status, 404);

  const state = new State(t, root);
  for (const vm of l.vms) {
    t.true(state.covered(vm), `VM pod ${vm.podNs.name} covered`);
    t.deepEqual(
      state.hook(vm.podNs.path, 'eth0-nic').map((e) => e.progName),
      ['fixup'],
      'exactly one program at the uplink: fixup',
    );
  }

  const redirectedBefore = l.emulatorStats().redirected;
  for (const vm of l.vms) {
    t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, `client on another node → ${vm.podIp}: every echo answered`);
    t.is((await l.ping(l.plain[0]!, vm.podIp, PINGS)).received, PINGS.count, `client pod on the node → ${vm.podIp}: every echo answered`);
  }
  t.true(l.emulatorStats().redirected - redirectedBefore > 3 * PINGS.count, 'the echoes took the peer-redirect fast path');
  t.true((await l.tcpEcho(l.client, l.vms[0]!.podIp, 'hello through the fast path')).echoed, 'TCP payload arrives');

  // the plain pod: nothing attached, no endpoint, not even counted as a VM pod
  const plain = l.plain[0]!;
  const plainInode = inodeOf(plain.podNs.path)!;
  t.deepEqual(state.hook(plain.podNs.path, 'eth0'), []);
  t.false(state.dp.attachments().some((r) => r.netnsInode === plainInode));
  t.is(state.dp.endpoint(plain.podIp), null);
  t.is(state.dp.endpoints().length, 3);
  // fixup at each uplink and from_guest at each guest port: the bridge bypass is the default
  t.is(state.dp.attachments().length, 6);
  for (const vm of l.vms) t.deepEqual(state.hook(vm.podNs.path, 'tap0').map((e) => e.progName), ['from_guest']);
  // the node side is the CNI's: only the emulator there
  for (const p of [...l.vms, plain]) t.deepEqual(state.hook(l.node.ns.path, p.hostVeth.name).map((e) => e.progName), ['cni_emulator']);
  t.deepEqual(state.hook(l.node.ns.path, l.node.uplink.name).map((e) => e.progName), ['cni_emulator']);

  const metrics = (await d.http('/metrics')).body;
  t.is(metric(metrics, 'vmpeer_attachments', { program: 'fixup', mode: 'clsact' }), 3);
  t.is(metric(metrics, 'vmpeer_attachments', { program: 'from_guest', mode: 'clsact' }), 3);
  t.is(metric(metrics, 'vmpeer_endpoints'), 3);
  t.is(metric(metrics, 'vmpeer_ready'), 1);
  t.is(metric(metrics, 'vmpeer_pods', { state: 'vm' }), 3);
  t.true((metric(metrics, 'vmpeer_build_info') ?? 0) === 1);
  for (const vm of l.vms) {
    const fixed = metric(metrics, 'vmpeer_endpoint_frames_fixed_total', { guest_ip: vm.podIp, interface: 'eth0-nic', host_interface: vm.hostVeth.name });
    t.true(fixed !== null && fixed >= 2 * (PINGS.count - 1), `frames fixed for ${vm.podIp}: ${fixed}`);
  }

  // one log line per change, with its reason
  t.is(d.changes('attach').filter((c) => c.program === 'fixup').length, 3);
  t.is(d.changes('attach').filter((c) => c.program === 'from_guest').length, 3);
  t.is(d.changes('endpoint_add').length, 3);
  t.true(d.changes().every((c) => typeof c.reason === 'string' && c.reason.length > 0));

  t.deepEqual(await d.kill('SIGTERM'), { code: 0, signal: null });
  t.deepEqual(state.pins(), [], '--cleanup-on-exit removed every pin and the state directory');
  for (const vm of l.vms) t.deepEqual([...state.hook(vm.podNs.path, 'eth0-nic'), ...state.hook(vm.podNs.path, 'tap0')], []);
  t.is((await l.ping(l.client, l.vms[0]!.podIp, { count: 10, intervalMs: 10 })).received, 1, 'the fault is back once vmpeer is gone');
});
