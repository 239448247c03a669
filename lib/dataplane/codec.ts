/** Encoding and decoding of the endpoint table and the stats map (layout.ts). */
import { ENDPOINT, EP_BYPASS, EP_LIVE, EP_REDIRECT, STAT_NAMES, type StatName } from './layout.js';
import { ipFromBytes, macFromBytes, macToBytes, parseIp, type Mac } from '../validate.js';

export interface Endpoint {
  guestIp: string;
  guestMac: Mac;
  gatewayMac: Mac;
  hostIfindex: number; // 0: unknown (redirect is then off for this guest)
  redirect: boolean;
  podNetns?: number; // inode of the VM pod's netns, so its endpoints can be found again
  bypass?: BridgeBypass | null; // absent or null: frames go through the pod's bridge
}

/** The pod's bridge ports, by ifindex in the pod netns, for the bridge bypass. */
export interface BridgeBypass {
  uplinkIfindex: number; // eth0-nic
  guestIfindex: number; // tap0
}

export interface EndpointCounters {
  fixed: bigint;
  redirected: bigint;
  passed: bigint;
  bypassedIn: bigint;
  bypassedOut: bigint;
}

export type Stats = Record<StatName, bigint>;

const F = ENDPOINT.fields;

/** Each counter of EndpointCounters and its field in struct vmpeer_endpoint. */
export const COUNTER_FIELDS = [
  ['fixed', 'fixed'],
  ['redirected', 'redirected'],
  ['passed', 'passed'],
  ['bypassedIn', 'bypassed_in'],
  ['bypassedOut', 'bypassed_out'],
] as const satisfies readonly (readonly [keyof EndpointCounters, keyof typeof F])[];

export function encodeKey(ip: string): Buffer {
  return parseIp(ip).bytes;
}

export function decodeKey(key: Uint8Array): string {
  return ipFromBytes(key);
}

/** A live slot's value for every CPU: key and addressing set, counters as given (zero for a new endpoint). */
export function encodeEndpoint(ep: Endpoint, counters?: EndpointCounters): Buffer {
  const b = Buffer.alloc(ENDPOINT.size);
  encodeKey(ep.guestIp).copy(b, F.key.offset);
  macToBytes(ep.guestMac).copy(b, F.guest_mac.offset);
  macToBytes(ep.gatewayMac).copy(b, F.gateway_mac.offset);
  b.writeUInt32LE(ep.hostIfindex, F.host_ifindex.offset);
  b.writeUInt32LE(EP_LIVE | (ep.redirect ? EP_REDIRECT : 0) | (ep.bypass ? EP_BYPASS : 0), F.flags.offset);
  b.writeUInt32LE(ep.podNetns ?? 0, F.pod_netns.offset);
  b.writeUInt32LE(ep.bypass?.uplinkIfindex ?? 0, F.uplink_ifindex.offset);
  b.writeUInt32LE(ep.bypass?.guestIfindex ?? 0, F.guest_ifindex.offset);
  if (counters) {
    for (const [name, field] of COUNTER_FIELDS) b.writeBigUInt64LE(counters[name], F[field].offset);
  }
  return b;
}

/** Decodes the per-CPU values of one live slot: key and addressing from CPU 0, counters summed. */
export function decodeEndpoint(perCpu: Buffer[]): Endpoint & { counters: EndpointCounters } {
  const first = perCpu[0]!;
  const sum = (offset: number) => {
    let acc = 0n;
    for (const v of perCpu) acc += v.readBigUInt64LE(offset);
    return acc;
  };
  const flags = first.readUInt32LE(F.flags.offset);
  return {
    guestIp: decodeKey(first.subarray(F.key.offset, F.key.offset + F.key.size)),
    guestMac: macFromBytes(first.subarray(F.guest_mac.offset)),
    gatewayMac: macFromBytes(first.subarray(F.gateway_mac.offset)),
    hostIfindex: first.readUInt32LE(F.host_ifindex.offset),
    redirect: (flags & EP_REDIRECT) !== 0,
    podNetns: first.readUInt32LE(F.pod_netns.offset),
    bypass: flags & EP_BYPASS ? { uplinkIfindex: first.readUInt32LE(F.uplink_ifindex.offset), guestIfindex: first.readUInt32LE(F.guest_ifindex.offset) } : null,
    counters: {
      fixed: sum(F.fixed.offset),
      redirected: sum(F.redirected.offset),
      passed: sum(F.passed.offset),
      bypassedIn: sum(F.bypassed_in.offset),
      bypassedOut: sum(F.bypassed_out.offset),
    },
  };
}

export function encodeStatKey(slot: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(slot);
  return key;
}

/** Sums each stats slot over CPUs; `slots[i]` holds slot i's per-CPU values. */
export function decodeStats(slots: Buffer[][]): Stats {
  return Object.fromEntries(
    STAT_NAMES.map((name, i) => [name, (slots[i] ?? []).reduce((acc, v) => acc + v.readBigUInt64LE(0), 0n)]),
  ) as Stats;
}
