/**
 * The endpoint table from user space: an open-addressing hash table in the
 * per-CPU array `endpoints` (bpf/vmpeer.h). A guest lives in one of the
 * PROBES slots from slotOf(its key) on; lookups stop at the first slot never
 * used, so a removed endpoint leaves a DELETED marker until no probe sequence
 * can pass through it any more.
 *
 * User space is the only writer; Dataplane serialises writers with a lock.
 */
import type { BpfMap } from '../bpf/map.js';
import { VmpeerError } from '../errors.js';
import { decodeEndpoint, encodeEndpoint, encodeKey, type Endpoint, type EndpointCounters } from './codec.js';
import { ENDPOINT, EP_DELETED, EP_LIVE, PROBES, SLOT_BITS, SLOTS } from './layout.js';

const FLAGS = ENDPOINT.fields.flags.offset;
const KEY = ENDPOINT.fields.key;
const COUNTERS = ENDPOINT.fields.fixed.offset;

/** vmpeer_slot() of bpf/vmpeer.h: Fibonacci hashing of the key's four little-endian words. */
export function slotOf(key: Buffer): number {
  const folded = key.readUInt32LE(0) ^ key.readUInt32LE(4) ^ key.readUInt32LE(8) ^ key.readUInt32LE(12);
  return Math.imul(folded, 0x9e3779b1) >>> (32 - SLOT_BITS);
}

function probes(key: Buffer): number[] {
  const home = slotOf(key);
  return Array.from({ length: PROBES }, (_, i) => (home + i) & (SLOTS - 1));
}

function slotKey(slot: number): Buffer {
  const k = Buffer.alloc(4);
  k.writeUInt32LE(slot);
  return k;
}

export type WithCounters = Endpoint & { counters: EndpointCounters };

/** Every slot a guest IP can live in is taken (by up to PROBES endpoints whose IPs share its home slot). */
export class EndpointTableFullError extends VmpeerError {
  override name = 'EndpointTableFullError';
}

export class EndpointTable {
  constructor(private readonly map: BpfMap) {}

  private read(slot: number): Buffer[] {
    return this.map.lookup(slotKey(slot))!;
  }

  private flags(value: Buffer[]): number {
    return value[0]!.readUInt32LE(FLAGS);
  }

  /** The slot holding `guestIp`, with its per-CPU values, or null. */
  private locate(key: Buffer): { slot: number; value: Buffer[] } | null {
    for (const slot of probes(key)) {
      const value = this.read(slot);
      const flags = this.flags(value);
      if (flags === 0) return null;
      if (flags & EP_LIVE && value[0]!.subarray(KEY.offset, KEY.offset + KEY.size).equals(key)) return { slot, value };
    }
    return null;
  }

  get(guestIp: string): WithCounters | null {
    const found = this.locate(encodeKey(guestIp));
    return found ? decodeEndpoint(found.value) : null;
  }

  /** Adds or updates an endpoint; an update keeps its counters. */
  set(ep: Endpoint): 'added' | 'updated' | 'unchanged' {
    const key = encodeKey(ep.guestIp);
    const fresh = encodeEndpoint(ep);
    const found = this.locate(key);
    if (found) {
      if (found.value.every((v) => v.subarray(0, COUNTERS).equals(fresh.subarray(0, COUNTERS)))) return 'unchanged';
      this.map.update(slotKey(found.slot), found.value.map((v) => Buffer.concat([fresh.subarray(0, COUNTERS), v.subarray(COUNTERS)])));
      return 'updated';
    }
    const free = probes(key).find((slot) => !(this.flags(this.read(slot)) & EP_LIVE));
    if (free === undefined) {
      throw new EndpointTableFullError(`the endpoint table has no free slot for ${ep.guestIp} (all ${PROBES} of its slots are taken)`);
    }
    this.map.update(slotKey(free), fresh);
    return 'added';
  }

  /** Removes an endpoint. Returns false when it was not there. */
  delete(guestIp: string): boolean {
    const found = this.locate(encodeKey(guestIp));
    if (!found) return false;
    const deleted = Buffer.alloc(ENDPOINT.size);
    deleted.writeUInt32LE(EP_DELETED, FLAGS);
    this.map.update(slotKey(found.slot), deleted);
    this.reclaim(found.slot);
    return true;
  }

  /**
   * Turns DELETED markers back into never-used slots where no lookup can
   * need to probe past them: a marker followed by a never-used slot is
   * passed by no probe sequence (linear probing keeps every slot between a
   * key's home and its place in use), and neither, then, is one before it.
   */
  private reclaim(slot: number): void {
    if (this.flags(this.read((slot + 1) & (SLOTS - 1))) !== 0) return;
    for (let s = slot; this.flags(this.read(s)) === EP_DELETED; s = (s - 1 + SLOTS) & (SLOTS - 1)) {
      this.map.update(slotKey(s), Buffer.alloc(ENDPOINT.size));
    }
  }

  /** Every endpoint, with its counters: the whole table in one batch read. */
  all(): WithCounters[] {
    return this.map
      .lookupAll()
      .filter((value) => this.flags(value) & EP_LIVE)
      .map((value) => decodeEndpoint(value));
  }
}
