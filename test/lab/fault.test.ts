/**
 * The lab reproduces the seed exactly (docs/design.md §1):
 *   - kernel path only (no emulator): everything works;
 *   - with the CNI emulator's peer-redirect fast path: the first packet of a
 *     flow reaches the VM, later ones don't (ping 1 of N, TCP connects and
 *     then stalls), plain pods are fine, and a flow that timed out lets one
 *     packet through again. Same from a client pod on the node.
 */
import test, { type ExecutionContext } from 'ava';
import type { Endpoint, Lab } from '../../lib/lab/index.js';
import { lab } from '../helpers/lab.js';

const N = 10;

test('kernel path (no emulator): client → VM and → plain pod, ping and TCP', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 1, emulator: false });
  const vm = l.vms[0]!;
  const pod = l.plain[0]!;
  t.false(l.emulatorAttached);
  t.is((await l.ping(l.client, vm.podIp, { count: N })).received, N);
  t.is((await l.ping(l.client, pod.podIp, { count: N })).received, N);
  t.is((await l.ping(pod, vm.podIp, { count: N })).received, N, 'on-node client pod → VM');
  for (const [from, to] of [[l.client, vm.podIp], [l.client, pod.podIp], [pod, vm.podIp]] as Array<[Endpoint, string]>) {
    const e = await l.tcpEcho(from, to, `hello ${to}`);
    t.true(e.echoed, `${from.label} → ${to}: ${e.error}`);
  }
  const x = await l.transfer(l.client, vm.podIp, 4 << 20);
  t.is(x.intact, 4 << 20, `transfer: ${x.error}`);
  t.deepEqual(l.emulatorStats(), { first: 0, expired: 0, redirected: 0, optedOut: 0, other: 0 });
});

async function seed(t: ExecutionContext, l: Lab, from: Endpoint, label: string) {
  const vm = l.vms[0]!;
  const before = l.emulatorStats();
  const p = await l.ping(from, vm.podIp, { count: N });
  t.is(p.transmitted, N);
  t.deepEqual(p.replies, [0], `${label}: only the first echo (kernel path) gets a reply`);
  const after = l.emulatorStats();
  t.true(after.first - before.first >= 1, `${label}: the first packet went to the kernel`);
  t.true(after.redirected - before.redirected >= N - 1, `${label}: the others were peer-redirected`);

  const e = await l.tcpEcho(from, vm.podIp, 'lost in the bridge', { timeoutMs: 1000 });
  t.true(e.connected, `${label}: SYN / SYN-ACK complete (${e.error})`);
  t.false(e.echoed, `${label}: no application byte comes back`);
  t.is(e.received.length, 0);
  t.is(e.error, 'timeout');
}

test('seed: client on another node → VM gets 1 of N pings, TCP connects then stalls', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 1 });
  await seed(t, l, l.client, 'client');
});

test('seed: on-node client pod → VM, the same', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 1 });
  await seed(t, l, l.plain[0]!, 'on-node pod');
});

test('seed: plain pods are fine on the fast path (client and on-node client)', async (t) => {
  const l = await lab(t, { vmPods: 0, plainPods: 2 });
  const [a, b] = [l.plain[0]!, l.plain[1]!];
  for (const [from, to] of [[l.client, a], [b, a]] as Array<[Endpoint, Endpoint]>) {
    const before = l.emulatorStats().redirected;
    t.is((await l.ping(from, to.ip, { count: N })).received, N, `${from.label} → ${to.label}`);
    t.true(l.emulatorStats().redirected - before >= N - 1, 'the pings did take the fast path');
    t.true((await l.tcpEcho(from, to.ip, 'fine')).echoed);
    const x = await l.transfer(from, to.ip, 2 << 20);
    t.is(x.intact, 2 << 20, `${from.label} → ${to.label}: ${x.error}`);
  }
});

for (const kind of ['client', 'on-node pod'] as const) {
  test(`seed: a flow idle for the flow timeout starts over with a packet that gets through (${kind})`, async (t) => {
    const l = await lab(t, { vmPods: 1, plainPods: 1, flowTimeoutMs: 1000 });
    const vm = l.vms[0]!;
    const from = kind === 'client' ? l.client : l.plain[0]!;
    // one ping flow (one ICMP id), 1.5 s between echoes: each one finds the entry timed out
    const slow = await l.ping(from, vm.podIp, { count: 3, intervalMs: 1500 });
    t.deepEqual(slow.replies, [0, 1, 2]);
    t.true(l.emulatorStats().expired >= 2);
    // the same timeout, echoes 100 ms apart: the flow stays established
    t.deepEqual((await l.ping(from, vm.podIp, { count: N })).replies, [0]);
  });
}

test('seed: a busy flow whose entry expires lets one packet through per expiry', async (t) => {
  // entries live 1 s from their first packet (the CNI's timeout), busy or not
  const l = await lab(t, { vmPods: 1, plainPods: 0, flowLifetimeMs: 1000 });
  const p = await l.ping(l.client, l.vms[0]!.podIp, { count: 25, intervalMs: 100 });
  t.is(p.replies[0], 0);
  t.true(p.received >= 2 && p.received <= 4, `replies ${p.replies.join(',')}`);
  for (let i = 1; i < p.replies.length; i++) {
    const gap = p.replies[i]! - p.replies[i - 1]!;
    t.true(gap >= 5 && gap <= 15, `about one reply per second: ${p.replies.join(',')}`);
  }
});

test('the emulator can be detached and attached again at run time', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 0 });
  const vm = l.vms[0]!;
  t.is((await l.ping(l.client, vm.podIp, { count: 5 })).received, 1);
  l.setEmulator(false);
  t.is((await l.ping(l.client, vm.podIp, { count: 5 })).received, 5);
  t.true((await l.tcpEcho(l.client, vm.podIp, 'back')).echoed);
  l.setEmulator(true);
  t.is((await l.ping(l.client, vm.podIp, { count: 5 })).received, 1);
});

test("a pod marked noRedirect (Calico's virt-launcher skip) takes the kernel path", async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 0 });
  const vm = l.vms[0]!;
  l.emulator.setRoute(vm.podIp, vm.hostVeth.ifindex, { noRedirect: true });
  t.is((await l.ping(l.client, vm.podIp, { count: 5 })).received, 5);
  t.true(l.emulatorStats().optedOut >= 5);
  t.true((await l.tcpEcho(l.client, vm.podIp, 'slow but right')).echoed);
});

test('two VM pods: the second VM as a client of the first, and both faulty from the client', async (t) => {
  const l = await lab(t, { vmPods: 2, plainPods: 0 });
  const [a, b] = [l.vms[0]!, l.vms[1]!];
  t.is((await l.ping(l.client, a.podIp, { count: 5 })).received, 1);
  t.is((await l.ping(l.client, b.podIp, { count: 5 })).received, 1);
  t.is((await l.ping(b.guest!, a.podIp, { count: 5 })).received, 1, 'VM → VM on the node');
});
