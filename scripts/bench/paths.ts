/**
 * The end-to-end paths: what each one is, how the lab is configured for it,
 * and which counters must move for a measurement to count as taken on it.
 */
import type { EmulatorStats } from '../../lib/lab/emulator.js';

export type PathId = 'A' | 'B' | 'C' | 'D' | 'Cb' | 'Db' | 'A2' | 'A0' | 'Bf' | 'Cv' | 'Cs' | 'Cn';
export const PRIMARY: PathId[] = ['A', 'B', 'C', 'D', 'Cb', 'Db'];
export const DIAGNOSTIC: PathId[] = ['A2', 'A0', 'Bf', 'Cv', 'Cn'];

/** Extra set-up of a diagnostic path beyond emulator / vmpeer / sysctl. */
export type Extra = 'fixup-no-pkt-type' | 'fixup-in-process';

/**
 * What traffic must show for the path. Counters are per skb (a TSO
 * super-frame counts once), over the whole measurement of the path in a round.
 */
export type Expect =
  | 'emulator' // the CNI emulator peer-redirects, vmpeer untouched
  | 'kernel' // nothing redirects: the emulator is detached, vmpeer has no counters
  | 'kernel+fixup' // kernel path; fixup sees frames already addressed to the guest and passes them
  | 'emulator+fixup' // the emulator peer-redirects, fixup re-addresses each redirected frame
  | 'emulator+bypass' // as emulator+fixup, and the guest's traffic goes past the pod's bridge both ways
  | 'vmpeer-redirect' // vmpeer's redirect carries the traffic, emulator detached
  | 'vmpeer-redirect+bypass'; // as vmpeer-redirect, and the guest's traffic goes past the pod's bridge both ways

export interface PathSpec {
  id: PathId;
  role: 'primary' | 'diagnostic';
  title: string;
  description: string;
  target: 'plain' | 'vm';
  emulator: boolean;
  /** vmpeer fixup on the VM pod; null: left as it is (paths to the plain pod, which fixup never sees). */
  fixup: boolean | null;
  accelerate: boolean;
  /** The bridge bypass, `vmpeer attach`'s default: the guest's unicast IP traffic skips the VM pod's bridge (with fixup only); false: `--keep-bridge`. */
  bypass: boolean;
  /** net.bridge.bridge-nf-call-iptables in the VM pod (the kernel's default is 1). */
  bridgeNf: boolean;
  extra: Extra | null;
  expect: Expect;
}

const base = { bridgeNf: true, bypass: false, extra: null } as const;

