/**
 * The maps vmpeer pins under maps/: opened by their pins alone (a view of
 * the state, without loading programs), and checked against a build's maps
 * when they cannot be reused.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BpfMap } from '../bpf/map.js';
import { BpfObject } from '../bpf/object.js';
import { isNativeError, VmpeerError } from '../errors.js';
import type { Native } from '../native.js';

export const PINNED_MAPS = ['endpoints', 'stats', 'hash_key'] as const;

/** The maps state of every layout has; hash_key came with layout 3. */
const REQUIRED: ReadonlySet<string> = new Set(['endpoints', 'stats']);

/** The pinned maps under `root`, by name (hash_key absent in state of layouts 1 and 2); null when vmpeer has no state there. */
export function openPinnedMaps(n: Native, root: string): Map<string, BpfMap> | null {
  const maps = new Map<string, BpfMap>();
  try {
    for (const name of PINNED_MAPS) {
      const pin = path.join(root, 'maps', name);
      if (!REQUIRED.has(name) && !fs.existsSync(pin)) continue;
      const fd = n.objGet(pin);
      maps.set(name, new BpfMap(n, { name, fd, pinPath: pin, ...n.mapInfo(fd) }));
    }
  } catch (e) {
    for (const m of maps.values()) n.closeFd(m.fd);
    if (isNativeError(e) && e.code === 'ENOENT') return null;
    throw e;
  }
  return maps;
}

/**
 * After a failed load: the pinned map whose shape differs from this build's
 * (libbpf only says "parameter mismatch"), as an error that names it and
 * says what to do; null when every pinned map fits.
 */
export function mismatchedPin(n: Native, source: string | Buffer, root: string): VmpeerError | null {
  let fresh: BpfObject;
  try {
    fresh = BpfObject.open(source, {}, n);
  } catch {
    return null; // the object itself does not load: its own error says why
  }
  try {
    for (const name of PINNED_MAPS) {
      const ours = fresh.maps.get(name);
      const pin = path.join(root, 'maps', name);
      if (!ours || !fs.existsSync(pin)) continue;
      const want = n.mapInfo(ours.fd);
      const fd = n.objGet(pin);
      let have: ReturnType<Native['mapInfo']>;
      try {
        have = n.mapInfo(fd);
      } finally {
        n.closeFd(fd);
      }
      const shape = (m: { type: number; keySize: number; valueSize: number; maxEntries: number }) =>
        `type ${m.type}, ${m.keySize}-byte keys, ${m.valueSize}-byte values, ${m.maxEntries} entries`;
      if (have.type !== want.type || have.keySize !== want.keySize || have.valueSize !== want.valueSize || have.maxEntries !== want.maxEntries) {
        return new VmpeerError(
          `the pinned map ${pin} (${shape(have)}) does not match this build's ${name} (${shape(want)}): ` +
            'another vmpeer version made it. Run that version, or stop every vmpeer process on this node, detach its pods and remove the pin, then attach again',
        );
      }
    }
    return null;
  } finally {
    fresh.close();
  }
}

