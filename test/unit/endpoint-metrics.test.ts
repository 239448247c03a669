/**
 * The per-endpoint counters of /metrics, written straight from a batch read
 * of the endpoint table (lib/daemon/endpoint-metrics.ts, lib/dataplane/
 * endpoint-rows.ts), say what prom-client's labelled counters said for the
 * same endpoints decoded the reference way (decodeEndpoint): the same HELP,
 * TYPE and sample lines, label values escaped the same way, counters summed
 * over CPUs exactly, also past 2^53. The batch is laid out as the kernel
 * lays out a per-CPU array (values 8-byte aligned, one per CPU).
 */
import test from 'ava';
import { Counter, Registry } from 'prom-client';
import type { MapBatch } from '../../lib/bpf/map.js';
import { decodeEndpoint, encodeEndpoint, type Endpoint, type EndpointCounters } from '../../lib/dataplane/codec.js';
import { COUNTER_OFFSETS, EndpointRows } from '../../lib/dataplane/endpoint-rows.js';
import { ENDPOINT, EP_DELETED } from '../../lib/dataplane/layout.js';
import { ENDPOINT_FAMILIES, EndpointMetrics, type EndpointReading, type PortNames } from '../../lib/daemon/endpoint-metrics.js';

const CPUS = 3;
const STRIDE = Math.ceil(ENDPOINT.size / 8) * 8;

type Slot = { ep: Endpoint; perCpu: EndpointCounters[] } | 'empty' | 'deleted';

/** A batch read of a table holding these slots. */
function batch(slots: Slot[]): MapBatch {
  const entryBytes = STRIDE * CPUS;
  const raw = Buffer.alloc(slots.length * entryBytes);
  slots.forEach((s, i) => {
    for (let c = 0; c < CPUS; c++) {
      const at = i * entryBytes + c * STRIDE;
      if (s === 'deleted') raw.writeUInt32LE(EP_DELETED, at + ENDPOINT.fields.flags.offset);
      else if (s !== 'empty') encodeEndpoint(s.ep, s.perCpu[c]).copy(raw, at);
    }
  });
  return { raw, entries: slots.length, entryBytes, stride: STRIDE, cpus: CPUS };
}

const zero: EndpointCounters = { fixed: 0n, redirected: 0n, passed: 0n, bypassedIn: 0n, bypassedOut: 0n };
const ep = (guestIp: string, podNetns: number, redirect = false): Endpoint => ({
  guestIp,
  guestMac: '52:54:00:00:00:01',
  gatewayMac: '52:54:00:00:00:02',
  hostIfindex: 7,
  redirect,
  podNetns,
});
const big = 2n ** 53n - 1n; // exact as a number alone; two of them are not

const SLOTS: Slot[] = [
  'empty',
  { ep: ep('198.18.1.10', 11), perCpu: [{ ...zero, fixed: 5n, passed: 7n }, { ...zero, bypassedIn: 1n }, { ...zero, bypassedOut: 2n }] },
  'deleted',
  { ep: ep('2001:db8::a', 12, true), perCpu: [{ ...zero, redirected: 9n }, zero, { ...zero, bypassedOut: 3n }] },
  { ep: ep('198.18.1.11', 13), perCpu: [zero, zero, zero] },
  { ep: ep('198.18.1.12', 14, true), perCpu: [{ ...zero, fixed: 1n, passed: 4n }, { ...zero, fixed: 2n }, { ...zero, fixed: 1n }] },
  'empty',
];
/** Counters prom-client cannot hold (it counts in numbers): checked against decodeEndpoint's sums. */
const BIG: Slot[] = [{ ep: ep('198.18.1.12', 14, true), perCpu: [{ ...zero, fixed: big, passed: 2n ** 64n - 1n }, { ...zero, fixed: big }, { ...zero, fixed: 1n }] }];

const PORTS = new Map<number, PortNames & { guestIp: string }>([
  [11, { guestIp: '198.18.1.10', uplink: { ifname: 'eth0-nic' }, hostVeth: { ifname: 'cali1' } }],
  [12, { guestIp: '2001:db8::a', uplink: { ifname: 'we"ird\\name' }, hostVeth: { ifname: 'line\nbreak' } }],
  [14, { guestIp: '198.18.1.12', uplink: { ifname: 'eth0-nic' }, hostVeth: { ifname: 'cali4' } }],
]);

function reading(slots: Slot[], ports = PORTS): EndpointReading {
  return { rows: new EndpointRows(batch(slots)), portOf: (netns, ip) => (ports.get(netns)?.guestIp === ip ? ports.get(netns) : undefined) };
}

