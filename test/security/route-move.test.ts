/**
 * Ownership follows the node's route: when the CNI moves a guest IP's route
 * to another pod's host veth (a live migration's target, or the IP reused by
 * a new pod), the endpoint follows it, and only then. Before the route moves,
 * the new pod's claim is refused, though it holds the address.
 */
import test, { type ExecutionContext } from 'ava';
import { announce } from '../../lib/lab/dynamic.js';
import { POD_IF } from '../../lib/lab/addressing.js';
import { runIn } from '../../lib/lab/exec.js';
import type { Lab, LabVm } from '../../lib/lab/index.js';
import { vmpeer } from '../helpers/cli.js';
import { inodeOf, startDaemon, State, until } from '../helpers/daemon.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';

/** The coverage target (README): a VM pod is covered within 1 s. */
const COVERAGE_MS = 1000;
const PINGS = { count: 10, intervalMs: 50, waitS: 1 };

async function setUp(t: ExecutionContext) {
  const l = await lab(t, { vmPods: 2, plainPods: 0 });
  for (const vm of l.vms) await announce(vm);
  return { l, source: l.vms[0]!, target: l.vms[1]!, root: `${bpffsDir(t)}/vmpeer` };
}

/** The target pod takes the source's IP as KubeVirt's migration target does: its dummy holds it, its guest answers on it. */
async function targetHolds(target: LabVm, ip: string): Promise<void> {
  await runIn(target.podNs.path, 'ip', ['addr', 'flush', 'dev', POD_IF]);
  await runIn(target.podNs.path, 'ip', ['addr', 'add', `${ip}/32`, 'dev', POD_IF]);
  await runIn(target.guestNs!.path, 'ip', ['addr', 'add', `${ip}/32`, 'dev', POD_IF]);
}

/**
 * The CNI activates the target: the node's route (and the CNI's fast-path route) for the IP now
 * lead to its veth; the target's old address is released. Resolves when the route is in place,
 * with the release still under way.
 */
async function moveRoute(l: Lab, ip: string, target: LabVm): Promise<{ released: Promise<unknown> }> {
  l.emulator.setRoute(ip, target.hostVeth.ifindex);
  await runIn(l.node.ns.path, 'ip', ['route', 'replace', `${ip}/32`, 'dev', target.hostVeth.name, 'scope', 'link']);
  return { released: runIn(l.node.ns.path, 'ip', ['route', 'del', `${target.podIp}/32`, 'dev', target.hostVeth.name]) };
}

function heldBy(state: State, ip: string, vm: LabVm): boolean {
  const ep = state.dp.endpoint(ip);
  return ep !== null && ep.podNetns === inodeOf(vm.podNs.path) && ep.hostIfindex === vm.hostVeth.ifindex;
}

test('daemon: the endpoint follows the route to the target pod within the coverage target, not the target’s claim before it', async (t) => {
  const { l, source, target, root } = await setUp(t);
  const ip = source.podIp;
  const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-`, args: ['--cleanup-on-exit'] });
  await d.ready();
  const state = new State(t, root);
  t.true(state.covered(source) && state.covered(target));

  const from = d.logs.length;
  await targetHolds(target, ip);
  // the pod's address changed, which no link event says: a link event in the pod makes the daemon look
  await runIn(target.podNs.path, 'ip', ['link', 'set', POD_IF, 'mtu', '1400']);
  await d.waitLog((x) => x.msg.startsWith(`refused guest IP ${ip}`) && x.netns === target.podNs.path, 10_000, from);
  t.true(heldBy(state, ip, source), 'before the route moves, the IP stays with the source');

  const { released } = await moveRoute(l, ip, target);
  const t0 = Date.now(); // the route is in place
  await until(() => heldBy(state, ip, target), 5000, 2);
  const moved = Date.now() - t0;
  await released;
  t.log(`the endpoint followed the route ${moved} ms after it was in place`);
  t.true(moved <= COVERAGE_MS, `within ${COVERAGE_MS} ms: ${moved}`);
  t.is((await l.ping(l.client, ip, PINGS)).received, PINGS.count, 'the guest at its new place answers through the fast path');
  await d.waitLog((x) => x.msg.startsWith(`refused guest IP ${ip}`) && x.netns === source.podNs.path, 5000, from);
  t.true(heldBy(state, ip, target), "the source's claim, now refused, does not take it back");
  t.is(state.dp.endpoint(target.podIp), null, "the target's old address, no longer routed to it, is gone");
  t.deepEqual(await d.kill('SIGTERM'), { code: 0, signal: null });
});

test('CLI: attach follows the route too; the source, routed nothing, is refused with exit 2', async (t) => {
  const { l, source, target, root } = await setUp(t);
  const ip = source.podIp;
  const node = l.node.ns.path;
  const bpffs = ['--bpffs', root];
  t.teardown(async () => {
    for (const vm of [source, target]) await vmpeer(node, ['detach', '--netns', vm.podNs.name, ...bpffs]);
  });
  for (const vm of [source, target]) t.is((await vmpeer(node, ['attach', '--netns', vm.podNs.name, ...bpffs])).code, 0);
  const state = new State(t, root);

  await targetHolds(target, ip);
  const early = await vmpeer(node, ['attach', '--netns', target.podNs.name, ...bpffs]);
  t.is(early.code, 0, early.stderr);
  t.regex(early.stderr, new RegExp(`warning: refused ${ip.replace(/\./g, '\\.')}, which the pod claims \\(pod address\\): this node routes it to ${source.hostVeth.name}`));
  t.true(heldBy(state, ip, source));

  await (await moveRoute(l, ip, target)).released;
  const late = await vmpeer(node, ['attach', '--netns', target.podNs.name, ...bpffs]);
  t.is(late.code, 0, late.stderr);
  t.true(heldBy(state, ip, target), 'the endpoint follows the route');
  t.is((await l.ping(l.client, ip, PINGS)).received, PINGS.count);
  const back = await vmpeer(node, ['attach', '--netns', source.podNs.name, ...bpffs]);
  t.is(back.code, 2);
  t.regex(back.stderr, new RegExp(`^vmpeer attach: .*claims ${ip.replace(/\./g, '\\.')} \\(routed to ${target.hostVeth.name}\\), which this node does not route to the pod: refused\\n$`));
  t.true(heldBy(state, ip, target));
});
