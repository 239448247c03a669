/**
 * Per-packet cost of `fixup` and `redirect` with BPF_PROG_TEST_RUN, against a
 * pass-through baseline measured in the same run (see bpf/test/bench.bpf.c
 * for why the harness restores each frame and tail-calls the program).
 */
import path from 'node:path';
import { BpfObject } from '../../lib/bpf/object.js';
import { randomBytes } from 'node:crypto';
import { encodeKey } from '../../lib/dataplane/codec.js';
import { EndpointTable, unkeyedSlotOf } from '../../lib/dataplane/endpoint-table.js';
import { loadPodInstance } from '../../lib/dataplane/pod-instances.js';
import { OBJECT_PATH } from '../../lib/dataplane/dataplane.js';
import { native, packageRoot } from '../../lib/native.js';
import { CLIENT4, CLIENT6, CLIENT_MAC, GATEWAY_MAC, GUEST4, GUEST6, GUEST_MAC, HOST_IFINDEX, HOST_MAC, NODE_MAC } from '../../lib/testkit/addresses.js';
import { frames } from '../../lib/testkit/packets.js';
import { median, shuffle } from './stats.js';

const HARNESS = path.join(packageRoot, 'dist', 'bpf', 'test', 'bench.bpf.o');
const HEAD = 64;
const PACKET_HOST = 0;
const TC_ACT_UNSPEC = -1;
const TC_ACT_REDIRECT = 7;
const PACKET_OTHERHOST = 3;

export interface PerPacketCase {
  program: 'fixup' | 'redirect' | 'from_guest';
  /** Measured on a pod's own instance (vmpeer_pod set: the bridge bypass, the default); else the shared program. */
  pod?: boolean;
  frame: string; // what the frame is
  rewrites: boolean; // the program changes this frame
  pktType: 'host' | 'otherhost'; // how the frame arrives
  nsPerPacket: number; // median over rounds
  baselineNs: number; // median of the pass-through baseline, measured alternately
  deltaNs: number; // median of (program - baseline) per round
  spreadNs: [number, number]; // min and max delta over rounds
  /** The same case for the `compare` object (the previous layout's build), measured in the same rounds. */
  compareDeltaNs?: number;
}

/**
 * The per-packet targets (ns over pass-through): a frame the program rewrites
 * ≤ 20, one it also sends on itself (redirect, from_guest, and fixup on a
 * pod's own instance, to the guest port) ≤ 30; a frame it passes ≤ 10. With 250 and 1000 guests in the table, every case within
 * AT_SCALE_SPREAD_NS of its two-guest figure.
 */
export function perPacketTargetNs(c: Pick<PerPacketCase, 'program' | 'rewrites' | 'pod'>): number {
  if (!c.rewrites) return 10;
  return redirects(c) ? 30 : 20;
}

/** The case sends the frame on itself (a redirect helper): `redirect`, `from_guest`, and fixup on a pod's own instance (to the guest port). */
export function redirects(c: Pick<PerPacketCase, 'program' | 'rewrites' | 'pod'>): boolean {
  return c.rewrites && (c.program !== 'fixup' || c.pod === true);
}
export const AT_SCALE_SPREAD_NS = 3;

/** The frozen build of the previous endpoint-table layout (bpf/test/v2_vmpeer.bpf.c): what this release's data path is compared with. */
export const PREVIOUS_OBJECT = path.join(packageRoot, 'dist', 'bpf', 'test', 'v2_vmpeer.bpf.o');

export interface PerPacketOptions {
  repeat: number;
  rounds: number;
  /** The object under test (default: the shipped one); for before/after comparisons. */
  object?: string;
  /** Another build measured in the same rounds, interleaved with `object` and the baseline (compareDeltaNs). */
  compare?: string;
  /**
   * Endpoints in the table besides the two measured guests (inserted
   * before them, so that the guests land where the others leave room): `random` IPv4 and IPv6 addresses, or `colliding` ones (IPs that
   * shared a home slot in layout 2's unkeyed table, 16 per slot). Default: none.
   */
  population?: { endpoints: number; kind: 'random' | 'colliding' };
}

/** The per-packet cases with the table holding `endpoints` guests (the two measured ones included). */
export interface PerPacketAt {
  endpoints: number;
  kind: 'random' | 'colliding';
  cases: PerPacketCase[];
}

/** The populations the benchmark measures besides the plain run (two guests): 250 and 1000 guests, random and colliding IPs. */
export const POPULATIONS = [250, 1000].flatMap((endpoints) => (['random', 'colliding'] as const).map((kind) => ({ endpoints, kind })));

/**
 * The cases with two guests in the table and at each of POPULATIONS, every
 * table measured in the same rounds (interleaved with one baseline), so that
 * the columns differ by the table alone, not by when they ran.
 */
export function perPacketAtScale({ repeat, rounds, object = OBJECT_PATH }: Omit<PerPacketOptions, 'population' | 'compare'>): { two: PerPacketCase[]; at: PerPacketAt[] } {
  const [two, ...at] = measure({ repeat, rounds }, [{ object }, ...POPULATIONS.map(({ endpoints, kind }) => ({ object, population: { endpoints: endpoints - 2, kind } }))]);
  return { two: two!, at: POPULATIONS.map(({ endpoints, kind }, i) => ({ endpoints, kind, cases: at[i]! })) };
}

