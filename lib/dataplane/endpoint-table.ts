/**
 * The endpoint table from user space: an open-addressing hash table in the
 * per-CPU array `endpoints` (bpf/vmpeer.h). A guest lives in one of the
 * PROBES slots from its home slot on; lookups stop at the first slot never
 * used. A removed endpoint's slot is taken by the next endpoint whose probe
 * sequence passes through it (backward shift), and is never-used again once
 * no lookup must probe past it, so churn leaves the table as short to search
 * as one filled afresh.
 *
 * The home slot is keyed (vmpeer_slot(), the node's hash_key map): a new
 * table draws its key when Dataplane opens it, or at the latest with its
 * first endpoint, always under the writers' lock. A table without a hash_key
 * map is one of layouts 1 and 2 (1024 slots, the unkeyed hash), which the
 * migration reads and the upgrade tests still run.
 *
 * User space is the only writer; Dataplane serialises writers with a lock.
 */
import { randomBytes } from 'node:crypto';
import type { BpfMap } from '../bpf/map.js';
import { VmpeerError } from '../errors.js';
import { decodeEndpoint, encodeEndpoint, encodeKey, type Endpoint, type EndpointCounters } from './codec.js';
import { EndpointRows } from './endpoint-rows.js';
import { ENDPOINT, EP_DELETED, EP_LIVE, HASH_KEY, PROBES, SLOT_BITS } from './layout.js';

const FLAGS = ENDPOINT.fields.flags.offset;
const KEY = ENDPOINT.fields.key;
const COUNTERS = ENDPOINT.fields.fixed.offset;
const M64 = (1n << 64n) - 1n;
const KEY0 = Buffer.alloc(4);
const DELETED = Buffer.alloc(ENDPOINT.size);
DELETED.writeUInt32LE(EP_DELETED, FLAGS);

/** struct vmpeer_hash_key as bytes (HASH_KEY.size of them). */
export type HashKey = Buffer;

/** vmpeer_slot() of bpf/vmpeer.h: keyed multiply-add of the key's four little-endian words, MurmurHash3's finalizer, the top `bits`. */
export function slotOf(key: Buffer, hashKey: HashKey, bits = SLOT_BITS): number {
  let h = hashKey.readBigUInt64LE(HASH_KEY.fields.add.offset);
  for (let i = 0; i < 4; i++) h += hashKey.readBigUInt64LE(8 * i) * BigInt(key.readUInt32LE(4 * i));
  h &= M64;
  h ^= h >> 33n;
  h = (h * 0xff51afd7ed558ccdn) & M64;
  h ^= h >> 33n;
  h = (h * 0xc4ceb9fe1a85ec53n) & M64;
  h ^= h >> 33n;
  return Number(h >> BigInt(64 - bits));
}

/** The home slot in tables of layouts 1 and 2 (1024 slots): Fibonacci hashing of the xor of the key's four words. */
export function unkeyedSlotOf(key: Buffer): number {
  const folded = key.readUInt32LE(0) ^ key.readUInt32LE(4) ^ key.readUInt32LE(8) ^ key.readUInt32LE(12);
  return Math.imul(folded, 0x9e3779b1) >>> (32 - 10);
}

/** A fresh key: every multiplier and the addend uniformly random. */
export function randomHashKey(): HashKey {
  return randomBytes(HASH_KEY.size);
}

function slotKey(slot: number): Buffer {
  const k = Buffer.alloc(4);
  k.writeUInt32LE(slot);
  return k;
}

export type WithCounters = Endpoint & { counters: EndpointCounters };

/** Every slot a guest IP can live in is taken (by up to PROBES endpoints whose home slots are near its own). */
export class EndpointTableFullError extends VmpeerError {
  override name = 'EndpointTableFullError';
}

export class EndpointTable {
  private readonly slots: number;
  private readonly probeCount: number;
  private hashKey: HashKey | null = null;

  /** The table of an object or of pinned state: its `endpoints` and (from layout 3) `hash_key` maps. */
  static of(maps: ReadonlyMap<string, BpfMap>): EndpointTable {
    const endpoints = maps.get('endpoints');
    if (!endpoints) throw new VmpeerError(`the object has no map 'endpoints'`);
    return new EndpointTable(endpoints, maps.get('hash_key') ?? null);
  }

