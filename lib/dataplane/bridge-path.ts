/**
 * Whether a VM port's guest traffic takes the bridge bypass (the default) or
 * the pod's bridge, and why: one rule for `vmpeer attach`, the daemon and
 * `vmpeer status`. The bypass is on unless the operator keeps the bridge
 * (KEEP_BRIDGE_FLAG), or the pod's bridge makes it unsafe: then the bridge
 * stays on the path for that pod, and the reason is logged and shown.
 */

/** The opt-out: `vmpeer attach --keep-bridge`, `vmpeer daemon --keep-bridge` (VMPEER_KEEP_BRIDGE). */
export const KEEP_BRIDGE_FLAG = 'keep-bridge';
/** The flag of versions where the bypass was opt-in: accepted, it asks for the default. */
export const BYPASS_BRIDGE_FLAG = 'bypass-bridge';

/** Both flags at once (exit 2). */
export const BRIDGE_FLAGS_CONTRADICT = `--${KEEP_BRIDGE_FLAG} and --${BYPASS_BRIDGE_FLAG} contradict each other: the bridge bypass is the default, --${KEEP_BRIDGE_FLAG} alone keeps the bridge`;

/** What the operator asked for: the bypass where it is safe (default), or the bridge everywhere. */
export type BridgeChoice = 'bypass' | 'keep';

export interface BridgePorts {
  bridge: string;
  guestPorts: string[];
  /** The guest port when the bridge has exactly one. */
  guestPort: { ifname: string; ifindex: number } | null;
}

/** Why the bypass cannot be taken for this port, or null when it can. */
export function bypassUnsafeBecause(port: BridgePorts): string | null {
  // from_guest and fixup know one guest port per endpoint: with several,
  // frames between the guests and the bridge's flooding are the bridge's job
  if (!port.guestPort) return `${port.bridge} has ${port.guestPorts.length} guest ports (${port.guestPorts.join(', ')})`;
  return null;
}

/**
 * Why a pod covered by an older vmpeer keeps its bridge: its guest port has
 * no tc hook, and making one with the guest's traffic running drops frames
 * (guest-hooks.ts). A pod covered from now on gets the hook with its uplink's.
 */
export function guestHookMissingBecause(guestPort: string): string {
  return `its guest port ${guestPort} has no clsact qdisc (the pod was covered by an older vmpeer), and adding one while the guest's traffic runs drops the frames in flight to it; the bridge stays on this pod's path until the pod is recreated (or with --mode tcx)`;
}

/** Why the bridge stays on the path of this port's guest traffic, or null when it is bypassed. */
export function bridgeKeptBecause(choice: BridgeChoice, port: BridgePorts): string | null {
  if (choice === 'keep') return `--${KEEP_BRIDGE_FLAG}`;
  return bypassUnsafeBecause(port);
}
