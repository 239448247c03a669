/**
 * The endpoint table at 1000 guests. The IPs are the ones a fixed hash
 * would pack together: 16+ sharing one home slot of layout 2's hash (which
 * locked a 17th guest out), IPv6 addresses whose words cancel in any xor
 * fold, a /24 and a run of /24s, consecutive IPv6 ones. Under the node's
 * random key none is refused and the programs (BPF_PROG_TEST_RUN) find every
 * one. The key is what matters: IPs computed to collide under one table's
 * key lock a guest out of that table and spread in another's. Churn leaves
 * lookups as short as in a table filled afresh (probe lengths measured in
 * the user-space model of the table, not timed). On layout 2's table the
 * first test fails at once: it refuses the 17th guest of one home slot.
 */
import test from 'ava';
import { encodeKey } from '../../lib/dataplane/codec.js';
import { EndpointTable, EndpointTableFullError, unkeyedSlotOf } from '../../lib/dataplane/endpoint-table.js';
import { ENDPOINT, EP_DELETED, EP_LIVE, HASH_KEY, PROBES, SLOTS } from '../../lib/dataplane/layout.js';
import { frames } from '../../lib/testkit/packets.js';
import { CLIENT4, CLIENT6, CLIENT_MAC, NODE_MAC, fixture, type Fixture } from '../helpers/bpf.js';

const hex = (n: number) => n.toString(16);
const mac = (i: number): string => `52:54:00:${[(i >> 16) & 255, (i >> 8) & 255, i & 255].map((x) => hex(x).padStart(2, '0')).join(':')}`;

