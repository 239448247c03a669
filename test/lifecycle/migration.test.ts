/**
 * Live migration of a real QEMU guest (software emulation, 128 MB) between
 * VM pods, with the CNI moving the guest IP's route as Calico v3.32 does
 * (lib/lab/migration.ts): on one node, and between two nodes. Each test: one
 * boot, two migrations under 100 pps of ping from a client on another node
 * and from a pod on the lab's node, first on the kernel path without vmpeer
 * (the loss the user has anyway), then on the peer-redirect fast path with
 * the daemon(s). vmpeer must lose no more than the kernel path, have the
 * target covered before the guest's first frame there, and leave nothing of
 * the source behind. The tests run one after the other (one QEMU at a time).
 */
import test, { type ExecutionContext } from 'ava';
import { randomMac, vmPodIp } from '../../lib/lab/addressing.js';
import type { Lab } from '../../lib/lab/index.js';
import { labNode, type MigratablePod, type MigrationNode, type MigrationReport, Migrations } from '../../lib/lab/migration.js';
import { SecondNode } from '../../lib/lab/second-node.js';
import { inodeOf, startDaemon, State, until, type DaemonProcess } from '../helpers/daemon.js';
import { endpointAt, endpointWrittenAt, fixupAt, migrateUnderLoad, PPS, allowedLoss, type Loss } from '../helpers/migration.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';

const FAST_PINGS = { count: 10, intervalMs: 20, waitS: 2 };

async function bootSource(t: ExecutionContext, l: Lab, m: Migrations, ip: string, mac: string): Promise<MigratablePod> {
  const a = await m.addPod(ip, mac);
  const q = await m.boot(a);
  t.log(`guest ${q.release} (${q.accel}), ${ip} at ${mac}`);
  await l.waitReachable(ip, 30_000);
  return a;
}

/** The daemon of a node, watching that node's pods (prefix) with its own state root. */
function daemon(t: ExecutionContext, node: MigrationNode, tag: string): { d: DaemonProcess; state: State } {
  const root = `${bpffsDir(t)}/${tag}`;
  const d = startDaemon(t, { nodeNs: node.ns.path, root, prefix: node.podPrefix, args: ['--cleanup-on-exit'] });
  return { d, state: new State(t, root) };
}

/** The loss bound, both clients, against the kernel path measured in the same test. */
function assertLoss(t: ExecutionContext, fast: { loss: Loss; report: MigrationReport & { pingsStartedAt: number } }, kernel: typeof fast): void {
  for (const [name, run] of [['kernel path', kernel], ['vmpeer', fast]] as const) {
    const at = (x: number) => Math.round(x - run.report.pingsStartedAt);
    t.log(`${name}: migrate ${at(run.report.startedAt)}, first frame ${at(run.report.firstFrameAt)}, route ${at(run.report.activatedAt)} ms; lost client ${run.loss.where.client}, pod ${run.loss.where.pod}`);
  }
  for (const who of ['client', 'pod'] as const) {
    const allowed = allowedLoss(kernel.loss[who], kernel.report, fast.report);
    t.log(
      `${who}: vmpeer lost ${fast.loss[who]} (${fast.loss.afterRoute[who]} after the route moved), at most ${allowed} allowed; ` +
        `kernel path ${kernel.loss[who]} (${kernel.loss.afterRoute[who]})`,
    );
    t.true(fast.loss[who] <= allowed, `${who}: vmpeer lost ${fast.loss[who]}, the kernel path ${kernel.loss[who]}: at most ${allowed} allowed`);
  }
}

