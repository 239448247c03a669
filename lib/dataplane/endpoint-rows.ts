/**
 * The live endpoints of one batch read of the endpoint table, their fields
 * read in place: no object per guest. A /metrics scrape of a node with 1000
 * guests reads them all every time; decoding each into objects (Buffers per
 * CPU, BigInt sums, strings) made a scrape's garbage, and with the daemon's
 * small young generation (deploy/Dockerfile) what a scrape kept alive got
 * promoted and paid for in major GCs. decodeEndpoint (codec.ts) is the
 * reference these accessors agree with (test/unit/endpoint-metrics.test.ts).
 */
import type { MapBatch } from '../bpf/map.js';
import { COUNTER_FIELDS, type EndpointCounters } from './codec.js';
import { ENDPOINT, EP_LIVE, EP_REDIRECT } from './layout.js';
import { ipFromBytes } from '../validate.js';

const F = ENDPOINT.fields;
const TWO32 = 2 ** 32;

/** Each counter of EndpointCounters and its offset in struct vmpeer_endpoint (codec.ts names the fields). */
export const COUNTER_OFFSETS = Object.fromEntries(COUNTER_FIELDS.map(([name, field]) => [name, F[field].offset])) as Readonly<Record<keyof EndpointCounters, number>>;

export class EndpointRows {
  /** Offsets in the batch of the live slots (their CPU 0 value). */
  private readonly at: Uint32Array;
  readonly length: number;

  constructor(private readonly b: MapBatch) {
    const at = new Uint32Array(b.entries);
    let n = 0;
    for (let i = 0, off = 0; i < b.entries; i++, off += b.entryBytes) {
      if ((b.raw.readUInt32LE(off + F.flags.offset) & EP_LIVE) !== 0) at[n++] = off;
    }
    this.at = at.subarray(0, n);
    this.length = n;
  }

  /** The guest IP's text (as decodeKey gives it); IPv4 is read in place. */
  guestIp(i: number): string {
    const raw = this.b.raw;
    const k = this.at[i]! + F.key.offset;
    if (raw.readUInt32LE(k) === 0 && raw.readUInt32LE(k + 4) === 0 && raw.readUInt32LE(k + 8) === 0xffff0000) {
      return `${raw[k + 12]}.${raw[k + 13]}.${raw[k + 14]}.${raw[k + 15]}`;
    }
    return ipFromBytes(raw.subarray(k, k + F.key.size));
  }

  podNetns(i: number): number {
    return this.b.raw.readUInt32LE(this.at[i]! + F.pod_netns.offset);
  }

  redirect(i: number): boolean {
    return (this.b.raw.readUInt32LE(this.at[i]! + F.flags.offset) & EP_REDIRECT) !== 0;
  }

  /**
   * A counter summed over CPUs: a number while the sum is exact as one (below
   * 2^53, ~28 years at 10 Mpps), a bigint past it. Either prints the same.
   */
  counter(i: number, offset: number): number | bigint {
    const { raw, stride, cpus } = this.b;
    let sum = 0;
    // exact while below 2^53; past it the rounded sum is 2^53 or more, so never mistaken for a safe one
    for (let c = 0, off = this.at[i]! + offset; c < cpus; c++, off += stride) sum += raw.readUInt32LE(off + 4) * TWO32 + raw.readUInt32LE(off);
    if (Number.isSafeInteger(sum)) return sum;
    let big = 0n;
    for (let c = 0, off = this.at[i]! + offset; c < cpus; c++, off += stride) big += raw.readBigUInt64LE(off);
    return big;
  }
}
