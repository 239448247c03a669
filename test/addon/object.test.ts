/** openObject(): loading the shipped object, its programs, maps and BTF, and bad objects. */
import fs from 'node:fs';
import test from 'ava';
import type { NativeObject } from '../../lib/native.js';
import { BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY } from '../../lib/bpf/map.js';
import { HASH_KEY, SLOTS } from '../../lib/dataplane/layout.js';
import { OBJECT_PATH, addon, map, openObject, program, throwsNative } from './common.js';

function checkContents(t: import('ava').ExecutionContext, obj: NativeObject): void {
  t.deepEqual(obj.programs.map((p) => p.name).sort(), ['fixup', 'from_guest', 'redirect']);
  for (const p of obj.programs) {
    t.true(p.fd > 2, `${p.name} fd`);
    t.true(p.id > 0, `${p.name} id`);
    t.true(p.insnCount > 10 && p.insnCount < 4096, `${p.name} insnCount ${p.insnCount}`);
    t.is(addon.progIdOf(p.fd), p.id);
  }
  const endpoints = map(obj, 'endpoints');
  t.like(endpoints, { type: BPF_MAP_TYPE_PERCPU_ARRAY, keySize: 4, valueSize: 88, maxEntries: SLOTS, pinPath: null });
  t.like(map(obj, 'hash_key'), { type: BPF_MAP_TYPE_ARRAY, keySize: 4, valueSize: HASH_KEY.size, maxEntries: 1, pinPath: null });
  const stats = map(obj, 'stats');
  t.like(stats, { type: BPF_MAP_TYPE_PERCPU_ARRAY, keySize: 4, pinPath: null });
  for (const m of obj.maps) {
    t.true(m.fd > 2, `${m.name} fd`);
    t.true(m.id > 0, `${m.name} id`);
  }
}

test('opens and loads the object from a file', (t) => {
  checkContents(t, openObject(t));
});

test('opens and loads the object from a Buffer', (t) => {
  const obj = addon.openObject(fs.readFileSync(OBJECT_PATH));
  t.teardown(() => obj.close());
  checkContents(t, obj);
});

test('every load is a new set of programs and maps', (t) => {
  const a = openObject(t);
  const b = openObject(t);
  t.not(program(a, 'fixup').id, program(b, 'fixup').id);
  t.not(map(a, 'endpoints').id, map(b, 'endpoints').id);
});

test('btfStruct gives the layout of the endpoint value', (t) => {
  const layout = openObject(t).btfStruct('vmpeer_endpoint');
  t.truthy(layout);
  t.is(layout!.name, 'vmpeer_endpoint');
  t.is(layout!.size, 88);
  const byName = new Map(layout!.members.map((m) => [m.name, m]));
  t.deepEqual(byName.get('key'), { name: 'key', offset: 0, size: 16 });
  t.deepEqual(byName.get('guest_mac'), { name: 'guest_mac', offset: 16, size: 6 });
  t.deepEqual(byName.get('host_ifindex'), { name: 'host_ifindex', offset: 28, size: 4 });
  t.deepEqual(byName.get('passed'), { name: 'passed', offset: 64, size: 8 });
  let end = 0;
  for (const m of layout!.members) {
    t.true(m.offset >= end, `${m.name} does not overlap the member before it`);
    end = m.offset + m.size;
  }
  t.true(end <= 88);
});

test('btfStruct is null for a struct the object does not have', (t) => {
  t.is(openObject(t).btfStruct('no_such_struct'), null);
});

test('close() is idempotent and btfStruct() after it fails cleanly', (t) => {
  const obj = addon.openObject(OBJECT_PATH);
  const fd = program(obj, 'fixup').fd;
  obj.close();
  obj.close();
  throwsNative(t, () => addon.progIdOf(fd), { code: 'EBADFD' }); // the program's fd is closed
  throwsNative(t, () => obj.btfStruct('vmpeer_endpoint'), { code: 'EBADF' });
});

test('a garbage buffer is not an object', (t) => {
  const err = throwsNative(t, () => addon.openObject(Buffer.from('this is not an ELF file')), {
    code: 'LIBBPF_ERRNO__FORMAT',
    op: 'bpf_object__open_mem',
    object: 'buffer (23 bytes)',
    message: /^bpf_object__open_mem: LIBBPF_ERRNO__FORMAT \(.+\) for buffer \(23 bytes\)$/,
  });
  t.regex(err.log ?? '', /not a proper ELF object/);
});

test('a missing file is ENOENT', (t) => {
  throwsNative(t, () => addon.openObject('/nonexistent/vmpeer.bpf.o'), {
    code: 'ENOENT',
    errno: 2,
    op: 'bpf_object__open_file',
    object: '/nonexistent/vmpeer.bpf.o',
  });
});

test('bad arguments are TypeErrors with code EINVAL', (t) => {
  throwsNative(t, () => addon.openObject(42 as unknown as string), { typeError: true, code: 'EINVAL', errno: 22, op: 'openObject' });
  throwsNative(t, () => addon.openObject(OBJECT_PATH, { pinMapsIn: 7 as unknown as string }), { typeError: true });
});
