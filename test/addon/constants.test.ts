/**
 * openObject()'s per-load choices, which per-pod instances are made of
 * (lib/dataplane/pod-instances.ts): only some programs, `.rodata` constants
 * set before load and read back from the loaded program, maps reused by fd,
 * and a pin directory that never holds `.rodata`.
 */
import fs from 'node:fs';
import test from 'ava';
import { fdInfo } from '../../lib/bpf/fdinfo.js';
import { PINNED_MAPS } from '../../lib/dataplane/pinned-maps.js';
import { BpfObject } from '../../lib/bpf/object.js';
import { PodInstances } from '../../lib/dataplane/pod-instances.js';
import { native } from '../../lib/native.js';
import { bpffsDir } from '../helpers/netns.js';
import { OBJECT_PATH, addon, map, openObject, program, throwsNative } from './common.js';

const POD = 4026531993;

test('programs: only the named programs are loaded', (t) => {
  const obj = openObject(t, { programs: ['fixup', 'from_guest'] });
  t.deepEqual(obj.programs.map((p) => p.name).sort(), ['fixup', 'from_guest']);
});

test("constants: vmpeer_pod is written before load and read back from the loaded programs; the shared load's is 0", (t) => {
  const shared = openObject(t);
  const pod = openObject(t, { constants: { vmpeer_pod: POD } });
  for (const name of ['fixup', 'from_guest']) {
    t.deepEqual(addon.progConstants(program(shared, name).fd), { vmpeer_pod: 0 }, `shared ${name}`);
    t.deepEqual(addon.progConstants(program(pod, name).fd), { vmpeer_pod: POD }, `pod ${name}`);
    // the tag ignores map contents (bpf_prog_calc_tag zeroes map references): one tag for every instance
    t.is(fdInfo(program(pod, name).fd).progTag, fdInfo(program(shared, name).fd).progTag, `${name}: one tag`);
  }
});

test('reuseMaps: the instance runs on the maps it was given, and gets its own .rodata', (t) => {
  const shared = openObject(t);
  const fds = { endpoints: map(shared, 'endpoints').fd, stats: map(shared, 'stats').fd };
  const pod = openObject(t, { programs: ['fixup'], reuseMaps: fds, constants: { vmpeer_pod: POD } });
  t.is(map(pod, 'endpoints').id, map(shared, 'endpoints').id);
  t.is(map(pod, 'stats').id, map(shared, 'stats').id);
  const rodata = (o: typeof pod) => o.maps.find((m) => m.name.endsWith('.rodata'))!.id;
  t.not(rodata(pod), rodata(shared));
});

test('pinMapsIn pins the maps of SEC(".maps") only: a pinned .rodata would hand its constants to the next load', (t) => {
  const dir = bpffsDir(t);
  const first = addon.openObject(OBJECT_PATH, { pinMapsIn: dir, constants: { vmpeer_pod: POD } });
  t.teardown(() => first.close());
  t.deepEqual(fs.readdirSync(dir).sort(), [...PINNED_MAPS].sort());
  const next = openObject(t, { pinMapsIn: dir });
  t.deepEqual(addon.progConstants(program(next, 'fixup').fd), { vmpeer_pod: 0 });
  t.is(map(next, 'endpoints').id, map(first, 'endpoints').id, 'the pinned maps are reused');
});

test('a constant the object lacks, or bad options, are refused before anything loads', (t) => {
  throwsNative(t, () => addon.openObject(OBJECT_PATH, { constants: { no_such_constant: 1 } }), { code: 'ENOENT', op: 'openObject', message: /no constant no_such_constant/ });
  throwsNative(t, () => addon.openObject(OBJECT_PATH, { constants: { vmpeer_pod: -1 } }), { typeError: true });
  throwsNative(t, () => addon.openObject(OBJECT_PATH, { programs: 'fixup' as unknown as string[] }), { typeError: true });
  throwsNative(t, () => addon.openObject(OBJECT_PATH, { reuseMaps: { endpoints: 'x' as unknown as number } }), { typeError: true });
});

test('PodInstances: a load closes the instances nothing holds, held ones stay (a preload for the bridge bypass keeps its own)', (t) => {
  const shared = BpfObject.open(OBJECT_PATH);
  const instances = new PodInstances(native(), fs.readFileSync(OBJECT_PATH), shared.maps);
  t.teardown(() => {
    instances.close();
    shared.close();
  });
  const release = instances.preload(POD);
  t.true(instances.isLoaded(POD));
  instances.preload(POD + 1)(); // loaded, then released at once
  t.is(instances.size, 2, 'the held one is kept');
  release();
  instances.preload(POD + 2);
  t.is(instances.size, 1, 'loading one closed the two nothing held');
  t.false(instances.isLoaded(POD));
  t.deepEqual(addon.progConstants(instances.program('fixup', POD + 2).fd), { vmpeer_pod: POD + 2 });
  for (let i = 0; i < 20; i++) instances.preload(POD + 10 + i)();
  t.is(instances.size, 2, 'preloads one after another leave one instance (and the held one)');
});