/** IPv4 addresses sharing one home slot of layout 2's (unkeyed) hash. */
function oldHashColliding(count: number): string[] {
  const home = unkeyedSlotOf(encodeKey('10.77.0.1'));
  const out: string[] = [];
  for (let i = 1; out.length < count; i++) {
    const ip = `10.${77 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    if (unkeyedSlotOf(encodeKey(ip)) === home) out.push(ip);
  }
  return out;
}

/** IPv6 addresses whose second and third 32-bit words differ by the same xor: one value for any hash of the words' xor. */
function foldColliding(count: number): string[] {
  return Array.from({ length: count }, (_, i) => {
    const w1 = (i * 0x9e3779b1) >>> 0;
    const w2 = (w1 ^ 0x5a5a0000) >>> 0;
    return `2001:db8:${hex(w1 >>> 16)}:${hex(w1 & 0xffff)}:${hex(w2 >>> 16)}:${hex(w2 & 0xffff)}:0:1`;
  });
}

/** 1000 guests a fixed hash would pack together. */
function adversarial(): string[] {
  return [
    ...oldHashColliding(200),
    ...foldColliding(200),
    ...Array.from({ length: 250 }, (_, i) => `10.244.1.${i + 1}`), // one /24
    ...Array.from({ length: 200 }, (_, i) => `10.245.${i >> 6}.${(i & 63) + 1}`), // the first addresses of consecutive /24s
    ...Array.from({ length: 150 }, (_, i) => `fd00:10:244::${hex(i + 1)}`), // consecutive IPv6
  ];
}

function frameFor(ip: string): Buffer {
  return frames(NODE_MAC, CLIENT_MAC, ip.includes(':') ? CLIENT6 : CLIENT4, ip).udp!;
}

/** The destination MAC fixup gives a frame for `ip` (the guest's when it finds the endpoint, else unchanged). */
function fixupMac(f: Fixture, ip: string): string {
  return f.run('fixup', frameFor(ip)).data.subarray(0, 6).toString('hex');
}

/** IPs (not in `used`) whose home slot under `table`'s key is `slot`. */
function collidingUnder(table: EndpointTable, slot: number, count: number): string[] {
  const out: string[] = [];
  for (let i = 1; out.length < count; i++) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    if (table.home(encodeKey(ip)) === slot) out.push(ip);
  }
  return out;
}

/** Probe lengths, from the table's slots and the model's hash: hits (per live endpoint), misses (per home slot), markers. */
function probeLengths(f: Fixture): { hitMean: number; hitMax: number; missMean: number; deleted: number } {
  const table = f.table;
  const slots = f.obj.map('endpoints').lookupAll().map((v) => v[0]!);
  const flags = slots.map((v) => v.readUInt32LE(ENDPOINT.fields.flags.offset));
  const hits: number[] = [];
  slots.forEach((v, j) => {
    if (flags[j]! & EP_LIVE) hits.push(((j - table.home(Buffer.from(v.subarray(0, 16))) + SLOTS) % SLOTS) + 1);
  });
  let misses = 0;
  for (let h = 0; h < SLOTS; h++) {
    let k = 0;
    while (k < PROBES && flags[(h + k) % SLOTS] !== 0) k++;
    misses += Math.min(k + 1, PROBES);
  }
  return {
    hitMean: hits.reduce((a, b) => a + b, 0) / hits.length,
    hitMax: Math.max(...hits),
    missMean: misses / SLOTS,
    deleted: flags.filter((x) => x === EP_DELETED).length,
  };
}

/** A small deterministic PRNG (mulberry32): the churn is the same every run, only the key is random. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), seed | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

test('1000 guests at colliding, sequential, same-/24 and IPv6 addresses: none refused, the programs find every one, no stranger', (t) => {
  const ips = adversarial();
  t.is(ips.length, 1000);
  t.is(new Set(ips).size, 1000);
  t.is(new Set(ips.slice(0, 200).map((ip) => unkeyedSlotOf(encodeKey(ip)))).size, 1, "200 share one home slot of layout 2's hash");
  const fold = (ip: string) => [0, 4, 8, 12].reduce((x, o) => x ^ encodeKey(ip).readUInt32LE(o), 0);
  t.is(new Set(ips.slice(200, 400).map(fold)).size, 1, '200 share one xor fold');

  const f = fixture(t, []);
  ips.forEach((ip, i) => f.setEndpoint({ guestIp: ip, guestMac: mac(i) })); // throws if one is refused
  t.is(f.table.all().length, 1000);
  const missed = ips.filter((ip, i) => fixupMac(f, ip) !== mac(i).replace(/:/g, ''));
  t.deepEqual(missed, [], 'fixup found every guest (and re-addressed the frame to its MAC)');
  const strangers = ['10.76.0.1', '10.244.2.1', '2001:db8::1', 'fd00:10:244::1000', '10.245.4.1', '192.0.2.1'];
  t.deepEqual(strangers.filter((ip) => fixupMac(f, ip) !== NODE_MAC.replace(/:/g, '')), [], 'and no stranger');
  const lengths = probeLengths(f);
  t.log(`probes: hits ${lengths.hitMean.toFixed(2)} on average, ${lengths.hitMax} at most; misses ${lengths.missMean.toFixed(2)}`);
  t.true(lengths.hitMax <= PROBES);
});

test("the key is what matters: IPs computed under one table's key lock a guest out of it, and spread in another table", (t) => {
  const a = fixture(t, []);
  const b = fixture(t, []);
  a.table.seed();
  b.table.seed();
  const keyOf = (f: Fixture) => f.obj.map('hash_key').lookup(Buffer.alloc(4))![0]!;
  t.is(keyOf(a).length, HASH_KEY.size);
  t.false(keyOf(a).equals(keyOf(b)), 'each table draws its own key');

  const ips = collidingUnder(a.table, 1234, PROBES + 1);
  for (const ip of ips.slice(0, PROBES)) a.setEndpoint({ guestIp: ip });
  t.throws(() => a.setEndpoint({ guestIp: ips[PROBES]! }), { instanceOf: EndpointTableFullError }, 'knowing the key, PROBES addresses lock one more out');

  ips.forEach((ip, i) => b.setEndpoint({ guestIp: ip, guestMac: mac(i) }));
  const homes = new Set(ips.map((ip) => b.table.home(encodeKey(ip))));
  t.true(homes.size >= PROBES - 4, `under another key they have ${homes.size} home slots`);
  t.deepEqual(ips.filter((ip, i) => fixupMac(b, ip) !== mac(i).replace(/:/g, '')), []);
});

test('200 cycles of deleting and creating guests at 1000: no deleted markers pile up, lookups no longer than in a table filled afresh', (t) => {
  const random = prng(16);
  const f = fixture(t, []);
  let live = adversarial();
  live.forEach((ip) => f.setEndpoint({ guestIp: ip }));
  const start = probeLengths(f);
  let next = 0;
  const fresh = () => (next++ % 2 ? `10.${100 + ((next >> 16) & 127)}.${(next >> 8) & 255}.${next & 255}` : `fd00:99::${hex(next)}`);
  for (let cycle = 0; cycle < 200; cycle++) {
    for (let k = 0; k < 5; k++) {
      const [gone] = live.splice(Math.floor(random() * live.length), 1);
      t.true(f.table.delete(gone!));
    }
    for (let k = 0; k < 5; k++) {
      const ip = fresh();
      f.setEndpoint({ guestIp: ip });
      live.push(ip);
    }
  }
  t.is(f.table.all().length, 1000);
  const churned = probeLengths(f);

  // the same guests in a table with the same key, filled afresh
  const g = fixture(t, []);
  g.obj.map('hash_key').update(Buffer.alloc(4), f.obj.map('hash_key').lookup(Buffer.alloc(4))![0]!);
  live.forEach((ip) => g.setEndpoint({ guestIp: ip }));
  const afresh = probeLengths(g);
  t.log(`start ${JSON.stringify(start)}\nchurned ${JSON.stringify(churned)}\nafresh ${JSON.stringify(afresh)}`);

  // backward-shift deletion leaves the table as if the deleted guests had never been there (Knuth, vol. 3 §6.4, Algorithm R):
  // the slots in use, and so the probe lengths, are those of the same guests inserted afresh
  t.is(churned.deleted, 0, 'no deleted marker left');
  t.is(churned.missMean, afresh.missMean, 'a miss probes as many slots as in the table filled afresh');
  t.is(churned.hitMean, afresh.hitMean, 'a hit too');
  const missed = live.filter((ip) => fixupMac(f, ip) === NODE_MAC.replace(/:/g, ''));
  t.deepEqual(missed, [], 'the programs find every guest left');
  live = [];
});