export const PATHS: Record<PathId, PathSpec> = {
  A: {
    ...base,
    id: 'A',
    role: 'primary',
    title: 'plain pod, CNI fast path',
    description: 'plain pod behind the CNI-emulated fast path (bpf_redirect_peer into the pod): the ceiling',
    target: 'plain',
    emulator: true,
    fixup: null,
    accelerate: false,
    expect: 'emulator',
  },
  B: {
    ...base,
    id: 'B',
    role: 'primary',
    title: 'bridged VM, kernel path',
    description: "bridged VM, kernel forwarding path, no vmpeer (Calico's bpfRedirectToPeer: Disabled, or its VM opt-out)",
    target: 'vm',
    emulator: false,
    fixup: false,
    accelerate: false,
    expect: 'kernel',
  },
  C: {
    ...base,
    id: 'C',
    role: 'primary',
    title: 'bridged VM, CNI fast path + vmpeer fixup, --keep-bridge',
    description: "bridged VM behind the CNI-emulated fast path, vmpeer `fixup` on eth0-nic with the pod's bridge kept on the path (vmpeer attach --netns --keep-bridge)",
    target: 'vm',
    emulator: true,
    fixup: true,
    accelerate: false,
    expect: 'emulator+fixup',
  },
  D: {
    ...base,
    id: 'D',
    role: 'primary',
    title: 'bridged VM, vmpeer redirect (accelerate), --keep-bridge',
    description: "bridged VM, CNI emulator off, vmpeer `redirect` on the node uplink (vmpeer attach --accelerate) and `fixup`, the pod's bridge kept on the path (--keep-bridge)",
    target: 'vm',
    emulator: false,
    fixup: true,
    accelerate: true,
    expect: 'vmpeer-redirect',
  },
  Cb: {
    ...base,
    id: 'Cb',
    role: 'primary',
    title: 'bridged VM, CNI fast path + vmpeer fixup (the default: bridge bypassed)',
    description:
      "the default: C with the pod's bridge bypassed (vmpeer attach --netns): fixup sends frames for the guest straight to tap0, `from_guest` at tap0 ingress sends the guest's frames for its gateway into the host veth",
    target: 'vm',
    emulator: true,
    fixup: true,
    accelerate: false,
    bypass: true,
    expect: 'emulator+bypass',
  },
  Db: {
    ...base,
    id: 'Db',
    role: 'primary',
    title: 'bridged VM, vmpeer redirect (accelerate; the default: bridge bypassed)',
    description: "the default with accelerate mode: D with the pod's bridge bypassed (vmpeer attach --netns, and --accelerate on the node uplink)",
    target: 'vm',
    emulator: false,
    fixup: true,
    accelerate: true,
    bypass: true,
    expect: 'vmpeer-redirect+bypass',
  },
  A2: {
    ...base,
    id: 'A2',
    role: 'diagnostic',
    title: 'A again (noise floor)',
    description: 'path A measured a second time in every round, at another moment: how far two measurements of the same path differ',
    target: 'plain',
    emulator: true,
    fixup: null,
    accelerate: false,
    expect: 'emulator',
  },
  A0: {
    ...base,
    id: 'A0',
    role: 'diagnostic',
    title: 'plain pod, kernel path',
    description: 'plain pod, CNI emulator off: what the fast path buys a plain pod on this topology',
    target: 'plain',
    emulator: false,
    fixup: null,
    accelerate: false,
    expect: 'kernel',
  },
  Bf: {
    ...base,
    id: 'Bf',
    role: 'diagnostic',
    title: 'B + fixup attached',
    description: 'kernel path with vmpeer `fixup` attached: frames arrive addressed to the guest, fixup only classifies them (the extra program on its own)',
    target: 'vm',
    emulator: false,
    fixup: true,
    accelerate: false,
    expect: 'kernel+fixup',
  },
  Cv: {
    ...base,
    id: 'Cv',
    role: 'diagnostic',
    title: 'C, fixup without pkt_type',
    description: 'C with a fixup built without bpf_skb_change_type() (pkt_type left as bpf_redirect_peer set it): the pkt_type choice on its own',
    target: 'vm',
    emulator: true,
    fixup: false,
    accelerate: false,
    extra: 'fixup-no-pkt-type',
    expect: 'emulator+fixup',
  },
  Cs: {
    ...base,
    id: 'Cs',
    role: 'diagnostic',
    title: 'C, fixup loaded like Cv',
    description: "C with the shipped fixup loaded and attached by the benchmark process with vmpeer's loader, exactly as Cv's variant is (Cv/Cs isolates pkt_type from how the program was loaded)",
    target: 'vm',
    emulator: true,
    fixup: false,
    accelerate: false,
    extra: 'fixup-in-process',
    expect: 'emulator+fixup',
  },
  Cn: {
    ...base,
    id: 'Cn',
    role: 'diagnostic',
    title: 'C, bridge netfilter off',
    description: 'C with net.bridge.bridge-nf-call-iptables=0 in the VM pod: the share of br_netfilter',
    target: 'vm',
    emulator: true,
    fixup: true,
    accelerate: false,
    bridgeNf: false,
    expect: 'emulator+fixup',
  },
};

/** vmpeer's counters for the guest's endpoint (vmpeer status --json "counters"). */
export const COUNTER_NAMES = ['fixed', 'redirected', 'passed', 'bypassedIn', 'bypassedOut'] as const;
/** bypassedIn/Out: frames fixup sent straight to the guest port, from_guest straight into the host veth (bridge bypass). */
export type EndpointCounts = Record<(typeof COUNTER_NAMES)[number], number>;

export interface VmpeerCounters extends EndpointCounts {
  /** Frames by outcome, all programs (vmpeer status --json "stats"). */
  stats: Record<string, number>;
}

export interface Evidence {
  emulator: EmulatorStats;
  vmpeer: VmpeerCounters;
  /** Frames (skbs) that took the intended fast path / all frames of the measured flows the counters saw. */
  fastShare: number | null;
  verified: boolean;
  why: string;
}

const MIN_FRAMES = 100;

export function emptyCounters(): VmpeerCounters {
  return { fixed: 0, redirected: 0, passed: 0, bypassedIn: 0, bypassedOut: 0, stats: {} };
}

export function counterDelta(a: VmpeerCounters, b: VmpeerCounters): VmpeerCounters {
  const keys = new Set([...Object.keys(a.stats), ...Object.keys(b.stats)]);
  return {
    ...(Object.fromEntries(COUNTER_NAMES.map((k) => [k, b[k] - a[k]])) as EndpointCounts),
    stats: Object.fromEntries([...keys].map((k) => [k, (b.stats[k] ?? 0) - (a.stats[k] ?? 0)])),
  };
}

export function emulatorDelta(a: EmulatorStats, b: EmulatorStats): EmulatorStats {
  return {
    first: b.first - a.first,
    expired: b.expired - a.expired,
    redirected: b.redirected - a.redirected,
    optedOut: b.optedOut - a.optedOut,
    other: b.other - a.other,
  };
}

