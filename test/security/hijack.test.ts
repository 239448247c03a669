/**
 * The hijack (DESIGN.md §11): an ordinary pod with CAP_NET_ADMIN in its own
 * netns dresses up as a VM pod whose dummy holds a VM's IP. Ownership comes
 * from the node's routes, so the VM keeps its endpoint, the look-alike is
 * reported as refused (log, vmpeer_endpoint_conflicts_total, `status`), and
 * the VM's traffic keeps reaching the VM while the attacker touches its
 * links, through the CNI fast path and with accelerate mode.
 */
import test, { type ExecutionContext } from 'ava';
import { announce } from '../../lib/lab/dynamic.js';
import type { Lab, LabVm } from '../../lib/lab/index.js';
import { dressUp, touch } from '../helpers/attacker.js';
import { vmpeer } from '../helpers/cli.js';
import { inodeOf, metric, sleep, startDaemon, State } from '../helpers/daemon.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';

const BATCH = { count: 10, intervalMs: 100, waitS: 1 };
const UNDER_ATTACK_MS = 20_000;

/** Pings the VM in batches of 10 for ≥ 20 s while the attacker touches its links; returns each batch's replies. */
async function pingUnderAttack(l: Lab, vm: LabVm, onRound: (round: number) => Promise<void>): Promise<number[]> {
  let attacking = true;
  const attacker = (async () => {
    for (let round = 0; attacking; round++) {
      await onRound(round);
      await sleep(300);
    }
  })();
  const batches: number[] = [];
  const t0 = Date.now();
  try {
    while (Date.now() - t0 < UNDER_ATTACK_MS) batches.push((await l.ping(l.client, vm.podIp, BATCH)).received);
  } finally {
    attacking = false;
    await attacker;
  }
  return batches;
}

async function setUp(t: ExecutionContext, emulator: boolean) {
  const l = await lab(t, { vmPods: 1, plainPods: 1, emulator });
  const vm = l.vms[0]!;
  await announce(vm);
  return { l, vm, attacker: l.plain[0]!, root: `${bpffsDir(t)}/vmpeer` };
}

