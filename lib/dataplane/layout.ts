/**
 * The map layouts of bpf/vmpeer.h, as TypeScript sees them. A test compares
 * every offset and size here with the BTF that clang writes into the object,
 * so the two cannot drift apart unnoticed.
 */

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
  size: 48,
  fields: {
    guest_mac: { offset: 0, size: 6 },
    gateway_mac: { offset: 6, size: 6 },
    host_ifindex: { offset: 12, size: 4 },
    flags: { offset: 16, size: 4 },
    pod_netns: { offset: 20, size: 4 },
    fixed: { offset: 24, size: 8 },
    redirected: { offset: 32, size: 8 },
    passed: { offset: 40, size: 8 },
  },
} as const;

/** VMPEER_EP_* */
export const EP_REDIRECT = 1 << 0;

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
] as const;

export type StatName = (typeof STAT_NAMES)[number];

/** The C name of a stat slot: passNotIp → VMPEER_STAT_PASS_NOT_IP. */
export function statEnumName(name: StatName): string {
  return `VMPEER_STAT_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}
