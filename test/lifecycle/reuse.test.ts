/**
 * A VM's life after its first boot, with the daemon and ownership by the
 * node's route: the guest reboots (same MAC), the VM is recreated in a new
 * pod with a new MAC on the same IP, and a VM's IP goes to a plain pod and
 * then to another VM. Each time the endpoint follows within the coverage
 * target, traffic takes the fast path, and nothing stale remains.
 */
import test, { type ExecutionContext } from 'ava';
import { GATEWAY_IP, POD_IF, randomMac } from '../../lib/lab/addressing.js';
import { DynamicPods, announce } from '../../lib/lab/dynamic.js';
import { ipBatch } from '../../lib/lab/exec.js';
import { addPlainPod, removePlainPod } from '../../lib/lab/plain-pod.js';
import type { VmPod } from '../../lib/lab/index.js';
import { inodeOf, startDaemon, State, until } from '../helpers/daemon.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';

/** The coverage target (README): a VM pod is covered within 1 s. */
const COVERAGE_MS = 1000;
const PINGS = { count: 10, intervalMs: 20, waitS: 2 };

async function setUp(t: ExecutionContext) {
  const l = await lab(t, { vmPods: 0, plainPods: 1 });
  const pods = new DynamicPods(l);
  t.teardown(() => pods.destroy());
  const root = `${bpffsDir(t)}/vmpeer`;
  const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-`, args: ['--cleanup-on-exit'] });
  await d.ready();
  const state = new State(t, root);
  return { l, pods, d, state };
}

/** Only this pod's state: one endpoint (its guest's), fixup and (the bridge bypass being the default) from_guest, and their pins. */
function onlyState(t: ExecutionContext, state: State, vm: VmPod): void {
  const inode = inodeOf(vm.podNs.path);
  t.deepEqual(
    state.dp.endpoints().map((e) => [e.guestIp, e.guestMac, e.podNetns]),
    [[vm.podIp, vm.guestMac, inode]],
    'one endpoint, the live guest’s',
  );
  t.deepEqual(
    state.dp.attachments().map((r) => [r.program, r.netnsInode, r.ifname]),
    [['fixup', inode, vm.nic.name], ['from_guest', inode, vm.tap]],
    'fixup and from_guest, in the live pod',
  );
  t.is(state.pins().filter((p) => p.startsWith('links/') || p.startsWith('filters/')).length, 2, 'one pin per attachment');
}

test.serial('the guest reboots with the same MAC: the endpoint stays, the fast path works again as soon as it is up', async (t) => {
  const { l, pods, d, state } = await setUp(t);
  const vm = await pods.add();
  await until(() => state.covered(vm), 5000);
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count);

  const from = d.logs.length;
  // a reboot: the guest's NIC goes down (the bridge port loses carrier, its FDB entry goes), then
  // comes up with the same MAC and an empty ARP cache, configures itself again (DHCP: its routes
  // went with the link) and talks
  await ipBatch([`link set ${POD_IF} down`], vm.guestNs!.name);
  await new Promise((r) => setTimeout(r, 1500));
  await ipBatch(
    [`neigh flush dev ${POD_IF}`, `link set ${POD_IF} up`, `route replace ${GATEWAY_IP} dev ${POD_IF} scope link`, `route replace default via ${GATEWAY_IP} dev ${POD_IF}`],
    vm.guestNs!.name,
  );
  await announce(vm);
  t.true(state.covered(vm), 'covered throughout: the endpoint never left');
  t.is((await l.ping(l.client, vm.podIp, PINGS)).received, PINGS.count, 'client: every echo, the first ones after the reboot too');
  t.is((await l.ping(l.plain[0]!, vm.podIp, PINGS)).received, PINGS.count, 'on-node pod');
  t.deepEqual(d.changes().slice(from).filter((x) => x.change?.startsWith('endpoint') || x.change === 'detach'), [], 'nothing rewritten or removed: the MAC is the same');
  t.true(state.covered(vm));
  onlyState(t, state, vm);
  t.true(l.emulatorStats().redirected > 0);
});

test.serial('the VM is recreated in a new pod with a new MAC on the same IP: the endpoint follows within the coverage target', async (t) => {
  const { l, pods, state } = await setUp(t);
  const a = await pods.add();
  await until(() => state.covered(a), 5000);
  const aInode = inodeOf(a.podNs.path)!;
  await pods.remove(a);
  await until(() => state.gone(aInode, a.podIp), 5000);

  const b = await pods.add({ guestMac: randomMac(0x0a) });
  t.is(b.podIp, a.podIp, 'the same IP');
  t.not(b.guestMac, a.guestMac, 'a new MAC');
  // add() returns once the guest has sent its first frame (the bridge learned its MAC)
  const added = Date.now();
  await until(() => state.covered(b), 5000);
  const coveredMs = Date.now() - added;
  t.log(`the new pod covered ${coveredMs} ms after its guest's first frame (${Date.now() - b.readyAt} ms after its bridge and tap existed)`);
  t.true(coveredMs <= COVERAGE_MS, `covered ${coveredMs} ms after the guest's first frame`);
  t.is((await l.ping(l.client, b.podIp, PINGS)).received, PINGS.count);
  t.is(state.dp.endpoint(b.podIp)!.guestMac, b.guestMac, 'the new MAC');
  onlyState(t, state, b);
});

test.serial('a VM’s IP reused by a plain pod and later by another VM: no endpoint while the plain pod has it, then the new VM’s', async (t) => {
  const { l, pods, d, state } = await setUp(t);
  const a = await pods.add();
  await until(() => state.covered(a), 5000);
  const ip = a.podIp;
  const aInode = inodeOf(a.podNs.path)!;
  await pods.remove(a);

  const plain = await addPlainPod(l, ip);
  await until(() => state.gone(aInode, ip), 5000);
  t.is(state.dp.endpoint(ip), null, 'no endpoint for the plain pod’s IP');
  t.deepEqual(state.dp.attachments(), [], 'nothing attached in the plain pod');
  t.is((await l.ping(l.client, ip, PINGS)).received, PINGS.count, 'the plain pod answers, untouched by vmpeer');
  t.is((await l.ping(l.plain[0]!, ip, PINGS)).received, PINGS.count, 'from a pod on the node too');
  const plainInode = inodeOf(plain.podNs.path)!;
  await removePlainPod(l, plain);

  const from = d.logs.length;
  const c = await pods.add({ guestMac: randomMac(0x0a) });
  t.is(c.podIp, ip);
  // add() returns once the guest has sent its first frame (the bridge learned its MAC)
  const added = Date.now();
  await until(() => state.covered(c), 5000);
  const coveredMs = Date.now() - added;
  t.log(`the next VM covered ${coveredMs} ms after its guest's first frame`);
  t.true(coveredMs <= COVERAGE_MS, `covered ${coveredMs} ms after the guest's first frame`);
  t.is((await l.ping(l.client, ip, PINGS)).received, PINGS.count);
  t.false(d.logs.slice(from).some((x) => x.netnsInode === plainInode || x.netns === plain.podNs.path), 'the plain pod never mattered');
  onlyState(t, state, c);
});