/** `count` guest IPs for a populated table (none of them the measured guests). */
export function populationIps(count: number, kind: 'random' | 'colliding'): string[] {
  if (kind === 'random') {
    const ips = new Set<string>();
    while (ips.size < count) {
      const b = randomBytes(4);
      ips.add(ips.size % 2 ? `10.${64 + (b[0]! & 63)}.${b[1]}.${b[2]}` : `fd00:${b.readUInt16LE(0).toString(16)}::${b.readUInt16LE(2).toString(16)}`);
    }
    return [...ips];
  }
  // 16 per home slot of the old hash (as many as it could hold), over as many slots as needed
  const bySlot = new Map<number, string[]>();
  const out: string[] = [];
  for (let i = 1; out.length < count; i++) {
    const ip = `10.${64 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}`;
    const slot = unkeyedSlotOf(encodeKey(ip));
    const group = bySlot.get(slot) ?? [];
    bySlot.set(slot, group);
    if (group.length >= 16 || (group.length === 0 && bySlot.size > Math.ceil(count / 16))) continue;
    group.push(ip);
    out.push(ip);
  }
  return out;
}

/** The cases for `object`, and for `compare` (another build) in the same rounds: compareDeltaNs. */
export function perPacket({ repeat, rounds, object = OBJECT_PATH, compare, population }: PerPacketOptions): PerPacketCase[] {
  const [mine, theirs] = measure({ repeat, rounds }, [{ object, population }, ...(compare ? [{ object: compare, population }] : [])]);
  return mine!.map((c, i) => (theirs && Number.isFinite(theirs[i]!.deltaNs) ? { ...c, compareDeltaNs: theirs[i]!.deltaNs } : c));
}

interface Variant {
  object: string;
  population?: PerPacketOptions['population'];
}

/**
 * The pod whose instance the `pod` cases run (any nonzero netns inode): the
 * measured guests' endpoints belong to it and ask for the bypass on the test
 * run's device (BPF_PROG_TEST_RUN runs on the loopback device, ifindex 1).
 */
const BENCH_POD = 4026531999;
const TEST_RUN_IFINDEX = 1;

/**
 * Every case for every variant (a build and what its table holds): in each
 * round, per case, the baseline and each variant's program run back to back
 * in a random order; a variant's delta is its time minus that baseline's.
 */
function measure({ repeat, rounds }: { repeat: number; rounds: number }, variants: Variant[]): PerPacketCase[][] {
  const harness = BpfObject.open(HARNESS);
  const objects: BpfObject[] = []; // everything opened, closed at the end
  const shared: BpfObject[] = []; // each variant's object
  try {
    const podObjects: Array<BpfObject | null> = [];
    for (const v of variants) {
      const obj = BpfObject.open(v.object);
      objects.push(obj);
      shared.push(obj);
      // builds before pod instances have no constant to scope a pod's programs: their `pod` cases are not measured
      const pod = podInstance(v.object, obj);
      const scoped = pod !== null;
      if (pod) objects.push(pod);
      podObjects.push(pod);
      const table = EndpointTable.of(obj.maps);
      for (const ip of v.population ? populationIps(v.population.endpoints, v.population.kind) : []) {
        table.set({ guestIp: ip, guestMac: GUEST_MAC, gatewayMac: GATEWAY_MAC, hostIfindex: HOST_IFINDEX + 1, redirect: true });
      }
      const bypass = scoped ? { podNetns: BENCH_POD, bypass: { uplinkIfindex: TEST_RUN_IFINDEX, guestIfindex: TEST_RUN_IFINDEX } } : {};
      for (const ip of [GUEST4, GUEST6]) table.set({ guestIp: ip, guestMac: GUEST_MAC, gatewayMac: GATEWAY_MAC, hostIfindex: HOST_IFINDEX, redirect: true, ...bypass });
    }
    const bench = harness.program('bench');
    const slot = Buffer.alloc(4);
    const fd = (fdNumber: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(fdNumber);
      return b;
    };
    const time = (programFd: number, data: Buffer, pktType: number, expect?: number): number => {
      harness.map('target').update(slot, fd(programFd));
      const original = Buffer.alloc(HEAD + 8);
      data.copy(original, 0, 0, HEAD);
      original.writeUInt32LE(pktType, HEAD);
      harness.map('original').update(slot, original);
      const r = bench.testRun({ data, repeat });
      // what the case is meant to measure is what the program did: redirected, or left to the next program
      if (expect !== undefined && r.retval >>> 0 !== expect >>> 0) throw new Error(`per-packet: the program returned ${r.retval >> 0}, not ${expect}`);
      return r.durationNs;
    };

    // samples[variant][case]
    const samples = variants.map(() => CASES.map(() => ({ program: [] as number[], baseline: [] as number[], delta: [] as number[] })));
    for (let round = 0; round < rounds; round++) {
      for (const i of shuffle([...CASES.keys()])) {
        const c = CASES[i]!;
        const programOf = (v: number) => ('pod' in c ? podObjects[v]?.program(c.program) : shared[v]!.program(c.program));
        const order = shuffle([-1, ...variants.keys()].filter((v) => v < 0 || programOf(v))); // -1: the baseline
        const expect = redirects(c) ? TC_ACT_REDIRECT : TC_ACT_UNSPEC;
        const ns = new Map(order.map((v) => [v, v < 0 ? time(harness.program('pass').fd, c.data, c.pktType) : time(programOf(v)!.fd, c.data, c.pktType, round === 0 ? expect : undefined)]));
        const base = ns.get(-1)!;
        variants.forEach((_, v) => {
          const s = samples[v]![i]!;
          const t = ns.get(v) ?? NaN;
          s.program.push(t);
          s.baseline.push(base);
          s.delta.push(t - base);
        });
      }
    }
    return samples.map((perCase) =>
      CASES.map((c, i) => {
        const s = perCase[i]!;
        return {
          program: c.program,
          ...('pod' in c ? { pod: true } : {}),
          frame: c.frame,
          rewrites: c.rewrites,
          pktType: c.pktType === PACKET_HOST ? ('host' as const) : ('otherhost' as const),
          nsPerPacket: median(s.program),
          baselineNs: median(s.baseline),
          deltaNs: median(s.delta),
          spreadNs: [Math.min(...s.delta), Math.max(...s.delta)] as [number, number],
        };
      }),
    );
  } finally {
    harness.close();
    for (const o of objects) o.close();
  }
}

