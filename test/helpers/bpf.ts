/** The shipped object, loaded privately (no pins) for BPF_PROG_TEST_RUN tests. */
import type { ExecutionContext } from 'ava';
import { BpfObject } from '../../lib/bpf/object.js';
import { decodeStats, encodeStatKey, type Endpoint, type Stats } from '../../lib/dataplane/codec.js';
import { EndpointTable } from '../../lib/dataplane/endpoint-table.js';
import { OBJECT_PATH } from '../../lib/dataplane/dataplane.js';
import { STAT_NAMES } from '../../lib/dataplane/layout.js';

export const TC_ACT_UNSPEC = -1;
export const TC_ACT_REDIRECT = 7;

export { GUEST4, GUEST6, GUEST_MAC, GATEWAY_MAC, CLIENT4, CLIENT6, CLIENT_MAC, NODE_MAC, HOST_MAC, HOST_IFINDEX } from '../../lib/testkit/addresses.js';
import { GATEWAY_MAC, GUEST4, GUEST6, GUEST_MAC, HOST_IFINDEX } from '../../lib/testkit/addresses.js';

export class Fixture {
  constructor(readonly obj: BpfObject) {}

  get table(): EndpointTable {
    return EndpointTable.of(this.obj.maps);
  }

  setEndpoint(ep: Partial<Endpoint> & { guestIp: string }): void {
    this.table.set({ guestMac: GUEST_MAC, gatewayMac: GATEWAY_MAC, hostIfindex: HOST_IFINDEX, redirect: true, ...ep });
  }

  run(program: 'fixup' | 'redirect' | 'from_guest', frame: Buffer, repeat = 1): { retval: number; data: Buffer; durationNs: number } {
    return this.obj.program(program).testRun({ data: frame, repeat });
  }

  stats(): Stats {
    const map = this.obj.map('stats');
    return decodeStats(STAT_NAMES.map((_, slot) => map.lookup(encodeStatKey(slot)) ?? []));
  }

  counters(guestIp: string) {
    return this.table.get(guestIp)!.counters;
  }
}

export function fixture(t: ExecutionContext, endpoints: (Partial<Endpoint> & { guestIp: string })[] = [{ guestIp: GUEST4 }, { guestIp: GUEST6 }]): Fixture {
  const obj = BpfObject.open(OBJECT_PATH);
  t.teardown(() => obj.close());
  const f = new Fixture(obj);
  for (const ep of endpoints) f.setEndpoint(ep);
  return f;
}

/** Runs `action` and returns which stats moved, and by how much. */
export function statDelta(f: Fixture, action: () => void): Partial<Record<keyof Stats, bigint>> {
  const before = f.stats();
  action();
  const after = f.stats();
  return Object.fromEntries(
    (Object.keys(after) as (keyof Stats)[]).filter((k) => after[k] !== before[k]).map((k) => [k, after[k] - before[k]]),
  );
}
