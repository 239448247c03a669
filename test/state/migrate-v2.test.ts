/**
 * The upgrade from layout 2 (the frozen fixture bpf/test/v2_vmpeer.bpf.c:
 * 1024 slots, 16 probes, the unkeyed hash) to this build's table (another
 * size, a keyed hash): the migration re-inserts every live endpoint under
 * the new geometry and key, counters included, and what the old programs
 * counted between the copy and their replacement is added too. Run in
 * process, the programs through BPF_PROG_TEST_RUN: every frame is counted
 * exactly once, in the old maps or the new ones. (With the daemon, under
 * traffic, from layout 1: migrate.test.ts.)
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { BpfObject } from '../../lib/bpf/object.js';
import { Dataplane } from '../../lib/dataplane/dataplane.js';
import { encodeKey } from '../../lib/dataplane/codec.js';
import { unkeyedSlotOf } from '../../lib/dataplane/endpoint-table.js';
import { LAYOUT_VERSION } from '../../lib/dataplane/layout.js';
import { readStamp, STAMP_MAP } from '../../lib/dataplane/migrate.js';
import { pointHooks } from '../../lib/kill-point.js';
import { native, packageRoot } from '../../lib/native.js';
import { frames } from '../../lib/testkit/packets.js';
import { CLIENT4, CLIENT6, CLIENT_MAC, GATEWAY_MAC, NODE_MAC } from '../helpers/bpf.js';
import { bpffsDir } from '../helpers/netns.js';

const V2_OBJECT = path.join(packageRoot, 'dist', 'bpf', 'test', 'v2_vmpeer.bpf.o');

/** Pins a stamp saying `version` in `dir` (this build's code, which ran the v2 object, stamped it with its own). */
function pinOldStamp(dir: string, version: number): void {
  const n = native();
  fs.rmSync(path.join(dir, STAMP_MAP), { force: true });
  const fd = n.mapCreate(2, 4, 4, 1, 'vmpeer_layout');
  try {
    const v = Buffer.alloc(4);
    v.writeUInt32LE(version);
    n.mapUpdate(fd, Buffer.alloc(4), v);
    n.objPin(fd, path.join(dir, STAMP_MAP));
  } finally {
    n.closeFd(fd);
  }
}

/** Guests of every kind: 16 sharing one home slot of the old hash, a run of one /24, IPv6. */
function guests(): string[] {
  const collide: string[] = [];
  const home = unkeyedSlotOf(encodeKey('10.200.0.1'));
  for (let i = 1; collide.length < 16; i++) {
    const ip = `10.200.${(i >> 8) & 255}.${i & 255}`;
    if (unkeyedSlotOf(encodeKey(ip)) === home) collide.push(ip);
  }
  const run = Array.from({ length: 250 }, (_, i) => `10.244.7.${i + 1}`);
  const v6 = Array.from({ length: 150 }, (_, i) => `fd00:10:244::${(i + 1).toString(16)}`);
  return [...collide, ...run, ...v6];
}

const mac = (i: number): string => `52:54:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
const frameFor = (ip: string) => frames(NODE_MAC, CLIENT_MAC, ip.includes(':') ? CLIENT6 : CLIENT4, ip).udp!;

test('layout 2 → 3: every endpoint re-inserted under the new geometry and key, counters carried, frames between copy and swap counted once', (t) => {
  const root = `${bpffsDir(t)}/vmpeer`;
  const maps = path.join(root, 'maps');
  const all = guests();
  const epOf = (ip: string, i: number) => ({ guestIp: ip, guestMac: mac(i), gatewayMac: GATEWAY_MAC, hostIfindex: 100 + i, redirect: i % 2 === 0, podNetns: 4026530000 + i });
  // frames fixup re-addressed for guest i: 1 to 3 before the migration, 2 more for every 5th during it
  const before = (i: number) => 1 + (i % 3);
  const during = (i: number) => (i % 5 === 0 ? 2 : 0);

  const old = Dataplane.open({ root, object: V2_OBJECT });
  // the old table refuses some of them (the old hash packs a /24 next to the colliding 16): those come after the upgrade
  const refused = all.filter((ip, i) => {
    try {
      old.setEndpoint(epOf(ip, i));
      return false;
    } catch {
      return true;
    }
  });
  const ips = all.filter((ip) => !refused.includes(ip));
  t.true(ips.length >= 200 && refused.length > 0, `${ips.length} fit in the old table, ${refused.length} refused`);
  t.is(old.endpoints().length, ips.length);
  // one run per frame: repeated runs would see the frame as the first one left it
  const send = (obj: { program(name: 'fixup'): { testRun(r: { data: Buffer; repeat: number }): unknown } }, ip: string, count: number) => {
    for (let k = 0; k < count; k++) obj.program('fixup').testRun({ data: frameFor(ip), repeat: 1 });
  };
  const index = (ip: string) => all.indexOf(ip);
  ips.forEach((ip) => send(old, ip, before(index(ip))));
  old.close();
  pinOldStamp(maps, 2);
  t.false(fs.existsSync(path.join(maps, 'hash_key')), 'the state of layout 2: no hash key');

  // the old programs keep running on the old maps (as attached ones would) while the new build migrates
  const oldPrograms = BpfObject.open(V2_OBJECT, { pinMapsIn: maps });
  t.teardown(() => oldPrograms.close());
  pointHooks.set('migrate-copied', () => {
    ips.forEach((ip) => send(oldPrograms, ip, during(index(ip))));
  });
  t.teardown(() => pointHooks.delete('migrate-copied'));

  const dp = Dataplane.open({ root });
  t.teardown(() => dp.close());
  t.deepEqual({ from: dp.migration?.from, to: dp.migration?.to, endpoints: dp.migration?.endpoints }, { from: 2, to: LAYOUT_VERSION, endpoints: ips.length });
  t.is(readStamp(native(), maps), LAYOUT_VERSION);
  t.true(fs.existsSync(path.join(maps, 'hash_key')));
  t.false(fs.existsSync(path.join(root, 'maps_next')));

  const wrong: string[] = [];
  ips.forEach((ip) => {
    const i = index(ip);
    const ep = dp.endpoint(ip);
    const want = before(i) + during(i);
    if (!ep) wrong.push(`${ip}: missing`);
    else if (ep.guestMac !== mac(i) || ep.hostIfindex !== 100 + i || ep.redirect !== (i % 2 === 0) || ep.podNetns !== 4026530000 + i) wrong.push(`${ip}: ${JSON.stringify(ep)}`);
    else if (ep.counters.fixed !== BigInt(want)) wrong.push(`${ip}: fixed ${ep.counters.fixed}, want ${want}`);
  });
  t.deepEqual(wrong, [], 'every endpoint carried over with its counters');
  const total = ips.reduce((sum, ip) => sum + before(index(ip)) + during(index(ip)), 0);
  t.is(dp.stats().fixed, BigInt(total), 'the global counters too, frames between copy and swap included');

  // the new table takes the ones the old refused, and the new program finds every guest
  for (const ip of refused) dp.setEndpoint(epOf(ip, index(ip)));
  const missed = all.filter((ip) => {
    const out = dp.program('fixup').testRun({ data: frameFor(ip), repeat: 1 });
    return out.data.subarray(0, 6).toString('hex') !== mac(index(ip)).replace(/:/g, '');
  });
  t.deepEqual(missed, []);
});
