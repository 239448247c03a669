/**
 * The per-endpoint counters of /metrics, written directly (lib/daemon/
 * endpoint-metrics.ts), say what prom-client's labelled counters said: the
 * same HELP, TYPE and sample lines, label values escaped the same way.
 */
import test from 'ava';
import { Counter, Registry } from 'prom-client';
import { ENDPOINT_FAMILIES, endpointMetricsText, type EndpointSample } from '../../lib/daemon/endpoint-metrics.js';

const samples: EndpointSample[] = [
  { guestIp: '198.18.1.10', ifname: 'eth0-nic', hostIfname: 'cali1', redirect: false, fixed: 5n, redirected: 0n, passed: 7n, bypassedIn: 1n, bypassedOut: 2n },
  { guestIp: '2001:db8::a', ifname: 'we"ird\\name', hostIfname: 'line\nbreak', redirect: true, fixed: 0n, redirected: 9n, passed: 0n, bypassedIn: 0n, bypassedOut: 3n },
  { guestIp: '198.18.1.11', ifname: '', hostIfname: '', redirect: false, fixed: 0n, redirected: 0n, passed: 0n, bypassedIn: 0n, bypassedOut: 0n },
];

async function viaPromClient(eps: EndpointSample[]): Promise<string> {
  const registry = new Registry();
  for (const f of ENDPOINT_FAMILIES) {
    const c = new Counter({ name: f.name, help: f.help, labelNames: ['guest_ip', 'interface', 'host_interface'], registers: [registry] });
    for (const e of eps) c.inc({ guest_ip: e.guestIp, interface: e.ifname, host_interface: e.hostIfname }, Number(f.pick(e)));
  }
  return registry.metrics();
}

const lines = (text: string) => text.split('\n').filter(Boolean).sort();

test('the same lines as prom-client writes for the same endpoints, escaping included', async (t) => {
  t.deepEqual(lines(endpointMetricsText(samples)), lines(await viaPromClient(samples)));
  t.regex(endpointMetricsText(samples), /interface="we\\"ird\\\\name",host_interface="line\\nbreak"/);
});

test('no endpoints: each family still says what it is, with no samples', (t) => {
  const text = endpointMetricsText([]);
  for (const f of ENDPOINT_FAMILIES) t.true(text.includes(`# HELP ${f.name} ${f.help}\n# TYPE ${f.name} counter\n`), f.name);
  t.notRegex(text, /^vmpeer_endpoint_frames_\w+\{/m);
});
