/**
 * The per-endpoint counter families of /metrics, written as Prometheus text
 * straight from one batch read of the endpoint table into one Buffer. A node
 * of 1000 guests has five series per guest: through prom-client's labelled
 * counters (reset, one inc() per series, each hashing its label set, then
 * formatting) a scrape cost over 100 ms of CPU there, and through an object
 * per guest and a string per line still ~30 ms, most of it the garbage
 * collector's (what a scrape kept for the next one was promoted, then marked).
 * Here a guest costs its IP's text and nothing that outlives the scrape but
 * its label set's bytes, kept from one scrape to the next. Same names, help,
 * labels and format as prom-client's counters (test/unit/endpoint-metrics).
 */
import type { EndpointCounters } from '../dataplane/codec.js';
import { COUNTER_OFFSETS, type EndpointRows } from '../dataplane/endpoint-rows.js';

/** The names a guest's samples carry besides its IP: the ports of its pod (a VmPort has them). */
export interface PortNames {
  uplink: { ifname: string };
  hostVeth: { ifname: string };
}

/** One reading of the table, and the port each endpoint belongs to (undefined: its pod is not known). */
export interface EndpointReading {
  rows: EndpointRows;
  portOf(podNetns: number, guestIp: string): PortNames | undefined;
}

export interface EndpointText {
  body: Buffer;
  endpoints: number;
  /** Endpoints accelerate mode leaves to the kernel path (no VMPEER_EP_REDIRECT). */
  notAccelerated: number;
}

interface Family {
  name: string;
  help: string;
  counter: keyof EndpointCounters;
}

export const ENDPOINT_FAMILIES: readonly Family[] = [
  { name: 'vmpeer_endpoint_frames_fixed_total', help: 'Frames to this guest that fixup re-addressed at the pod uplink', counter: 'fixed' },
  { name: 'vmpeer_endpoint_frames_redirected_total', help: 'Frames to this guest that redirect sent into the pod (accelerate mode)', counter: 'redirected' },
  { name: 'vmpeer_endpoint_frames_passed_total', help: 'Frames to this guest passed unchanged (already addressed correctly)', counter: 'passed' },
  { name: 'vmpeer_endpoint_frames_bypassed_in_total', help: 'Frames to this guest that fixup sent straight to the guest port (bridge bypass)', counter: 'bypassedIn' },
  { name: 'vmpeer_endpoint_frames_bypassed_out_total', help: 'Frames from this guest that from_guest sent straight into the host veth (bridge bypass)', counter: 'bypassedOut' },
];

const ENCODED = ENDPOINT_FAMILIES.map((f) => ({
  header: Buffer.from(`# HELP ${f.name} ${f.help}\n# TYPE ${f.name} counter\n`),
  name: Buffer.from(f.name),
  offset: COUNTER_OFFSETS[f.counter],
}));
/** Room for a counter's digits: 2^64 has 20. */
const MAX_DIGITS = 20;

/** A label value as the text format wants it (prom-client's escaping). */
function escapeLabel(v: string): string {
  return /[\\\n"]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : v;
}

/** Writes a counter's decimal digits at pos; returns the position after them. */
function writeCount(buf: Buffer, pos: number, v: number | bigint): number {
  if (typeof v === 'bigint') return pos + buf.write(v.toString(), pos, 'latin1');
  let digits = 1;
  for (let x = v; x >= 10; x = Math.floor(x / 10)) digits++;
  for (let p = pos + digits - 1; p >= pos; p--) {
    buf[p] = 48 + (v % 10);
    v = Math.floor(v / 10);
  }
  return pos + digits;
}

interface Labels {
  ifname: string;
  hostIfname: string;
  bytes: Buffer;
  seen: number;
}

/**
 * The families' text, with each guest's label set kept from one scrape to
 * the next (by guest IP; made again when its pod's interfaces change). No
 * netns path among the labels: it has one value per pod (cardinality) and
 * shows the node's layout to whoever reads /metrics. The pod IP (guest_ip)
 * joins to kube_pod_info; the interfaces tell the pod's ports apart.
 */
export class EndpointMetrics {
  private readonly labels = new Map<string, Labels>();
  private scrape = 0;

  text(reading: EndpointReading): EndpointText {
    const { rows } = reading;
    const scrape = ++this.scrape;
    const sets: Buffer[] = new Array<Buffer>(rows.length);
    let labelBytes = 0;
    let notAccelerated = 0;
    for (let i = 0; i < rows.length; i++) {
      const ip = rows.guestIp(i);
      const port = reading.portOf(rows.podNetns(i), ip);
      const ifname = port?.uplink.ifname ?? '';
      const hostIfname = port?.hostVeth.ifname ?? '';
      let l = this.labels.get(ip);
      if (!l || l.ifname !== ifname || l.hostIfname !== hostIfname) {
        l = { ifname, hostIfname, bytes: Buffer.from(`{guest_ip="${escapeLabel(ip)}",interface="${escapeLabel(ifname)}",host_interface="${escapeLabel(hostIfname)}"} `), seen: 0 };
        this.labels.set(ip, l);
      }
      l.seen = scrape;
      sets[i] = l.bytes;
      labelBytes += l.bytes.length;
      if (!rows.redirect(i)) notAccelerated++;
    }
    for (const [ip, l] of this.labels) if (l.seen !== scrape) this.labels.delete(ip);

    let size = 0;
    for (const f of ENCODED) size += f.header.length + rows.length * (f.name.length + MAX_DIGITS + 1) + labelBytes + 1;
    const buf = Buffer.allocUnsafe(size);
    let pos = 0;
    for (const f of ENCODED) {
      pos += f.header.copy(buf, pos);
      for (let i = 0; i < rows.length; i++) {
        pos += f.name.copy(buf, pos);
        pos += sets[i]!.copy(buf, pos);
        pos = writeCount(buf, pos, rows.counter(i, f.offset));
        buf[pos++] = 0x0a;
      }
      buf[pos++] = 0x0a;
    }
    return { body: buf.subarray(0, pos), endpoints: rows.length, notAccelerated };
  }
}
