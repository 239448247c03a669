/** Map access by fd, pinning, and maps reused from a bpffs directory. */
import fs from 'node:fs';
import test from 'ava';
import { bpffsDir } from '../helpers/netns.js';
import { STAT_PASS_UNKNOWN, addon, map, openObject, statSlot, throwsNative } from './common.js';
import path from 'node:path';
import { packageRoot, type OpenOptions } from '../../lib/native.js';
import type { ExecutionContext } from 'ava';

const VALUE_SIZE = 48; // bpf/test/maps.bpf.c: a per-CPU hash, 16-byte keys, 48-byte values
const MAPS_OBJECT = path.join(packageRoot, 'dist/bpf/test/maps.bpf.o');

function openMaps(t: ExecutionContext, options?: OpenOptions) {
  const obj = addon.openObject(MAPS_OBJECT, options);
  t.teardown(() => obj.close());
  return obj;
}

function key(last: number): Buffer {
  const k = Buffer.alloc(16);
  k.writeUInt16BE(0xffff, 10);
  k.writeUInt8(last, 15);
  return k;
}

test('a per-CPU hash: update, lookup, keys and delete round-trip per CPU', (t) => {
  const endpoints = map(openMaps(t), 'table');
  const cpus = addon.possibleCpus();
  t.true(cpus >= 1);
  const size = VALUE_SIZE * cpus; // 48 is a multiple of 8: no padding per CPU
  const value = Buffer.alloc(size);
  for (let cpu = 0; cpu < cpus; cpu++) value.fill(cpu + 1, cpu * VALUE_SIZE, (cpu + 1) * VALUE_SIZE);

  t.is(addon.mapLookup(endpoints.fd, key(1), size), null);
  t.deepEqual(addon.mapKeys(endpoints.fd, 16), []);
  addon.mapUpdate(endpoints.fd, key(1), value);
  addon.mapUpdate(endpoints.fd, key(2), Buffer.alloc(size, 0xee));
  t.deepEqual(addon.mapLookup(endpoints.fd, key(1), size), value);
  t.deepEqual(addon.mapKeys(endpoints.fd, 16).map((k) => k.toString('hex')).sort(), [key(1).toString('hex'), key(2).toString('hex')]);

  t.true(addon.mapDelete(endpoints.fd, key(1)));
  t.false(addon.mapDelete(endpoints.fd, key(1)));
  t.is(addon.mapLookup(endpoints.fd, key(1), size), null);
  t.deepEqual(addon.mapKeys(endpoints.fd, 16), [key(2)]);
});

test('update flags reach the kernel: BPF_NOEXIST on an existing key is EEXIST', (t) => {
  const endpoints = map(openMaps(t), 'table');
  const size = VALUE_SIZE * addon.possibleCpus();
  addon.mapUpdate(endpoints.fd, key(3), Buffer.alloc(size), 1 /* BPF_NOEXIST */);
  throwsNative(t, () => addon.mapUpdate(endpoints.fd, key(3), Buffer.alloc(size), 1), { code: 'EEXIST' });
});

test('sizes that do not match the map are refused before the kernel sees them', (t) => {
  const endpoints = map(openMaps(t), 'table');
  const size = VALUE_SIZE * addon.possibleCpus();
  throwsNative(t, () => addon.mapLookup(endpoints.fd, Buffer.alloc(4), size), { typeError: true, code: 'EINVAL' });
  throwsNative(t, () => addon.mapLookup(endpoints.fd, key(1), VALUE_SIZE + 1), { typeError: true, message: /valueSize/ });
  throwsNative(t, () => addon.mapUpdate(endpoints.fd, key(1), Buffer.alloc(VALUE_SIZE - 1)), { typeError: true });
  throwsNative(t, () => addon.mapKeys(endpoints.fd, 4), { typeError: true });
  throwsNative(t, () => addon.mapLookup(-1, key(1), size), { typeError: true });
});

test('a map fd that is not open is refused by the kernel', (t) => {
  // BPF_OBJ_GET_INFO_BY_FD answers EBADFD (not EBADF) for a closed fd.
  throwsNative(t, () => addon.mapKeys(1_000_000, 16), { code: 'EBADFD', op: 'bpf_obj_get_info_by_fd' });
});

test('array keys: stats has one slot per outcome, all zero', (t) => {
  const stats = map(openObject(t), 'stats');
  const keys = addon.mapKeys(stats.fd, 4);
  t.is(keys.length, stats.maxEntries);
  t.is(statSlot(stats.fd, STAT_PASS_UNKNOWN), 0n);
});

test('pinMapsIn pins the maps, and a second load reuses them', (t) => {
  const dir = bpffsDir(t);
  const first = openMaps(t, { pinMapsIn: dir });
  for (const m of first.maps) {
    t.is(m.pinPath, `${dir}/${m.name}`);
    t.true(fs.existsSync(m.pinPath!));
  }
  const size = VALUE_SIZE * addon.possibleCpus();
  addon.mapUpdate(map(first, 'table').fd, key(9), Buffer.alloc(size, 7));
  first.close();

  const second = openMaps(t, { pinMapsIn: dir });
  const endpoints = map(second, 'table');
  t.is(endpoints.id, map(first, 'table').id, 'the pinned map is reused');
  t.is(map(second, 'stats').id, map(first, 'stats').id);
  t.deepEqual(addon.mapLookup(endpoints.fd, key(9), size), Buffer.alloc(size, 7));

  const unpinned = openMaps(t);
  t.not(map(unpinned, 'table').id, endpoints.id);
});

test('objPin, objGet and closeFd', (t) => {
  const dir = bpffsDir(t);
  const obj = openMaps(t);
  const endpoints = map(obj, 'table');
  addon.objPin(endpoints.fd, `${dir}/endpoints`);
  throwsNative(t, () => addon.objPin(endpoints.fd, `${dir}/endpoints`), { code: 'EEXIST', op: 'bpf_obj_pin' });
  const fd = addon.objGet(`${dir}/endpoints`);
  t.not(fd, endpoints.fd);
  t.deepEqual(addon.mapKeys(fd, 16), []);
  addon.closeFd(fd);
  throwsNative(t, () => addon.closeFd(fd), { code: 'EBADF' });
  throwsNative(t, () => addon.objGet(`${dir}/missing`), { code: 'ENOENT', object: `${dir}/missing` });
});
