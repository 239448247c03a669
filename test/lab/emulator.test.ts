/**
 * The CNI emulator object: the layouts lib/lab/emulator.ts encodes match the
 * BTF clang wrote, and it attaches both ways a CNI does (tcx, clsact).
 */
import test from 'ava';
import { native } from '../../lib/native.js';
import { CniEmulator, EMULATOR_OBJECT } from '../../lib/lab/index.js';
import { EMU_CONFIG_SIZE, EMU_ROUTE_SIZE, EMU_STATS_SIZE } from '../../lib/lab/emulator.js';
import { lab } from '../helpers/lab.js';

test('map value layouts match the object BTF', (t) => {
  const obj = native().openObject(EMULATOR_OBJECT);
  t.teardown(() => obj.close());
  const layout = (name: string) => {
    const s = obj.btfStruct(name);
    if (!s) throw new Error(`no struct ${name}`);
    return { size: s.size, members: s.members.map((m) => [m.name, m.offset, m.size]) };
  };
  t.deepEqual(layout('emu_route'), { size: EMU_ROUTE_SIZE, members: [['ifindex', 0, 4], ['flags', 4, 4]] });
  t.deepEqual(layout('emu_config'), { size: EMU_CONFIG_SIZE, members: [['idle_timeout_ns', 0, 8], ['lifetime_ns', 8, 8]] });
  t.deepEqual(layout('emu_stats'), {
    size: EMU_STATS_SIZE,
    members: [['first', 0, 8], ['expired', 8, 8], ['redirected', 16, 8], ['opted_out', 24, 8], ['other', 32, 8]],
  });
  t.is(layout('emu_flow').size, 16);
  const maps = Object.fromEntries(obj.maps.map((m) => [m.name, m]));
  t.is(maps.emu_routes?.keySize, 4);
  t.is(maps.emu_routes?.valueSize, EMU_ROUTE_SIZE);
  t.is(maps.emu_flows?.keySize, 16);
  t.is(maps.emu_config?.valueSize, EMU_CONFIG_SIZE);
  t.is(maps.emu_stats?.valueSize, EMU_STATS_SIZE);
});

for (const mode of ['tcx', 'clsact'] as const) {
  test(`attached with ${mode}: the seed reproduces, and detaching restores the kernel path`, async (t) => {
    if (mode === 'tcx' && !native().kernelFeatures().tcx) {
      t.log('this kernel has no tcx: clsact only');
      t.pass();
      return;
    }
    const l = await lab(t, { vmPods: 1, plainPods: 1, emulatorMode: mode });
    t.is(l.emulator.mode, mode);
    const hooks = native().listHook({ netns: l.node.ns.path, ifname: l.node.uplink.name, hook: 'ingress' });
    t.deepEqual(hooks.map((h) => [h.mode, h.progId]), [[mode, l.emulator.progId]]);
    t.is((await l.ping(l.client, l.vms[0]!.podIp, { count: 5 })).received, 1);
    t.is((await l.ping(l.client, l.plain[0]!.podIp, { count: 5 })).received, 5);
    l.setEmulator(false);
    t.deepEqual(native().listHook({ netns: l.node.ns.path, ifname: l.node.uplink.name, hook: 'ingress' }), []);
    t.is((await l.ping(l.client, l.vms[0]!.podIp, { count: 5 })).received, 5);
  });
}

test('flushFlows() makes the next packet of a known flow a first packet again', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 0 });
  t.is((await l.ping(l.client, l.vms[0]!.podIp, { count: 3 })).received, 1);
  t.true(l.emulator.flowCount() >= 1);
  l.emulator.flushFlows();
  t.is(l.emulator.flowCount(), 0);
  l.emulator.resetStats();
  t.deepEqual(l.emulatorStats(), { first: 0, expired: 0, redirected: 0, optedOut: 0, other: 0 });
});

test('a standalone emulator closes cleanly twice', (t) => {
  const emu = CniEmulator.load();
  emu.configure({ idleTimeoutMs: 1234 });
  emu.setRoute('198.18.1.10', 7);
  t.true(emu.deleteRoute('198.18.1.10'));
  t.false(emu.deleteRoute('198.18.1.10'));
  emu.close();
  emu.close();
  t.throws(() => emu.attach({ netns: '/var/run/netns/none', ifname: 'eth0' }), { message: /closed/ });
});