test.serial('a QEMU guest live-migrates between two VM pods on one node: vmpeer loses no more than the kernel path and leaves no trace of the source', async (t) => {
  t.timeout(8 * 60_000);
  const l = await lab(t, { vmPods: 0, plainPods: 1, emulator: false });
  const m = new Migrations(l);
  t.teardown(() => m.destroy());
  const ip = vmPodIp(60);
  const mac = randomMac(0x0a);
  const a = await bootSource(t, l, m, ip, mac);

  // 1. the kernel path, no vmpeer: what the user loses anyway
  const b = await m.addPod(ip, mac);
  const kernel = await migrateUnderLoad(l, m, a, b);
  t.log(`kernel path: lost ${kernel.loss.client} (client), ${kernel.loss.pod} (on-node pod); downtime ${kernel.report.downtimeMs} ms`);
  t.is((await l.ping(l.client, ip, { count: 5, waitS: 3 })).received, 5, 'the guest answers from its new pod');
  t.is((await b.qemu!.exec('cat /sys/class/net/eth0/address')).output.trim(), mac, 'the guest kept its MAC');

  // 2. the fast path with vmpeer
  const { d, state } = daemon(t, labNode(l), 'vmpeer');
  await d.ready();
  await until(() => state.covered(b), 10_000);
  l.setEmulator(true);
  m.followEmulator();
  t.is((await l.ping(l.client, ip, FAST_PINGS)).received, 10, 'covered before the migration');
  const c = await m.addPod(ip, mac);
  t.not(c.dummyMac, mac, "the target pod's dummy has the target's CNI MAC, not the guest's");
  // the target waits on standby: fixup in place before the guest's first frame there, the endpoint still the source's
  await until(() => fixupAt(state, c), 10_000);
  t.true(endpointAt(state, ip, b), 'the endpoint stays with the source, which the node routes the IP to');
  const logFrom = d.logs.length;
  const stats0 = l.emulatorStats();
  const fast = await migrateUnderLoad(l, m, b, c);
  const redirected = l.emulatorStats().redirected - stats0.redirected;
  t.log(`vmpeer: lost ${fast.loss.client} (client), ${fast.loss.pod} (on-node pod); downtime ${fast.report.downtimeMs} ms; ${redirected} packets peer-redirected`);
  t.true(redirected > 600, 'the traffic took the fast path');

  // the endpoint follows the route, with the guest's MAC (not the target dummy's)
  await until(() => endpointAt(state, ip, c) && state.covered(c), 5000);
  const afterFrame = endpointWrittenAt(d, ip, c, logFrom)! - fast.report.firstFrameAt;
  t.log(
    `the CNI moved the route ${(fast.report.activatedAt - fast.report.firstFrameAt).toFixed(1)} ms after the guest's first frame; ` +
      `the endpoint followed ${afterFrame.toFixed(1)} ms after the frame (fixup was in place before it)`,
  );
  assertLoss(t, fast, kernel);

  // nothing of the source left; counters move on the target
  await until(() => state.dp.attachments().every((r) => r.netnsInode === inodeOf(c.podNs.path)), 5000);
  t.deepEqual(state.dp.endpoints().map((e) => e.guestIp), [ip], 'one endpoint: the guest at the target');
  // the bridge bypass is the default: fixup and from_guest, both in the target
  t.deepEqual(state.dp.attachments().map((r) => r.program).sort(), ['fixup', 'from_guest'], 'fixup and from_guest in the target');
  t.truthy(state.dp.endpoint(ip)!.bypass, 'the target bypasses its bridge');
  const before = state.dp.endpoint(ip)!.counters;
  t.is((await l.ping(l.client, ip, FAST_PINGS)).received, 10);
  const after = state.dp.endpoint(ip)!.counters;
  t.true(after.fixed > before.fixed, "the target's fixup rewrites for the guest");
  t.true(after.bypassedIn > before.bypassedIn && after.bypassedOut > before.bypassedOut, "the guest's traffic goes past the target's bridge");

  console.log(
    `lifecycle-fact: migration same-node at ${PPS} pps, lost packets (of which after the CNI moved the route) kernel path client=${kernel.loss.client} (${kernel.loss.afterRoute.client}) pod=${kernel.loss.pod} (${kernel.loss.afterRoute.pod}) ` +
      `(downtime ${kernel.report.downtimeMs} ms); vmpeer client=${fast.loss.client} (${fast.loss.afterRoute.client}) pod=${fast.loss.pod} (${fast.loss.afterRoute.pod}) (downtime ${fast.report.downtimeMs} ms); ` +
      `target covered before the guest's first frame (fixup on standby), endpoint moved ${afterFrame.toFixed(1)} ms after it`,
  );
  t.deepEqual(await d.kill('SIGTERM'), { code: 0, signal: null });
});

