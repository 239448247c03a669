/**
 * Accelerate mode keeps the workload's policy. A drop-all program at the VM
 * pod's host-veth egress (where Calico's eBPF dataplane enforces a workload's
 * ingress policy) keeps dropping with accelerate on: the endpoint is written
 * without redirect (CLI warning; daemon warning and
 * vmpeer_endpoints_not_accelerated), and `attach --accelerate` refuses with
 * exit 2 while an older endpoint would still be redirected past it. A
 * netfilter rule in the node that denies one client and allows another:
 * redirect never takes a SYN, so the denied client never gets a flow, and
 * only the allowed one's established packets are accelerated.
 */
import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import { BpfObject } from '../../lib/bpf/object.js';
import { runIn } from '../../lib/lab/exec.js';
import { packageRoot } from '../../lib/native.js';
import { vmpeer } from '../helpers/cli.js';
import { metric, startDaemon, State } from '../helpers/daemon.js';
import { attachForeign } from '../helpers/foreign.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';

const DENY_ALL = path.join(packageRoot, 'dist', 'bpf', 'test', 'drop_all.bpf.o');
const PINGS = { count: 5, intervalMs: 20, waitS: 1 };

async function withDenyAll(t: ExecutionContext) {
  const l = await lab(t, { vmPods: 1, plainPods: 0, emulator: false });
  const vm = l.vms[0]!;
  await l.ping(l.node, vm.podIp, { count: 1 });
  const deny = BpfObject.open(DENY_ALL);
  t.teardown(() => deny.close());
  const dropped = () => deny.map('dropped').lookup(Buffer.alloc(4))![0]!.readBigUInt64LE(0);
  return { l, vm, deny, dropped, root: `${bpffsDir(t)}/vmpeer`, egress: { netns: l.node.ns.path, ifname: vm.hostVeth.name, hook: 'egress' as const } };
}

test('CLI: no accelerating past a drop-all program at the host veth egress; exit 2 while an endpoint would be', async (t) => {
  const { l, vm, deny, dropped, root, egress } = await withDenyAll(t);
  const node = l.node.ns.path;
  const bpffs = ['--bpffs', root];
  const accel = ['attach', '--accelerate', '--host-dev', l.node.uplink.name, ...bpffs];
  t.teardown(async () => {
    await vmpeer(node, ['detach', '--accelerate', '--host-dev', l.node.uplink.name, ...bpffs]);
    await vmpeer(node, ['detach', '--netns', vm.podNs.name, ...bpffs]);
  });
  t.is((await vmpeer(node, ['attach', '--netns', vm.podNs.name, ...bpffs])).code, 0);
  const state = new State(t, root);
  t.true(state.dp.endpoint(vm.podIp)!.redirect, 'no policy program yet: redirect allowed');

  attachForeign(t, deny.program('deny_all'), egress);
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, 0, 'the policy drops everything');
  const refused = await vmpeer(node, accel);
  t.is(refused.code, 2, refused.stderr);
  t.is(refused.stderr.trim().split('\n').length, 1, `one line: ${refused.stderr}`);
  t.regex(refused.stderr, new RegExp(`refusing to accelerate: ${vm.hostVeth.name} has deny_all \\((tcx|clsact)\\) at its tc egress, which redirect would skip for ${vm.podIp.replace(/\./g, '\\.')}`));
  t.false(state.hook(node, l.node.uplink.name).some((e) => e.progName === 'redirect'), 'nothing attached');

  const again = await vmpeer(node, ['attach', '--netns', vm.podNs.name, ...bpffs]);
  t.is(again.code, 0);
  t.regex(again.stderr, /^warning: .*has deny_all .* at its tc egress: accelerate mode leaves .* to the kernel path/m);
  t.false(state.dp.endpoint(vm.podIp)!.redirect, 'the endpoint is not for redirect');
  const ok = await vmpeer(node, accel);
  t.is(ok.code, 0, ok.stderr);
  const before = dropped();
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, 0, 'accelerate on: still 0 delivered');
  t.true(dropped() - before >= BigInt(PINGS.count), 'the policy saw them all');
  t.is(state.dp.endpoint(vm.podIp)!.counters.redirected, 0n);

  // the flag does what its help says: the policy is skipped
  t.is((await vmpeer(node, ['attach', '--netns', vm.podNs.name, '--skip-egress-programs', ...bpffs])).code, 0);
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, '--skip-egress-programs: redirected past the policy');
});