  private constructor(
    private readonly map: BpfMap,
    private readonly keyMap: BpfMap | null,
  ) {
    this.slots = keyMap ? 1 << SLOT_BITS : 1 << 10;
    this.probeCount = keyMap ? PROBES : 16;
  }

  /** The node's hash key; a zero key (a new table) is replaced by a random one when `draw`. */
  private key(draw: boolean): HashKey | null {
    if (!this.keyMap) return null;
    if (this.hashKey) return this.hashKey;
    const have = this.keyMap.lookup(KEY0)![0]!;
    if (have.every((b) => b === 0)) {
      if (!draw) return have; // nothing was ever written with it: every lookup misses, as the programs' do
      const fresh = randomHashKey();
      this.keyMap.update(KEY0, fresh);
      return (this.hashKey = fresh);
    }
    return (this.hashKey = Buffer.from(have));
  }

  /** Draws the hash key of a new table (one that has none yet); an existing key stays. */
  seed(): void {
    this.key(true);
  }

  /** The home slot of a key. */
  home(key: Buffer, draw = false): number {
    const hk = this.key(draw);
    return hk ? slotOf(key, hk) : unkeyedSlotOf(key);
  }

  private probes(key: Buffer, draw = false): number[] {
    const home = this.home(key, draw);
    return Array.from({ length: this.probeCount }, (_, i) => (home + i) & (this.slots - 1));
  }

  private read(slot: number): Buffer[] {
    return this.map.lookup(slotKey(slot))!;
  }

  private flags(value: Buffer[]): number {
    return value[0]!.readUInt32LE(FLAGS);
  }