test.serial('a QEMU guest live-migrates to another node and back: each node’s daemon covers its side, the client follows the route', async (t) => {
  t.timeout(8 * 60_000);
  const l = await lab(t, { vmPods: 0, plainPods: 1, emulator: false });
  const n2 = await SecondNode.create(l);
  t.teardown(() => n2.destroy());
  const m = new Migrations(l);
  t.teardown(() => m.destroy());
  const ip = vmPodIp(61);
  const mac = randomMac(0x0a);
  const a = await bootSource(t, l, m, ip, mac);

  // 1. to the second node on the kernel path, no vmpeer
  const b = await m.addPod(ip, mac, n2);
  const kernel = await migrateUnderLoad(l, m, a, b);
  t.log(`kernel path, node → node 2: lost ${kernel.loss.client} (client), ${kernel.loss.pod} (pod on the first node); downtime ${kernel.report.downtimeMs} ms`);
  t.is((await l.ping(l.client, ip, { count: 5, waitS: 3 })).received, 5, 'the guest answers from the second node');

  // 2. back, on the fast path, each node with its daemon and its own bpffs root
  const one = daemon(t, labNode(l), 'node1');
  const two = daemon(t, n2, 'node2');
  await Promise.all([one.d.ready(), two.d.ready()]);
  await until(() => two.state.covered(b), 10_000).catch((e: Error) => {
    throw new Error(`${e.message}: node 2's daemon:\n${two.d.logs.slice(-12).map((x) => JSON.stringify(x)).join('\n')}`);
  });
  t.deepEqual(one.state.dp.endpoints(), [], "the first node's daemon has nothing: the guest is not there");
  l.setEmulator(true);
  n2.setEmulator(true);
  m.followEmulator();
  t.is((await l.ping(l.client, ip, FAST_PINGS)).received, 10, 'covered on the second node');
  const c = await m.addPod(ip, mac);
  await until(() => fixupAt(one.state, c), 10_000);
  t.deepEqual(one.state.dp.endpoints(), [], 'the target waits on standby: fixup, no endpoint');
  const logFrom = one.d.logs.length;
  const r1 = l.emulatorStats().redirected;
  const r2 = n2.emulator.stats().redirected;
  const fast = await migrateUnderLoad(l, m, b, c);
  t.log(
    `vmpeer, node 2 → node: lost ${fast.loss.client} (client), ${fast.loss.pod} (pod on the first node); downtime ${fast.report.downtimeMs} ms; ` +
      `peer-redirected ${n2.emulator.stats().redirected - r2} on node 2, ${l.emulatorStats().redirected - r1} on the first node`,
  );
  t.true(n2.emulator.stats().redirected - r2 > 0 && l.emulatorStats().redirected - r1 > 0, 'the fast path on both nodes');

  await until(() => endpointAt(one.state, ip, c) && one.state.covered(c), 5000);
  const afterFrame = endpointWrittenAt(one.d, ip, c, logFrom)! - fast.report.firstFrameAt;
  t.log(`the endpoint on the first node followed ${afterFrame.toFixed(1)} ms after the guest's first frame (fixup was in place before it)`);
  assertLoss(t, fast, kernel);

  // the second node's daemon removed everything of the source pod
  await until(() => two.state.dp.endpoints().length === 0 && two.state.dp.attachments().length === 0, 5000);
  t.deepEqual(two.state.pins().filter((p) => !p.startsWith('maps/')), [], 'no attachment pins left on the second node');
  t.deepEqual(one.state.dp.endpoints().map((e) => e.guestIp), [ip]);
  t.truthy(one.state.dp.endpoint(ip)!.bypass, 'the target bypasses its bridge (the default)');
  const before = one.state.dp.endpoint(ip)!.counters;
  t.is((await l.ping(l.client, ip, FAST_PINGS)).received, 10);
  const after = one.state.dp.endpoint(ip)!.counters;
  t.true(after.fixed > before.fixed, "the target's fixup rewrites for the guest");
  t.true(after.bypassedIn > before.bypassedIn && after.bypassedOut > before.bypassedOut, "the guest's traffic goes past the target's bridge");

  console.log(
    `lifecycle-fact: migration two-node at ${PPS} pps, lost packets (of which after the CNI moved the route) kernel path client=${kernel.loss.client} (${kernel.loss.afterRoute.client}) pod=${kernel.loss.pod} (${kernel.loss.afterRoute.pod}) ` +
      `(downtime ${kernel.report.downtimeMs} ms); vmpeer client=${fast.loss.client} (${fast.loss.afterRoute.client}) pod=${fast.loss.pod} (${fast.loss.afterRoute.pod}) (downtime ${fast.report.downtimeMs} ms); ` +
      `target covered before the guest's first frame (fixup on standby), endpoint moved ${afterFrame.toFixed(1)} ms after it`,
  );
  for (const x of [one, two]) t.deepEqual(await x.d.kill('SIGTERM'), { code: 0, signal: null });
});
