/** What /metrics reads of the pods: each endpoint with its pod's interfaces, and the pods by state. */
import type { Dataplane } from '../dataplane/dataplane.js';
import type { EndpointReading } from './metrics.js';
import type { Pod } from './pod.js';

/** One reading of the endpoint table, each endpoint's port found through its pod netns (not a copy: the port itself). */
export function endpointReading(dp: Dataplane, pods: ReadonlyMap<number, Pod>): EndpointReading {
  return {
    rows: dp.endpointRows(),
    portOf: (podNetns, guestIp) => (podNetns ? pods.get(podNetns)?.ports.find((p) => p.guestIp === guestIp) : undefined),
  };
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