/** What prom-client writes for the live slots decoded the reference way (decodeEndpoint). */
async function viaPromClient(slots: Slot[]): Promise<string> {
  const b = batch(slots);
  const live = slots.flatMap((s, i) => {
    if (typeof s === 'string') return [];
    const perCpu = Array.from({ length: CPUS }, (_, c) => b.raw.subarray(i * b.entryBytes + c * STRIDE, i * b.entryBytes + c * STRIDE + ENDPOINT.size));
    return [decodeEndpoint(perCpu)];
  });
  const registry = new Registry();
  for (const f of ENDPOINT_FAMILIES) {
    const c = new Counter({ name: f.name, help: f.help, labelNames: ['guest_ip', 'interface', 'host_interface'], registers: [registry] });
    for (const e of live) {
      const port = PORTS.get(e.podNetns!);
      const labels = { guest_ip: e.guestIp, interface: port?.uplink.ifname ?? '', host_interface: port?.hostVeth.ifname ?? '' };
      c.inc(labels, Number(e.counters[f.counter]));
    }
  }
  return registry.metrics();
}

const lines = (text: string) => text.split('\n').filter(Boolean).sort();

test('the same lines as prom-client writes for the same endpoints: escaping, per-CPU sums', async (t) => {
  const text = new EndpointMetrics().text(reading(SLOTS));
  t.deepEqual(lines(text.body.toString()), lines(await viaPromClient(SLOTS)));
  const body = text.body.toString();
  t.regex(body, /interface="we\\"ird\\\\name",host_interface="line\\nbreak"/);
  t.true(body.includes(`vmpeer_endpoint_frames_fixed_total{guest_ip="198.18.1.12",interface="eth0-nic",host_interface="cali4"} 4\n`));
  t.true(body.includes(`vmpeer_endpoint_frames_bypassed_out_total{guest_ip="198.18.1.10",interface="eth0-nic",host_interface="cali1"} 2\n`));
  t.is(text.endpoints, 4);
  t.is(text.notAccelerated, 2);
});

test('counters past 2^53 are summed exactly (as a bigint), a lone 2^64 - 1 too', (t) => {
  const body = new EndpointMetrics().text(reading(BIG)).body.toString();
  t.true(body.includes(`vmpeer_endpoint_frames_fixed_total{guest_ip="198.18.1.12",interface="eth0-nic",host_interface="cali4"} ${2n * big + 1n}\n`));
  t.true(body.includes(`vmpeer_endpoint_frames_passed_total{guest_ip="198.18.1.12",interface="eth0-nic",host_interface="cali4"} ${2n ** 64n - 1n}\n`));
  t.true(body.includes(`vmpeer_endpoint_frames_redirected_total{guest_ip="198.18.1.12",interface="eth0-nic",host_interface="cali4"} 0\n`));
});

test('the rows read in place agree with decodeEndpoint field by field', (t) => {
  const slots = [...SLOTS, ...BIG.map((s) => (typeof s === 'string' ? s : { ...s, ep: { ...s.ep, guestIp: '198.18.1.13' } }))];
  const b = batch(slots);
  const rows = new EndpointRows(b);
  const live = slots.flatMap((s, i) => (typeof s === 'string' ? [] : [i]));
  t.is(rows.length, live.length);
  live.forEach((slot, i) => {
    const perCpu = Array.from({ length: CPUS }, (_, c) => b.raw.subarray(slot * b.entryBytes + c * STRIDE, slot * b.entryBytes + c * STRIDE + ENDPOINT.size));
    const ref = decodeEndpoint(perCpu);
    t.is(rows.guestIp(i), ref.guestIp);
    t.is(rows.podNetns(i), ref.podNetns ?? 0);
    t.is(rows.redirect(i), ref.redirect);
    for (const [name, offset] of Object.entries(COUNTER_OFFSETS)) t.is(BigInt(rows.counter(i, offset)), ref.counters[name as keyof EndpointCounters], `${ref.guestIp} ${name}`);
  });
});

test('a label set follows its pod: renamed interfaces are written anew, a gone endpoint is forgotten', (t) => {
  const m = new EndpointMetrics();
  const one: Slot[] = [{ ep: ep('198.18.1.10', 11), perCpu: [zero, zero, zero] }];
  t.regex(m.text(reading(one)).body.toString(), /interface="eth0-nic",host_interface="cali1"\}/);
  const renamed = new Map([[11, { guestIp: '198.18.1.10', uplink: { ifname: 'eth0-nic' }, hostVeth: { ifname: 'cali9' } }]]);
  t.regex(m.text(reading(one, renamed)).body.toString(), /interface="eth0-nic",host_interface="cali9"\}/);
  t.regex(m.text(reading(one, new Map())).body.toString(), /interface="",host_interface=""\}/);
  t.notRegex(m.text(reading([])).body.toString(), /guest_ip=/);
  t.is((m as unknown as { labels: Map<string, unknown> }).labels.size, 0);
});

test('no endpoints: each family still says what it is, with no samples', (t) => {
  const text = new EndpointMetrics().text(reading(['empty', 'deleted'])).body.toString();
  for (const f of ENDPOINT_FAMILIES) t.true(text.includes(`# HELP ${f.name} ${f.help}\n# TYPE ${f.name} counter\n`), f.name);
  t.notRegex(text, /^vmpeer_endpoint_frames_\w+\{/m);
});
