import test from 'ava';
import { decodeEndpoint, decodeStats, encodeEndpoint, encodeKey } from '../../lib/dataplane/codec.js';
import { ENDPOINT, STAT_NAMES, statEnumName } from '../../lib/dataplane/layout.js';

const ep = { guestIp: '198.18.1.10', guestMac: '52:54:00:00:00:0a', gatewayMac: 'ee:ee:ee:ee:ee:ee', hostIfindex: 17, redirect: true, podNetns: 4026532000 };

test('an endpoint round-trips, counters summed over CPUs', (t) => {
  const cpu0 = encodeEndpoint(ep, { fixed: 1n, redirected: 2n, passed: 3n, bypassedIn: 4n, bypassedOut: 5n });
  const cpu1 = encodeEndpoint(ep, { fixed: 10n, redirected: 20n, passed: 30n, bypassedIn: 40n, bypassedOut: 50n });
  t.is(cpu0.length, ENDPOINT.size);
  t.deepEqual(decodeEndpoint([cpu0, cpu1]), { ...ep, bypass: null, counters: { fixed: 11n, redirected: 22n, passed: 33n, bypassedIn: 44n, bypassedOut: 55n } });
});

test('an endpoint with the bridge bypass round-trips its ports and sets the flag', (t) => {
  const bypassed = { ...ep, bypass: { uplinkIfindex: 3, guestIfindex: 5 } };
  const b = encodeEndpoint(bypassed);
  t.is(b.readUInt32LE(32), 0b1011, 'live, redirect, bypass');
  t.is(b.readUInt32LE(40), 3);
  t.is(b.readUInt32LE(44), 5);
  t.deepEqual(decodeEndpoint([b]).bypass, bypassed.bypass);
});

test('the endpoint bytes are laid out as the C struct (key, MACs side by side, little-endian ints)', (t) => {
  const b = encodeEndpoint(ep);
  t.deepEqual(b.subarray(0, 16), encodeKey(ep.guestIp));
  t.is(b.subarray(16, 28).toString('hex'), '52540000000aeeeeeeeeeeee');
  t.is(b.readUInt32LE(28), 17);
  t.is(b.readUInt32LE(32), 0b11, 'live, redirect');
  t.is(b.readUInt32LE(36), 4026532000);
  t.true(b.subarray(40).every((x) => x === 0), 'no bypass ports, no counters');
});

test('stats decode slot by slot, summed over CPUs', (t) => {
  const slots = STAT_NAMES.map((_, i) => {
    const cpu = Buffer.alloc(8);
    cpu.writeBigUInt64LE(BigInt(i + 1));
    return [cpu, cpu];
  });
  const stats = decodeStats(slots);
  t.is(stats.fixed, 2n);
  t.is(stats.passNewFlow, BigInt(2 * STAT_NAMES.length), 'the last slot');
});

test('stat names map to the C enum names', (t) => {
  t.is(statEnumName('passNotIp'), 'VMPEER_STAT_PASS_NOT_IP');
  t.is(statEnumName('fixed'), 'VMPEER_STAT_FIXED');
});