for (const accelerate of [false, true]) {
  test(`daemon${accelerate ? ', accelerate mode' : ''}: a look-alike pod claiming a VM's IP is refused, and the VM keeps its traffic`, async (t) => {
    const { l, vm, attacker, root } = await setUp(t, !accelerate);
    const args = accelerate ? ['--accelerate', '--host-dev', l.node.uplink.name] : [];
    const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-`, args: [...args, '--cleanup-on-exit'] });
    await d.ready();
    const state = new State(t, root);
    t.true(state.covered(vm), 'the VM pod is covered');

    const from = d.logs.length;
    await dressUp(attacker, vm.podIp);
    const refused = await d.waitLog((x) => x.msg.startsWith(`refused guest IP ${vm.podIp}`) && x.netns === attacker.podNs.path, 10_000, from);
    t.is(refused.routedTo, vm.hostVeth.name);
    t.is(refused.ownerNetns, vm.podNs.path, 'the log names both pods');
    t.true(state.covered(vm), 'the endpoint stays with the VM pod');
    t.false(d.logs.some((x) => (x.change === 'endpoint_update' || x.change === 'endpoint_add') && x.guestIp === vm.podIp && x.netns === attacker.podNs.path), 'never written for the look-alike');
    const metrics = (await d.http('/metrics')).body;
    t.true((metric(metrics, 'vmpeer_endpoint_conflicts_total') ?? 0) >= 1, 'counted');

    const status = JSON.parse((await vmpeer(l.node.ns.path, ['status', '--json', '--bpffs', root])).stdout);
    t.like(
      status.refused.find((r: { ip: string; netns: string }) => r.ip === vm.podIp && r.netns === attacker.podNs.path),
      { ip: vm.podIp, routedTo: vm.hostVeth.name, netns: attacker.podNs.path, ownerNetns: vm.podNs.path },
      'status shows the refused claim',
    );
    t.like(status.endpoints.find((e: { guestIp: string }) => e.guestIp === vm.podIp), { netns: vm.podNs.path, route: 'agrees' });

    const cap = await l.capture(attacker.podNs, 'any', `icmp and host ${vm.podIp}`);
    const batches = await pingUnderAttack(l, vm, (round) => touch(attacker, vm.podIp, round));
    const seen = await cap.stop();
    t.log(`${batches.length} batches of ${BATCH.count} echoes under attack: ${batches.join(' ')}`);
    t.true(batches.length >= 10, 'pinged for at least 20 s');
    t.deepEqual(batches, batches.map(() => BATCH.count), 'every batch 10/10 while the attacker touches its links');
    t.is(seen.length, 0, "the attacker pod sees none of the VM's packets");
    t.true(state.covered(vm), 'still the VM pod’s endpoint');
    if (accelerate) t.true(state.dp.endpoint(vm.podIp)!.counters.redirected >= BigInt(batches.length * BATCH.count), 'through the accelerated path');
    else t.true(l.emulatorStats().redirected > batches.length, 'through the CNI fast path');
    t.deepEqual(await d.kill('SIGTERM'), { code: 0, signal: null });
  });
}

test('CLI: attaching the look-alike never takes the VM IP; --guest-ip of another pod is exit 2 unless --trust-guest-ip', async (t) => {
  const { l, vm, attacker, root } = await setUp(t, true);
  const node = l.node.ns.path;
  const bpffs = ['--bpffs', root];
  t.teardown(async () => {
    await vmpeer(node, ['detach', '--netns', attacker.podNs.name, ...bpffs]);
    await vmpeer(node, ['detach', '--netns', vm.podNs.name, ...bpffs]);
  });
  t.is((await vmpeer(node, ['attach', '--netns', vm.podNs.name, ...bpffs])).code, 0);
  const state = new State(t, root);
  t.true(state.covered(vm));

  await dressUp(attacker, vm.podIp);
  const look = await vmpeer(node, ['attach', '--netns', attacker.podNs.name, ...bpffs]);
  t.is(look.code, 0, look.stderr);
  t.regex(look.stderr, new RegExp(`^warning: refused ${vm.podIp.replace(/\./g, '\\.')}, which the pod claims \\(pod address\\): this node routes it to ${vm.hostVeth.name}$`, 'm'));
  t.true(state.covered(vm), 'the VM keeps its endpoint');
  t.is(state.dp.endpoint(attacker.podIp)?.podNetns, inodeOf(attacker.podNs.path)!, 'the look-alike got only the address the node routes to it');

  const explicit = await vmpeer(node, ['attach', '--netns', attacker.podNs.name, '--guest-ip', vm.podIp, ...bpffs]);
  t.is(explicit.code, 2);
  t.is(explicit.stderr.trim().split('\n').length, 1, explicit.stderr);
  t.regex(explicit.stderr, new RegExp(`--guest-ip ${vm.podIp.replace(/\./g, '\\.')}: this node routes it to ${vm.hostVeth.name}, not to the pod's host veth ${attacker.hostVeth.name}; pass --trust-guest-ip`));
  t.true(state.covered(vm), 'nothing written');

  const batches = await pingUnderAttack(l, vm, async (round) => {
    await touch(attacker, vm.podIp, round);
    // an operator's script re-attaching every pod as it changes
    await vmpeer(node, ['attach', '--netns', attacker.podNs.name, ...bpffs]);
  });
  t.deepEqual(batches, batches.map(() => BATCH.count), `every batch 10/10: ${batches.join(' ')}`);
  t.true(batches.length >= 10);
  t.true(state.covered(vm));

  const help = await vmpeer(node, ['attach', '--help']);
  t.regex(help.stdout, /--trust-guest-ip +write --guest-ip even so\. Risk:/);
  const trusted = await vmpeer(node, ['attach', '--netns', attacker.podNs.name, '--guest-ip', vm.podIp, '--trust-guest-ip', '--guest-mac', '02:00:00:00:99:01', ...bpffs]);
  t.is(trusted.code, 0, 'the operator vouched for it');
  t.is(state.dp.endpoint(vm.podIp)?.podNetns, inodeOf(attacker.podNs.path)!, 'and got what the help warns of');
});
