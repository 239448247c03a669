/**
 * The per-endpoint counter families of /metrics, written as Prometheus text
 * directly: a node of 1000 guests has five series per guest, and going
 * through prom-client's labelled counters (reset, then one inc() per series,
 * each hashing its label set, then formatting) cost a scrape over 100 ms of
 * CPU there. Here each endpoint's label set is escaped once per scrape and
 * its five lines are plain concatenation. Same names, help, labels and
 * format as the counters they replace.
 */
import type { EndpointCounters } from '../dataplane/codec.js';

export interface EndpointSample extends EndpointCounters {
  guestIp: string;
  ifname: string;
  hostIfname: string;
  /** Accelerate mode may peer-redirect to it (VMPEER_EP_REDIRECT). */
  redirect: boolean;
}

interface Family {
  name: string;
  help: string;
  pick: (e: EndpointSample) => bigint;
}

export const ENDPOINT_FAMILIES: readonly Family[] = [
  { name: 'vmpeer_endpoint_frames_fixed_total', help: 'Frames to this guest that fixup re-addressed at the pod uplink', pick: (e) => e.fixed },
  { name: 'vmpeer_endpoint_frames_redirected_total', help: 'Frames to this guest that redirect sent into the pod (accelerate mode)', pick: (e) => e.redirected },
  { name: 'vmpeer_endpoint_frames_passed_total', help: 'Frames to this guest passed unchanged (already addressed correctly)', pick: (e) => e.passed },
  { name: 'vmpeer_endpoint_frames_bypassed_in_total', help: 'Frames to this guest that fixup sent straight to the guest port (bridge bypass)', pick: (e) => e.bypassedIn },
  { name: 'vmpeer_endpoint_frames_bypassed_out_total', help: 'Frames from this guest that from_guest sent straight into the host veth (bridge bypass)', pick: (e) => e.bypassedOut },
];

/** A label value as the text format wants it (prom-client's escaping). */
function escapeLabel(v: string): string {
  return /[\\\n"]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : v;
}

/**
 * The families' text. No netns path among the labels: it has one value per
 * pod (cardinality) and shows the node's layout to whoever reads /metrics.
 * The pod IP (guest_ip) joins to kube_pod_info; the interfaces tell the pod's
 * ports apart.
 */
export function endpointMetricsText(samples: readonly EndpointSample[]): string {
  const labels = samples.map((e) => `{guest_ip="${escapeLabel(e.guestIp)}",interface="${escapeLabel(e.ifname)}",host_interface="${escapeLabel(e.hostIfname)}"} `);
  const parts: string[] = [];
  for (const f of ENDPOINT_FAMILIES) {
    parts.push(`# HELP ${f.name} ${f.help}\n# TYPE ${f.name} counter\n`);
    for (let i = 0; i < samples.length; i++) parts.push(`${f.name}${labels[i]}${f.pick(samples[i]!).toString()}\n`);
    parts.push('\n');
  }
  return parts.join('');
}