test('daemon: an endpoint behind a host-veth egress program is not accelerated (warning, metric), 0 delivered', async (t) => {
  const { l, vm, deny, dropped, root, egress } = await withDenyAll(t);
  attachForeign(t, deny.program('deny_all'), egress);
  const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-`, args: ['--accelerate', '--host-dev', l.node.uplink.name, '--cleanup-on-exit'] });
  await d.ready();
  const warn = await d.waitLog((x) => x.level === 'warn' && x.msg.startsWith(`accelerate: not for ${vm.podIp}`));
  t.deepEqual(warn.egress, ['deny_all']);
  const state = new State(t, root);
  t.false(state.dp.endpoint(vm.podIp)!.redirect);
  t.is(metric((await d.http('/metrics')).body, 'vmpeer_endpoints_not_accelerated'), 1);
  const before = dropped();
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, 0, '0 delivered');
  t.true(dropped() - before >= BigInt(PINGS.count));
  t.is(state.dp.endpoint(vm.podIp)!.counters.redirected, 0n);
  t.deepEqual(await d.kill('SIGTERM'), { code: 0, signal: null });
});

test('netfilter denies one client and allows another: denied stays denied, allowed is accelerated for established packets only', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 1, emulator: false });
  const vm = l.vms[0]!;
  const denied = l.plain[0]!;
  const node = l.node.ns.path;
  const root = `${bpffsDir(t)}/vmpeer`;
  const bpffs = ['--bpffs', root];
  const hostDevs = [l.node.uplink.name, denied.hostVeth.name];
  t.teardown(async () => {
    for (const h of hostDevs) await vmpeer(node, ['detach', '--accelerate', '--host-dev', h, ...bpffs]);
    await vmpeer(node, ['detach', '--netns', vm.podNs.name, ...bpffs]);
  });
  await l.ping(l.node, vm.podIp, { count: 1 });
  // the denied client is an on-node pod: its traffic enters at its host veth, accelerated too
  await runIn(node, 'iptables', ['-A', 'FORWARD', '-s', denied.podIp, '-d', vm.podIp, '-p', 'tcp', '-j', 'DROP']);
  t.is((await vmpeer(node, ['attach', '--netns', vm.podNs.name, ...bpffs])).code, 0);
  for (const h of hostDevs) t.is((await vmpeer(node, ['attach', '--accelerate', '--host-dev', h, ...bpffs])).code, 0);
  const state = new State(t, root);

  const s0 = state.dp.stats();
  const c0 = state.dp.endpoint(vm.podIp)!.counters.redirected;
  const refused = await l.tcpEcho(denied, vm.podIp, 'let me in', { timeoutMs: 1500 });
  t.false(refused.connected, 'the denied client never connects');
  const s1 = state.dp.stats();
  t.true(s1.passNewFlow - s0.passNewFlow >= 1n, 'its SYNs took the kernel path (and the rule)');
  t.is(state.dp.endpoint(vm.podIp)!.counters.redirected, c0, 'nothing of it was redirected');

  const allowed = await l.tcpEcho(l.client, vm.podIp, 'accelerated, after the handshake');
  t.true(allowed.echoed, 'the allowed client gets its echo');
  const s2 = state.dp.stats();
  t.is(s2.passNewFlow - s1.passNewFlow, 1n, 'its SYN alone took the kernel path');
  t.true(state.dp.endpoint(vm.podIp)!.counters.redirected > c0, 'its established packets were redirected');
});
