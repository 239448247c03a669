import test from 'ava';
import { ipFromBytes, parseIfname, parseIp, parseMac } from '../../lib/validate.js';
import { UsageError } from '../../lib/errors.js';

test('MACs are canonicalised', (t) => {
  t.is(parseMac('52:54:00:AB:cd:01'), '52:54:00:ab:cd:01');
  t.is(parseMac('52-54-00-ab-cd-01'), '52:54:00:ab:cd:01');
});

for (const bad of ['', '52:54:00:ab:cd', '52:54:00:ab:cd:01:02', 'zz:54:00:ab:cd:01', '5254.00ab.cd01', '01:00:5e:00:00:01', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00']) {
  test(`MAC '${bad}' is refused with a usage error`, (t) => {
    const err = t.throws(() => parseMac(bad, 'guest MAC'), { instanceOf: UsageError });
    t.regex(err!.message, /invalid guest MAC/);
    t.is((err as UsageError).exitCode, 2);
  });
}

test('IPv4 becomes an IPv4-mapped key', (t) => {
  const ip = parseIp('198.18.1.10');
  t.is(ip.family, 4);
  t.is(ip.bytes.toString('hex'), '00000000000000000000ffffc612010a');
  t.is(ipFromBytes(ip.bytes), '198.18.1.10');
});

test('IPv6 round-trips in RFC 5952 form', (t) => {
  const cases: [string, string][] = [
    ['2001:db8::a', '2001:db8::a'],
    ['2001:0db8:0000:0000:0000:0000:0000:000a', '2001:db8::a'],
    ['fd00:1:0:0:1:0:0:1', 'fd00:1::1:0:0:1'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2:3:4:5:6'],
    ['::1', '::1'],
  ];
  for (const [input, canonical] of cases) {
    const ip = parseIp(input);
    t.is(ip.family, 6);
    t.is(ip.text, canonical);
    t.is(ipFromBytes(ip.bytes), canonical);
  }
});

test('an IPv4-mapped IPv6 address is the IPv4 address', (t) => {
  t.deepEqual(parseIp('::ffff:198.18.1.10'), parseIp('198.18.1.10'));
});

for (const bad of ['', '198.18.1', '198.18.1.256', '224.0.0.1', '255.255.255.255', '0.1.2.3', 'ff02::1', '::', 'eth0', '2001:db8::g']) {
  test(`IP '${bad}' is refused with a usage error`, (t) => {
    t.throws(() => parseIp(bad), { instanceOf: UsageError });
  });
}

test('interface names follow the kernel rules', (t) => {
  t.is(parseIfname('eth0-nic'), 'eth0-nic');
  t.is(parseIfname('eth0.100'), 'eth0.100');
  for (const bad of ['', 'a-name-that-is-too-long', 'eth/0', 'eth 0', 'eth:0', '.', '..']) {
    t.throws(() => parseIfname(bad), { instanceOf: UsageError }, bad);
  }
});
