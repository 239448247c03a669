/**
 * The layout of the pinned state, and the migration from an older one.
 *
 * maps/layout is a one-entry array whose value is the LAYOUT_VERSION
 * (layout.ts) of the build that made the maps beside it; state without it is
 * version 1 (vmpeer 0.1, before stamps). A build opens state of its own
 * version as it is, migrates an older one, and refuses a newer or unknown one
 * naming the stamp.
 *
 * A migration runs under the node lock, in steps that each leave state the
 * next vmpeer process finishes (any process can be killed at any point):
 *
 *   1. mkdir maps_next/ (the intent: while it exists a migration is under
 *      way) and load this build's object with its maps pinned there;
 *   2. copy every endpoint (field by field, by name, through the BTF the
 *      kernel keeps for the old map: no offsets of old builds are written
 *      down anywhere), counters included, re-inserting each under the new
 *      table's geometry and its own new hash key (a rehash: the old table
 *      may have another size, another hash), and the global counters (by
 *      slot: enum vmpeer_stat is append-only), then pin maps_next/layout
 *      (the copy is complete);
 *   3. replace the program of every record in place with this build's,
 *      loaded with the new maps (swap-program.ts: BPF_LINK_UPDATE,
 *      BPF_TC_F_REPLACE): each frame runs the old program on the old maps or
 *      the new program on the new maps. A pod with the bridge bypass (a
 *      from_guest record) gets its own instances of fixup and from_guest
 *      (pod-instances.ts), the others the shared fixup. Then add what the
 *      old maps counted since the copy to the new ones (a migration resumed
 *      by another process has no copy-time figures and leaves that out);
 *   4. rename each pin of maps_next/ over maps/ (the stamp last), then
 *      remove maps_next/. The old maps, referenced by nothing any more, are
 *      freed by the kernel.
 *
 * Resumed: without maps_next/layout the copy is redone; with it and every
 * map pin still in maps_next/, the records are replaced again (a record
 * already replaced gets a copy of the same program on the same new maps);
 * with a map pin already moved, only step 4 is left.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BpfObject } from '../bpf/object.js';
import type { BpfMap } from '../bpf/map.js';
import { VmpeerError } from '../errors.js';
import { killPoint } from '../kill-point.js';
import type { BtfStruct, Native } from '../native.js';
import { EndpointTable } from './endpoint-table.js';
import { ENDPOINT, EP_LIVE, LAYOUT_VERSION } from './layout.js';
import { netnsPaths } from './netns-paths.js';
import { mismatchedPin, openPinnedMaps, PINNED_MAPS } from './pinned-maps.js';
import { STAGING_DIR } from './root.js';
import { listRecords, type AttachmentRecord } from './records.js';
import { loadPodInstance, scopeFor } from './pod-instances.js';
import { swapProgram } from './swap-program.js';

export const STAMP_MAP = 'layout';
const BPF_MAP_TYPE_ARRAY = 2;
const KEY0 = Buffer.alloc(4);

export interface Migration {
  from: number;
  to: number;
  /** Endpoints carried over (0 when a resumed migration had copied them already). */
  endpoints: number;
  /** Records whose program was replaced. */
  replaced: number;
  /** Records dropped: their hook is gone (or their netns is not visible). */
  dropped: string[];
}

/** The layout version of the maps in `dir`: its stamp, 1 for unstamped maps, null when there are none. */
export function readStamp(n: Native, dir: string): number | null {
  const pin = path.join(dir, STAMP_MAP);
  if (!fs.existsSync(pin)) return fs.existsSync(path.join(dir, PINNED_MAPS[0])) ? 1 : null;
  const fd = n.objGet(pin);
  try {
    const info = n.mapInfo(fd);
    if (info.type !== BPF_MAP_TYPE_ARRAY || info.keySize !== 4 || info.valueSize !== 4) return 0;
    return n.mapLookup(fd, KEY0, 4)?.readUInt32LE(0) ?? 0;
  } finally {
    n.closeFd(fd);
  }
}

/** Pins this build's stamp in `dir`: the map is written before it is pinned, so a stamp is never half made. */
export function pinStamp(n: Native, dir: string): void {
  const fd = n.mapCreate(BPF_MAP_TYPE_ARRAY, 4, 4, 1, 'vmpeer_layout');
  try {
    const value = Buffer.alloc(4);
    value.writeUInt32LE(LAYOUT_VERSION);
    n.mapUpdate(fd, KEY0, value);
    n.objPin(fd, path.join(dir, STAMP_MAP));
  } finally {
    n.closeFd(fd);
  }
}

/**
 * Before the object is opened on `root`: migrates older state (or finishes a
 * migration under way), refuses newer or unknown state. Null when nothing
 * was to do.
 */
