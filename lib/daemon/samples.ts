/** What /metrics reads of the pods: each endpoint with its pod's interfaces, and the pods by state. */
import type { Dataplane } from '../dataplane/dataplane.js';
import type { EndpointSample } from './metrics.js';
import type { Pod } from './pod.js';

export function endpointSamples(dp: Dataplane, pods: ReadonlyMap<number, Pod>): EndpointSample[] {
  return dp.endpoints().map((ep) => {
    const pod = ep.podNetns ? pods.get(ep.podNetns) : undefined;
    const port = pod?.ports.find((p) => p.guestIp === ep.guestIp);
    return {
      guestIp: ep.guestIp,
      ifname: port?.uplink.ifname ?? '',
      hostIfname: port?.hostVeth.ifname ?? '',
      redirect: ep.redirect,
      ...ep.counters,
    };
  });
}

/** vm: covered; uncovered: an endpoint of it cannot be written; waiting: a guest MAC is not known yet, or a port waits for the node's route (standby). */
export function podCounts(pods: Iterable<Pod>): { vm: number; waiting: number; uncovered: number; plain: number } {
  let vm = 0;
  let waiting = 0;
  let uncovered = 0;
  let plain = 0;
  for (const p of pods) {
    if (p.kind === 'vm') {
      if (p.uncovered.size > 0) uncovered++;
      else if (p.ports.some((x) => x.guestMac === null || x.standby)) waiting++;
      else vm++;
    } else if (p.kind === 'plain') plain++;
  }
  return { vm, waiting, uncovered, plain };
}
