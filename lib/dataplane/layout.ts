/**
 * The map layouts of bpf/vmpeer.h, as TypeScript sees them. A test compares
 * every offset and size here with the BTF that clang writes into the object,
 * so the two cannot drift apart unnoticed.
 */

/**
 * The version of the pinned state's layout (migrate.ts stamps it in
 * maps/layout). Raise it with every change to a struct or enum of
 * bpf/vmpeer.h or to a pinned map's definition; test/unit/codec.test.ts
 * remembers the layout of each version and fails until it is raised.
 * 1: vmpeer 0.1 (88-byte endpoint, 14 stats, no stamp). 2: 15 stats (passNewFlow).
 * 3: 4096 slots, 32 probes, keyed hash (the hash_key map).
 */
export const LAYOUT_VERSION = 3;

export interface Field {
  offset: number;
  size: number;
}

export const KEY = {
  struct: 'vmpeer_key',
  size: 16,
  fields: { addr: { offset: 0, size: 16 } },
} as const;

export const ENDPOINT = {
  struct: 'vmpeer_endpoint',
  size: 88,
  fields: {
    key: { offset: 0, size: 16 },
    guest_mac: { offset: 16, size: 6 },
    gateway_mac: { offset: 22, size: 6 },
    host_ifindex: { offset: 28, size: 4 },
    flags: { offset: 32, size: 4 },
    pod_netns: { offset: 36, size: 4 },
    uplink_ifindex: { offset: 40, size: 4 },
    guest_ifindex: { offset: 44, size: 4 },
    fixed: { offset: 48, size: 8 },
    redirected: { offset: 56, size: 8 },
    passed: { offset: 64, size: 8 },
    bypassed_in: { offset: 72, size: 8 },
    bypassed_out: { offset: 80, size: 8 },
  },
} as const;

/** The endpoint table's geometry (VMPEER_SLOT_BITS, VMPEER_PROBES). */
export const SLOT_BITS = 12;
export const SLOTS = 1 << SLOT_BITS;
export const PROBES = 32;

/** struct vmpeer_hash_key: four multipliers and an addend, little-endian __u64s. */
export const HASH_KEY = {
  struct: 'vmpeer_hash_key',
  size: 40,
  fields: { mul: { offset: 0, size: 32 }, add: { offset: 32, size: 8 } },
} as const;

/** VMPEER_EP_* */
export const EP_LIVE = 1 << 0;
export const EP_REDIRECT = 1 << 1;
export const EP_DELETED = 1 << 2;
export const EP_BYPASS = 1 << 3;

/** enum vmpeer_stat, in order: the slots (keys) of the stats map, each a per-CPU __u64. */
export const STAT_NAMES = [
  'fixed',
  'redirected',
  'passAddressed',
  'passUnknown',
  'passNotIp',
  'passNotUnicast',
  'passMalformed',
  'passTtl',
  'passFragment',
  'passNotHost',
  'passNoRedirect',
  'bypassedOut',
  'passNotGateway',
  'passNoBypass',
  'passNewFlow',
] as const;

export type StatName = (typeof STAT_NAMES)[number];

/** The C name of a stat slot: passNotIp → VMPEER_STAT_PASS_NOT_IP. */
export function statEnumName(name: StatName): string {
  return `VMPEER_STAT_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}
