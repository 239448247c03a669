/**
 * The endpoint table (an open-addressing hash table in a per-CPU array):
 * what user space writes, the BPF programs find, through collisions,
 * deletions and reuse. (The hash in TypeScript is the one in C:
 * test/unit/header; capacity and churn: capacity.test.ts.)
 */
import test from 'ava';
import { EndpointTable } from '../../lib/dataplane/endpoint-table.js';
import { encodeKey } from '../../lib/dataplane/codec.js';
import { ENDPOINT, PROBES, SLOTS } from '../../lib/dataplane/layout.js';
import { BpfObject } from '../../lib/bpf/object.js';
import { OBJECT_PATH } from '../../lib/dataplane/dataplane.js';
import { CLIENT4, CLIENT6, CLIENT_MAC, GATEWAY_MAC, NODE_MAC, fixture, statDelta, type Fixture } from '../helpers/bpf.js';
import { frames } from '../../lib/testkit/packets.js';

function found(f: Fixture, ip: string): boolean {
  const frame = frames(NODE_MAC, CLIENT_MAC, ip.includes(':') ? CLIENT6 : CLIENT4, ip).udp!;
  return statDelta(f, () => f.run('fixup', frame)).fixed === 1n;
}

function ipv4(n: number): string {
  return `198.${18 + ((n >> 16) & 1)}.${(n >> 8) & 255}.${n & 255}`;
}

/** IPv4 addresses whose home slot is `slot` in `table` (under its key). */
function colliding(table: EndpointTable, slot: number, count: number): string[] {
  const out: string[] = [];
  for (let n = 1; out.length < count; n++) {
    const ip = `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
    if (table.home(encodeKey(ip)) === slot) out.push(ip);
  }
  return out;
}

test('350 endpoints (IPv4 and IPv6): the programs find every one, and no stranger', (t) => {
  const f = fixture(t, []);
  const ips = [...Array.from({ length: 250 }, (_, i) => ipv4(i * 7 + 1)), ...Array.from({ length: 100 }, (_, i) => `2001:db8:${i.toString(16)}::${(i * 13).toString(16)}`)];
  for (const ip of ips) f.setEndpoint({ guestIp: ip });
  t.is(f.table.all().length, ips.length);
  const missed = ips.filter((ip) => !found(f, ip));
  t.deepEqual(missed, []);
  const strangers = [ipv4(3), ipv4(5000), '2001:db8:ffff::1', '198.18.255.254'];
  t.deepEqual(strangers.filter((ip) => found(f, ip)), []);
});

test('collisions: PROBES guests share a home slot; one more is refused; deleting keeps the others found', (t) => {
  const f = fixture(t, []);
  const table = f.table;
  table.seed();
  const ips = colliding(table, SLOTS - 3, PROBES + 1); // near the end: probing wraps around
  for (const ip of ips.slice(0, PROBES)) f.setEndpoint({ guestIp: ip });
  t.throws(() => f.setEndpoint({ guestIp: ips[PROBES]! }), { message: new RegExp(`no free slot for .* \\(all ${PROBES} of its slots are taken\\)`) });
  t.true(ips.slice(0, PROBES).every((ip) => found(f, ip)));

  t.true(f.table.delete(ips[2]!));
  t.false(f.table.delete(ips[2]!));
  t.false(found(f, ips[2]!));
  t.true([...ips.slice(0, 2), ...ips.slice(3, PROBES)].every((ip) => found(f, ip)), 'probing goes past the deleted slot');
  f.setEndpoint({ guestIp: ips[PROBES]! });
  t.true(found(f, ips[PROBES]!), 'the freed slot is reused');

  for (const ip of [...ips.slice(0, 2), ...ips.slice(3)]) t.true(f.table.delete(ip));
  t.deepEqual(f.table.all(), []);
  const slots = f.obj.map('endpoints');
  const used = Array.from({ length: SLOTS }, (_, s) => s).filter((s) => {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(s);
    return slots.lookup(k)![0]!.readUInt32LE(32) !== 0;
  });
  t.deepEqual(used, [], 'every deleted marker was reclaimed once nothing probes past it');
});

test('an update keeps the counters, and changes what frames are addressed to', (t) => {
  const f = fixture(t, [{ guestIp: CLIENT4.replace(/\.2$/, '.77') }]);
  const ip = CLIENT4.replace(/\.2$/, '.77');
  t.true(found(f, ip));
  t.true(found(f, ip));
  const table = EndpointTable.of(f.obj.maps);
  t.is(table.set({ guestIp: ip, guestMac: '02:00:00:00:00:77', gatewayMac: GATEWAY_MAC, hostIfindex: 1, redirect: true }), 'updated');
  t.is(table.set({ guestIp: ip, guestMac: '02:00:00:00:00:77', gatewayMac: GATEWAY_MAC, hostIfindex: 1, redirect: true }), 'unchanged');
  t.is(table.get(ip)!.counters.fixed, 2n);
  const out = f.run('fixup', frames(NODE_MAC, CLIENT_MAC, CLIENT4, ip).udp!);
  t.is(out.data.subarray(0, 6).toString('hex'), '020000000077');
  t.is(table.get(ip)!.counters.fixed, 3n);
});

test('the whole per-CPU table in one batch read equals a lookup of every slot, per CPU', (t) => {
  const obj = BpfObject.open(OBJECT_PATH);
  t.teardown(() => obj.close());
  const m = obj.map('endpoints');
  const table = EndpointTable.of(obj.maps);
  for (let i = 1; i <= 40; i++) table.set({ guestIp: `10.1.0.${i}`, guestMac: '52:54:00:00:00:0a', gatewayMac: 'ee:ee:ee:ee:ee:ee', hostIfindex: i, redirect: true });
  // per-CPU counters differ by CPU
  const slot0 = Buffer.alloc(4);
  const one = m.lookup(slot0)!;
  one.forEach((v, cpu) => v.writeBigUInt64LE(BigInt(cpu + 1), ENDPOINT.fields.fixed.offset));
  m.update(slot0, one);
  const all = m.lookupAll();
  t.is(all.length, SLOTS);
  for (let slot = 0; slot < SLOTS; slot++) {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(slot);
    const each = m.lookup(k)!;
    if (!each.every((v, cpu) => v.equals(all[slot]![cpu]!))) t.fail(`slot ${slot} differs`);
  }
  t.is(table.all().length, 40);
});