  /** The slot holding `key`, with its per-CPU values, or null. */
  private locate(key: Buffer, draw = false): { slot: number; value: Buffer[] } | null {
    for (const slot of this.probes(key, draw)) {
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
    const found = this.locate(key, true);
    if (found) {
      if (found.value.every((v) => v.subarray(0, COUNTERS).equals(fresh.subarray(0, COUNTERS)))) return 'unchanged';
      this.map.update(slotKey(found.slot), found.value.map((v) => Buffer.concat([fresh.subarray(0, COUNTERS), v.subarray(COUNTERS)])));
      return 'updated';
    }
    this.map.update(slotKey(this.freeSlot(key, ep.guestIp)), fresh);
    return 'added';
  }

  /**
   * Writes an endpoint's per-CPU values (addressing and counters) as they
   * are, over the one with its key or into a free slot: the migration's
   * copy from an older table.
   */
  place(values: Buffer[]): void {
    const key = Buffer.from(values[0]!.subarray(KEY.offset, KEY.offset + KEY.size));
    const slot = this.locate(key, true)?.slot ?? this.freeSlot(key, null);
    this.map.update(slotKey(slot), values);
  }

  /**
   * Adds per-CPU counter deltas (values laid out as endpoints, only their
   * counters read) to the endpoint with their key; false when it is gone.
   * A frame counted between the read and the write here is lost.
   */
  addCounters(deltas: Buffer[]): boolean {
    const found = this.locate(Buffer.from(deltas[0]!.subarray(KEY.offset, KEY.offset + KEY.size)));
    if (!found) return false;
    const sum = found.value.map((v, cpu) => {
      const out = Buffer.from(v);
      for (let o = COUNTERS; o < ENDPOINT.size; o += 8) out.writeBigUInt64LE((v.readBigUInt64LE(o) + deltas[cpu]!.readBigUInt64LE(o)) & M64, o);
      return out;
    });
    this.map.update(slotKey(found.slot), sum);
    return true;
  }

  private freeSlot(key: Buffer, label: string | null): number {
    const free = this.probes(key, true).find((slot) => !(this.flags(this.read(slot)) & EP_LIVE));
    if (free === undefined) {
      const ip = label ?? `the key ${key.toString('hex')}`;
      throw new EndpointTableFullError(`the endpoint table has no free slot for ${ip} (all ${this.probeCount} of its slots are taken)`);
    }
    return free;
  }

  /** Removes an endpoint. Returns false when it was not there. */
  delete(guestIp: string): boolean {
    const found = this.locate(encodeKey(guestIp));
    if (!found) return false;
    this.map.update(slotKey(found.slot), DELETED);
    this.reclaim(this.shift(found.slot));
    return true;
  }

  /**
   * Backward-shift deletion (Knuth's Algorithm R, vol. 3 §6.4) with markers:
   * each endpoint after the hole whose probe sequence passes through it
   * moves into it, and its old slot becomes the hole. A move writes the copy
   * first and marks the old slot DELETED second, so a lookup finds the
   * endpoint at one place or the other; only one stalled between two slot
   * reads for longer than that pair of writes (microseconds) can miss it
   * once, and its frame then takes the kernel path (the programs pass what
   * they do not find). Counters move with the endpoint; a frame counted at
   * the old slot between its read and its marking is lost. Returns the last
   * hole.
   */
  private shift(hole: number): number {
    const mask = this.slots - 1;
    for (let j = (hole + 1) & mask; ((j - hole) & mask) < this.probeCount; j = (j + 1) & mask) {
      const v = this.read(j);
      const flags = this.flags(v);
      if (flags === 0) break; // nothing after a never-used slot probes back past it
      if (!(flags & EP_LIVE)) continue;
      const home = this.home(Buffer.from(v[0]!.subarray(KEY.offset, KEY.offset + KEY.size)));
      if (((j - home) & mask) < ((j - hole) & mask)) continue; // its probe sequence starts after the hole
      this.map.update(slotKey(hole), v);
      this.map.update(slotKey(j), DELETED);
      hole = j;
    }
    return hole;
  }

  /**
   * Turns DELETED markers back into never-used slots where no lookup needs
   * to probe past them: a marker is needed only while a live endpoint sits
   * after it and has its home at or before it (linear probing keeps every
   * slot between a key's home and its place in use). The one at `slot`
   * can only have kept markers in the PROBES slots up to it needed, so
   * those are the ones looked at.
   */
  private reclaim(slot: number): void {
    const n = this.probeCount;
    const mask = this.slots - 1;
    const window = new Map<number, Buffer[]>();
    const at = (s: number) => {
      s &= mask;
      if (!window.has(s)) window.set(s, this.read(s));
      return window.get(s)!;
    };
    // a live endpoint at j with home h keeps every marker in [h, j) needed
    const needed = new Set<number>();
    for (let d = 1; d < n; d++) {
      const j = (slot + d) & mask;
      const v = at(j);
      const flags = this.flags(v);
      if (flags === 0) break;
      if (!(flags & EP_LIVE)) continue;
      const h = this.home(Buffer.from(v[0]!.subarray(KEY.offset, KEY.offset + KEY.size)));
      for (let s = h; s !== j; s = (s + 1) & mask) needed.add(s);
    }
    for (let d = 0; d < n; d++) {
      const s = (slot - d + this.slots) & mask;
      const flags = this.flags(at(s));
      if (flags === 0) break; // nothing before a never-used slot probes past `slot`
      if (flags & EP_LIVE) {
        const v = at(s);
        const h = this.home(Buffer.from(v[0]!.subarray(KEY.offset, KEY.offset + KEY.size)));
        for (let x = h; x !== s; x = (x + 1) & mask) needed.add(x);
        continue;
      }
      if (!needed.has(s)) this.map.update(slotKey(s), Buffer.alloc(ENDPOINT.size));
    }
  }

  /** Every endpoint, with its counters: the whole table in one batch read. */
  all(): WithCounters[] {
    // the flags of each slot read off the batch itself: 4096 slots, most of them empty
    return this.map.lookupWhere((raw, at) => (raw.readUInt32LE(at + FLAGS) & EP_LIVE) !== 0).map((value) => decodeEndpoint(value));
  }

  /** The live endpoints of one batch read, their fields read in place (what a scrape needs: endpoint-rows.ts). */
  rows(): EndpointRows {
    return new EndpointRows(this.map.batch());
  }
}