/** Why the bridge-bypass counters do not fit the path (null: they do). */
function bypassProblem(vp: VmpeerCounters, toGuest: number | null): string | null {
  if (toGuest === null) {
    const moved = vp.bypassedIn + vp.bypassedOut;
    return moved > 0 ? `${moved} frames went past the pod's bridge: the bypass is on` : null;
  }
  // every frame for the guest reaches fixup and leaves for the guest port (a few may be in flight at a snapshot)
  if (vp.bypassedIn < 0.98 * toGuest) return `fixup sent ${vp.bypassedIn} of ${toGuest} frames for the guest past the bridge`;
  if (vp.bypassedOut < MIN_FRAMES) return `from_guest sent only ${vp.bypassedOut} frames past the bridge`;
  return null;
}

/** Checks that the counters moved the way `expect` says (deltas over one measurement). */
export function verify(expect: Expect, emu: EmulatorStats, vp: VmpeerCounters): Evidence {
  const ev = (verified: boolean, why: string, fastShare: number | null): Evidence => ({ emulator: emu, vmpeer: vp, fastShare, verified, why });
  const emuMoved = emu.first + emu.redirected + emu.other + emu.optedOut > 0;
  const vmpeerActed = vp.fixed + vp.redirected > 0;
  const emuShare = emu.redirected + emu.first > 0 ? emu.redirected / (emu.redirected + emu.first) : 0;
  const bridge = (bypassed: boolean) => (bypassed ? `; past the bridge: ${vp.bypassedIn} frames to the guest, ${vp.bypassedOut} from it` : '');
  switch (expect) {
    case 'emulator':
      if (emu.redirected < MIN_FRAMES) return ev(false, `the emulator redirected only ${emu.redirected} frames`, emuShare);
      if (vmpeerActed) return ev(false, `vmpeer acted on ${vp.fixed + vp.redirected} frames`, emuShare);
      return ev(true, `emulator redirected ${emu.redirected} frames (${emu.first} first packets took the kernel path)`, emuShare);
    case 'kernel':
      if (emuMoved) return ev(false, 'the emulator saw traffic: it is attached', 0);
      if (vmpeerActed) return ev(false, `vmpeer acted on ${vp.fixed + vp.redirected} frames`, 0);
      return ev(true, 'no program redirected or rewrote a frame', 0);
    case 'kernel+fixup': {
      const addressed = vp.stats.passAddressed ?? 0;
      const problem = bypassProblem(vp, null);
      if (emuMoved) return ev(false, 'the emulator saw traffic: it is attached', 0);
      if (vmpeerActed) return ev(false, `vmpeer rewrote or redirected ${vp.fixed + vp.redirected} frames`, 0);
      if (addressed < MIN_FRAMES) return ev(false, `fixup saw only ${addressed} frames already addressed to the guest`, 0);
      if (problem) return ev(false, problem, 0);
      return ev(true, `fixup passed ${addressed} frames already addressed to the guest, rewrote none`, 0);
    }
    case 'emulator+fixup':
    case 'emulator+bypass': {
      const bypassed = expect === 'emulator+bypass';
      if (emu.redirected < MIN_FRAMES) return ev(false, `the emulator redirected only ${emu.redirected} frames`, emuShare);
      // every redirected frame reaches eth0-nic with the node's MAC and is re-addressed (a few may be in flight at a snapshot)
      if (vp.fixed < 0.98 * emu.redirected) return ev(false, `fixup re-addressed ${vp.fixed} of ${emu.redirected} redirected frames`, emuShare);
      const problem = bypassProblem(vp, bypassed ? emu.redirected : null);
      if (problem) return ev(false, problem, emuShare);
      return ev(true, `emulator redirected ${emu.redirected} frames, fixup re-addressed ${vp.fixed}${bridge(bypassed)}`, emuShare);
    }
    case 'vmpeer-redirect':
    case 'vmpeer-redirect+bypass': {
      const bypassed = expect === 'vmpeer-redirect+bypass';
      if (emuMoved) return ev(false, 'the emulator saw traffic: it is attached', null);
      if (vp.redirected < MIN_FRAMES) return ev(false, `vmpeer redirected only ${vp.redirected} frames`, null);
      const problem = bypassProblem(vp, bypassed ? vp.redirected : null);
      if (problem) return ev(false, problem, null);
      // fixup counts every frame that reaches the guest's port already addressed (bypassed, every frame it sends on):
      // the redirected ones and any the kernel forwarded
      const arrived = bypassed ? vp.bypassedIn : vp.passed;
      const share = arrived > 0 ? Math.min(1, vp.redirected / arrived) : null;
      return ev(true, `vmpeer redirect carried ${vp.redirected} frames; fixup saw ${arrived} addressed frames arrive${bridge(bypassed)}`, share);
    }
  }
}