/** `object` loaded as BENCH_POD's own instance on `shared`'s maps, as the daemon loads a pod's; null for a build without pod instances. */
function podInstance(object: string, shared: BpfObject): BpfObject | null {
  if (!shared.programs.has('from_guest')) return null;
  try {
    return loadPodInstance(native(), object, shared.maps, BENCH_POD);
  } catch {
    return null; // no such constant, or maps of another shape
  }
}

/** What is measured: each program on frames it rewrites and frames it passes. */
const CASES = [
  { program: 'fixup', frame: 'IPv4 TCP, node MAC (re-addressed)', rewrites: true, pktType: PACKET_HOST, data: frames(NODE_MAC, CLIENT_MAC, CLIENT4, GUEST4).tcp! },
  { program: 'fixup', frame: 'IPv6 TCP, node MAC (re-addressed)', rewrites: true, pktType: PACKET_HOST, data: frames(NODE_MAC, CLIENT_MAC, CLIENT6, GUEST6).tcp! },
  { program: 'fixup', frame: 'IPv4 TCP, already addressed to the guest', rewrites: false, pktType: PACKET_OTHERHOST, data: frames(GUEST_MAC, GATEWAY_MAC, CLIENT4, GUEST4).tcp! },
  { program: 'fixup', frame: 'IPv4 TCP, unknown destination', rewrites: false, pktType: PACKET_HOST, data: frames(NODE_MAC, CLIENT_MAC, CLIENT4, '198.18.9.9').tcp! },
  { program: 'fixup', frame: 'IPv6 TCP, unknown destination', rewrites: false, pktType: PACKET_HOST, data: frames(NODE_MAC, CLIENT_MAC, CLIENT6, '2001:db8::99').tcp! },
  // the default path: the pod's own instance, with the bridge bypass
  { program: 'fixup', pod: true, frame: 'IPv4 TCP, node MAC (re-addressed, to tap0)', rewrites: true, pktType: PACKET_HOST, data: frames(NODE_MAC, CLIENT_MAC, CLIENT4, GUEST4).tcp! },
  { program: 'from_guest', pod: true, frame: 'IPv4 TCP, guest to gateway (to the host veth)', rewrites: true, pktType: PACKET_OTHERHOST, data: frames(GATEWAY_MAC, GUEST_MAC, GUEST4, CLIENT4).tcp! },
  { program: 'from_guest', pod: true, frame: 'IPv6 TCP, guest to gateway (to the host veth)', rewrites: true, pktType: PACKET_OTHERHOST, data: frames(GATEWAY_MAC, GUEST_MAC, GUEST6, CLIENT6).tcp! },
  { program: 'redirect', frame: 'IPv4 TCP to a guest (redirected)', rewrites: true, pktType: PACKET_HOST, data: frames(HOST_MAC, CLIENT_MAC, CLIENT4, GUEST4).tcp! },
  { program: 'redirect', frame: 'IPv6 TCP to a guest (redirected)', rewrites: true, pktType: PACKET_HOST, data: frames(HOST_MAC, CLIENT_MAC, CLIENT6, GUEST6).tcp! },
  { program: 'redirect', frame: 'IPv4 TCP, unknown destination', rewrites: false, pktType: PACKET_HOST, data: frames(HOST_MAC, CLIENT_MAC, CLIENT4, '198.18.9.9').tcp! },
  { program: 'redirect', frame: 'IPv6 TCP, unknown destination', rewrites: false, pktType: PACKET_HOST, data: frames(HOST_MAC, CLIENT_MAC, CLIENT6, '2001:db8::99').tcp! },
] as const;