export function settleLayout(n: Native, root: string, source: string | Buffer, netnsDirs?: readonly string[]): Migration | null {
  const maps = path.join(root, 'maps');
  const staging = path.join(root, STAGING_DIR);
  const have = readStamp(n, maps);
  const staged = fs.existsSync(staging);
  if (have !== null && (have < 1 || have > LAYOUT_VERSION)) {
    throw new VmpeerError(
      `the pinned map ${path.join(maps, STAMP_MAP)} says the state under ${root} has layout ${have || 'unknown'}, ` +
        `${have > LAYOUT_VERSION ? 'newer than' : 'not'} this build's layout ${LAYOUT_VERSION}: a newer vmpeer made it. ` +
        'Run that vmpeer version (or a newer one), or stop every vmpeer process on this node, detach its pods with that version and remove the state, then attach again',
    );
  }
  if (!staged) return have === null || have === LAYOUT_VERSION ? null : migrate(n, root, source, have, netnsDirs);
  if (have === LAYOUT_VERSION) {
    commit(root); // killed after the stamp moved: only maps_next/ itself is left
    return null;
  }
  return migrate(n, root, source, have ?? 1, netnsDirs);
}

function migrate(n: Native, root: string, source: string | Buffer, from: number, netnsDirs?: readonly string[]): Migration {
  const staging = path.join(root, STAGING_DIR);
  const migration: Migration = { from, to: LAYOUT_VERSION, endpoints: 0, replaced: 0, dropped: [] };
  const copied = fs.existsSync(path.join(staging, STAMP_MAP));
  if (copied && PINNED_MAPS.some((m) => !fs.existsSync(path.join(staging, m)))) {
    commit(root); // step 4 had begun: every record runs this build's program already
    return migration;
  }
  if (!copied) checkMigratable(n, root, source);
  fs.mkdirSync(staging, { recursive: true });
  const obj = BpfObject.open(source, { pinMapsIn: staging }, n);
  let copy: Copy | null = null;
  const instances = new Map<number, BpfObject>();
  try {
    if (!copied) {
      copy = copyState(n, root, obj);
      migration.endpoints = copy?.endpoints.size ?? 0;
      killPoint('migrate-copied');
      pinStamp(n, staging);
    }
    const paths = netnsPaths(netnsDirs);
    const records = listRecords(root);
    const bypassed = new Set(records.filter((r) => r.program === 'from_guest').map((r) => r.netnsInode));
    const program = (record: AttachmentRecord) => {
      const pod = scopeFor(record.program, record.netnsInode, bypassed.has(record.netnsInode));
      if (!pod) return obj.program(record.program);
      let instance = instances.get(pod);
      if (!instance) instances.set(pod, (instance = loadPodInstance(n, source, obj.maps, pod)));
      return instance.program(record.program);
    };
    for (const record of records) {
      const netns = paths.get(record.netnsInode);
      const target = { netns: record.mode === 'tcx' ? undefined : netns, ifname: record.ifname, hook: record.hook };
      const prog = program(record); // a load that fails stops the migration (resumed by the next run), it drops no record
      try {
        if (record.mode === 'clsact' && netns === undefined) throw new Error('its netns is not visible');
        swapProgram(n, record, target, prog);
        migration.replaced++;
      } catch {
        // the hook is gone: the record is stale (a filter of this build's program left without one is adopted by the next attach)
        fs.rmSync(record.pin, { force: true });
        migration.dropped.push(record.pin);
      }
      killPoint('migrate-replaced');
    }
    // nothing counts in the old maps any more: what they counted since the copy goes to the new ones
    if (copy) addSinceCopy(n, root, obj, copy);
  } finally {
    for (const instance of instances.values()) instance.close();
    obj.close();
  }
  commit(root);
  return migration;
}

/** Step 4: each pin of maps_next/ over its namesake in maps/ (rename replaces atomically), the stamp last. */
function commit(root: string): void {
  const staging = path.join(root, STAGING_DIR);
  for (const name of [...PINNED_MAPS, STAMP_MAP]) {
    const from = path.join(staging, name);
    if (!fs.existsSync(from)) continue;
    fs.renameSync(from, path.join(root, 'maps', name));
    killPoint('migrate-commit');
  }
  fs.rmdirSync(staging);
}

/** What step 2 copied, as it was then: endpoints (old slot → converted per-CPU values) and global counters (slot → per-CPU values). */
interface Copy {
  endpoints: Map<number, Buffer[]>;
  stats: Map<number, Buffer[]>;
}

/** Step 2: the old maps' contents into the object's new ones; null when there were none. */
function copyState(n: Native, root: string, obj: BpfObject): Copy | null {
  const old = openPinnedMaps(n, root);
  if (!old) return null; // nothing left to carry over
  try {
    // endpoints first: a frame counted meanwhile is then in the global counters too
    const endpoints = copyEndpoints(n, old.get('endpoints')!, obj);
    const stats = new Map<number, Buffer[]>();
    const to = obj.map('stats');
    const slots = Math.min(n.mapInfo(old.get('stats')!.fd).maxEntries, n.mapInfo(to.fd).maxEntries);
    for (let slot = 0; slot < slots; slot++) {
      const v = old.get('stats')!.lookup(u32(slot));
      if (!v) continue;
      to.update(u32(slot), v);
      stats.set(slot, v.map((x) => Buffer.from(x)));
    }
    return { endpoints, stats };
  } finally {
    for (const m of old.values()) n.closeFd(m.fd);
  }
}

