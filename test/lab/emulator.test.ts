/**
 * The CNI emulator object: the layouts lib/lab/emulator.ts encodes match the
 * BTF clang wrote, and it attaches both ways a CNI does (tcx, clsact).
 */
import test from 'ava';
import { native } from '../../lib/native.js';
import { KernelUnsupportedError } from '../../lib/errors.js';
import { CniEmulator, EMULATOR_OBJECT } from '../../lib/lab/index.js';
import { EMU_CONFIG, EMU_FLOW_SIZE, EMU_ROUTE, EMU_STATS } from '../../lib/lab/emulator.js';
import { lab } from '../helpers/lab.js';

test('map value layouts match the object BTF', (t) => {
  const obj = native().openObject(EMULATOR_OBJECT);
  t.teardown(() => obj.close());
  const btf = (name: string) => {
    const s = obj.btfStruct(name);
    if (!s) throw new Error(`no struct ${name}`);
    return { size: s.size, members: s.members.map((m) => [m.name, m.offset, m.size]) };
  };
  const encoded = (layout: { struct: string; size: number; fields: Record<string, { offset: number; size: number }> }) => ({
    size: layout.size,
    members: Object.entries(layout.fields).map(([name, f]) => [name, f.offset, f.size]),
  });
  for (const layout of [EMU_ROUTE, EMU_CONFIG, EMU_STATS]) t.deepEqual(btf(layout.struct), encoded(layout), layout.struct);
  t.is(btf('emu_flow').size, EMU_FLOW_SIZE);
  const maps = Object.fromEntries(obj.maps.map((m) => [m.name, m]));
  t.is(maps.emu_routes?.keySize, 4);
  t.is(maps.emu_routes?.valueSize, EMU_ROUTE.size);
  t.is(maps.emu_flows?.keySize, EMU_FLOW_SIZE);
  t.is(maps.emu_config?.valueSize, EMU_CONFIG.size);
  t.is(maps.emu_stats?.valueSize, EMU_STATS.size);
});

const TCX = native().kernelFeatures().tcx;

if (!TCX) {
  test('attached with tcx [no tcx on this kernel: loading the emulator for tcx is refused]', (t) => {
    const err = t.throws(() => CniEmulator.load({ mode: 'tcx' }), { instanceOf: KernelUnsupportedError });
    t.regex(err!.message, /no tcx/);
  });
}

for (const mode of TCX ? (['tcx', 'clsact'] as const) : (['clsact'] as const)) {
  test(`attached with ${mode}: the seed reproduces, and detaching restores the kernel path`, async (t) => {
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