/** Every live endpoint of the old table, converted, re-inserted into the new one with its counters. */
function copyEndpoints(n: Native, from: BpfMap, obj: BpfObject): Map<number, Buffer[]> {
  const convert = converter(n.mapValueStruct(from.fd)!, n.mapValueStruct(obj.map('endpoints').fd)!, from.pinPath ?? from.name);
  const table = EndpointTable.of(obj.maps);
  const copied = new Map<number, Buffer[]>();
  from.lookupAll().forEach((values, slot) => {
    const converted = values.map(convert);
    if (!(converted[0]!.readUInt32LE(ENDPOINT.fields.flags.offset) & EP_LIVE)) return; // never used, or deleted
    table.place(converted);
    copied.set(slot, converted);
  });
  return copied;
}

/**
 * Step 3's end: the counts the old programs added between the copy and
 * their replacement (the old maps, no longer written, hold the final ones),
 * added to the new maps' endpoints and global counters. The new programs
 * count already, and user space cannot add to a per-CPU value atomically:
 * each value is read and written back at once (lookup, then update), and a
 * frame counted between the two is lost to that counter.
 */
function addSinceCopy(n: Native, root: string, obj: BpfObject, copy: Copy): void {
  const old = openPinnedMaps(n, root);
  if (!old) return;
  try {
    const convert = converter(n.mapValueStruct(old.get('endpoints')!.fd)!, n.mapValueStruct(obj.map('endpoints').fd)!, 'endpoints');
    const table = EndpointTable.of(obj.maps);
    const now = old.get('endpoints')!.lookupAll();
    for (const [slot, then] of copy.endpoints) {
      const values = now[slot]!.map(convert);
      if (!values[0]!.subarray(0, ENDPOINT.fields.key.size).equals(then[0]!.subarray(0, ENDPOINT.fields.key.size))) continue;
      const deltas = values.map((v, cpu) => {
        const d = Buffer.from(v);
        for (let o = ENDPOINT.fields.fixed.offset; o < ENDPOINT.size; o += 8) d.writeBigUInt64LE(since(v.readBigUInt64LE(o), then[cpu]!.readBigUInt64LE(o)), o);
        return d;
      });
      if (deltas.some((d) => d.subarray(ENDPOINT.fields.fixed.offset).some((b) => b !== 0))) table.addCounters(deltas);
    }
    const stats = obj.map('stats');
    for (const [slot, then] of copy.stats) {
      const values = old.get('stats')!.lookup(u32(slot));
      const current = stats.lookup(u32(slot));
      if (!values || !current) continue;
      stats.update(
        u32(slot),
        current.map((c, cpu) => {
          const out = Buffer.alloc(8);
          out.writeBigUInt64LE((c.readBigUInt64LE(0) + since(values[cpu]!.readBigUInt64LE(0), then[cpu]!.readBigUInt64LE(0))) & ((1n << 64n) - 1n));
          return out;
        }),
      );
    }
  } finally {
    for (const m of old.values()) n.closeFd(m.fd);
  }
}

/**
 * Before anything is made: the old state can be read (its endpoints by
 * BTF), or an error naming the map that cannot.
 */
function checkMigratable(n: Native, root: string, source: string | Buffer): void {
  const pin = path.join(root, 'maps', PINNED_MAPS[0]);
  if (!fs.existsSync(pin)) return; // nothing to carry over
  const fd = n.objGet(pin);
  try {
    const have = n.mapValueStruct(fd);
    if (have?.members.some((m) => m.name === 'flags') && have.members.some((m) => m.name === 'key')) {
      const stats = path.join(root, 'maps', 'stats');
      if (fs.existsSync(stats)) return;
      throw new VmpeerError(`the pinned map ${stats} is missing beside ${pin}: the state cannot be migrated; run the vmpeer version that made it`);
    }
  } finally {
    n.closeFd(fd);
  }
  // not a vmpeer endpoint table (no BTF of its endpoints): name its shape against this build's
  throw mismatchedPin(n, source, root) ?? new VmpeerError(`the pinned map ${pin} cannot be migrated (no BTF of its endpoints): run the vmpeer version that made it`);
}

/** Old value → new value, field by field by name; a field the old struct lacks is zero. */
function converter(have: BtfStruct, want: BtfStruct, label: string): (v: Buffer) => Buffer {
  const fields = want.members.flatMap((m) => {
    const old = have.members.find((o) => o.name === m.name);
    if (!old) return [];
    if (old.size > m.size) throw new VmpeerError(`the pinned map ${label}: field ${m.name} would shrink from ${old.size} to ${m.size} bytes: it cannot be migrated`);
    return [{ from: old.offset, to: m.offset, size: old.size }]; // little-endian: a wider field is zero-extended
  });
  return (v) => {
    const out = Buffer.alloc(want.size);
    for (const f of fields) v.copy(out, f.to, f.from, f.from + f.size);
    return out;
  };
}

/** How much a counter grew since `then` (0 if it did not). */
function since(now: bigint, then: bigint): bigint {
  return now > then ? now - then : 0n;
}

function u32(x: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(x);
  return b;
}
