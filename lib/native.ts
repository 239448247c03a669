/**
 * The native surface: everything the N-API addon (native/) exports, typed in
 * one place. Nothing else in lib/ imports the addon directly, so unit tests of
 * code without a kernel side can hand in a fake that satisfies `Native`.
 *
 * Every function throws a `NativeError` (below) on failure; the *Async ones
 * reject with it instead (bad arguments too), with the same fields as their
 * synchronous twins.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { AddonLoadError, explainLoadFailure } from './support.js';

export type Hook = 'ingress' | 'egress';
export type AttachMode = 'tcx' | 'clsact';

/** Error thrown by the addon: errno name, operation and the object it concerned. */
export interface NativeError extends Error {
  code: string; // errno name, e.g. 'ENOENT', or 'EINVAL' for bad arguments
  errno: number; // positive errno value
  op: string; // e.g. 'bpf_link_create', 'setns', 'bpf_object__load'
  object: string; // e.g. 'eth0-nic (ingress) in /run/netns/pod1'
  log?: string; // libbpf / verifier output collected during the call, if any
}

export interface NativeProgram {
  name: string;
  fd: number;
  id: number;
  insnCount: number; // xlated instructions, from bpf_obj_get_info_by_fd
  verifiedInsns?: number; // instructions the verifier processed (only with OpenOptions.verifierStats)
}

export interface NativeMap {
  name: string;
  fd: number;
  id: number;
  type: number; // BPF_MAP_TYPE_*
  keySize: number;
  valueSize: number; // per CPU for per-CPU maps
  maxEntries: number;
  pinPath: string | null;
}

export interface BtfMember {
  name: string;
  offset: number; // bytes
  size: number; // bytes
}

export interface BtfStruct {
  name: string;
  size: number;
  members: BtfMember[];
}

export interface OpenOptions {
  /** Reuse maps pinned in this bpffs directory (as <dir>/<map name>), pin the ones not there yet. */
  pinMapsIn?: string;
  /** Also report what the verifier processed per program (verifiedInsns; from its statistics log before Linux 5.16). */
  verifierStats?: boolean;
  /** Load only these programs (default: all). */
  programs?: readonly string[];
  /** `const volatile` 32-bit globals of the object's .rodata, by name, set before load. */
  constants?: Readonly<Record<string, number>>;
  /** Use these maps (by name: an fd) instead of making new ones; libbpf checks that their shapes fit. */
  reuseMaps?: Readonly<Record<string, number>>;
}

/** A loaded BPF object. Its program and map fds stay valid until close(). */
export interface NativeObject {
  readonly programs: NativeProgram[];
  readonly maps: NativeMap[];
  /** Layout of a struct from the object's BTF; null when the object has no such struct. */
  btfStruct(name: string): BtfStruct | null;
  close(): void;
}

export interface TestRunRequest {
  data: Buffer;
  repeat?: number; // default 1
  ctx?: Buffer; // struct __sk_buff in
  dataSizeOut?: number; // default: data.length + 256
}

export interface TestRunResult {
  retval: number; // as a signed 32-bit value (TC_ACT_UNSPEC is -1)
  data: Buffer;
  durationNs: number; // mean per run, as the kernel reports it
  ctx?: Buffer;
}

export interface HookTarget {
  netns?: string; // path of a netns file; absent: the caller's netns
  ifname: string;
  hook: Hook;
}

export interface AttachRequest extends HookTarget {
  progFd: number;
  mode: AttachMode;
  /** tcx: pin the link here so it outlives the process. Without it the link lives as long as the returned fd. */
  pinPath?: string;
  /** tcx: run before every other program at the hook (BPF_F_BEFORE) instead of after them. */
  first?: boolean;
  /** clsact: the filter's handle and priority (vmpeer's own). */
  handle?: number;
  priority?: number;
}

export interface Attachment {
  mode: AttachMode;
  ifindex: number;
  progId: number;
  linkId?: number; // tcx
  linkFd?: number; // tcx, when not pinned (caller closes it to detach)
  handle?: number; // clsact
  priority?: number; // clsact
}

export interface DetachRequest extends HookTarget {
  mode: AttachMode;
  pinPath?: string; // tcx: the link's pin
  handle?: number; // clsact
  priority?: number; // clsact
  /** Only detach if the program found there has this id (guards against foreign filters). */
  progId?: number;
}

export interface ClsactQdiscRequest {
  netns?: string;
  ifname: string;
  create?: boolean;
}

export interface ClsactQdiscState {
  present: boolean;
  created: boolean;
}

export interface HookEntry {
  mode: AttachMode;
  progId: number;
  progName: string;
  linkId?: number; // tcx links (0 or absent for legacy tcx attachments)
  handle?: number; // clsact
  priority?: number; // clsact
}

export interface KernelFeatures {
  tcx: boolean; // BPF_TCX_INGRESS / EGRESS links (Linux >= 6.6)
  redirectPeer: boolean; // bpf_redirect_peer helper (Linux >= 5.10)
}

/** What netlinkDump reads: links, addresses, neighbours (IPv4 and IPv6), bridge FDB entries, IPv4 routes. */
export type NetlinkDumpKind = 'links' | 'addresses' | 'neighbours' | 'fdb' | 'routes';

/** An RTM_NEWLINK message, as the kernel sends it (numbers are the uapi's). */
export interface RtLink {
  ifindex: number;
  ifname: string;
  address?: string; // IFLA_ADDRESS, "aa:bb:…"
  flags: number; // IFF_*
  operstate: number; // IF_OPER_*
  master?: number; // ifindex
  link?: number; // IFLA_LINK: a veth's peer ifindex
  linkNetnsid?: number; // present when the peer is in another netns
  kind?: string; // IFLA_INFO_KIND
  slaveKind?: string; // IFLA_INFO_SLAVE_KIND
  learning?: boolean; // bridge port
  tunType?: number; // tun: 1 tun, 2 tap
}

export interface RtAddress {
  ifindex: number;
  family: number; // AF_INET 2, AF_INET6 10
  prefixlen: number;
  scope: number; // RT_SCOPE_*
  local: string;
}

/** A neighbour (family 2 / 10) or a bridge FDB entry (family 7, no dst). */
export interface RtNeighbour {
  ifindex: number;
  family: number;
  dst?: string;
  lladdr?: string;
  state: number; // NUD_*
  flags: number; // NTF_*
  master?: number; // NDA_MASTER: the bridge of an FDB entry
}

export interface RtRoute {
  family: number;
  dstLen: number;
  dst?: string; // absent for a default route
  table: number;
  scope: number;
  type: number; // RTN_*
  flags: number; // RTM_F_*
  oif?: number;
  priority?: number; // the metric; absent when 0
}

export interface NetlinkDump {
  links?: RtLink[];
  addresses?: RtAddress[];
  neighbours?: RtNeighbour[];
  fdb?: RtNeighbour[];
  routes?: RtRoute[];
}

/** A link, neighbour or bridge FDB notification; ifnames are resolved in the watched netns. */
export type NetlinkEvent =
  | { kind: 'link'; deleted: boolean; ifindex: number; ifname: string }
  | { kind: 'neigh'; deleted: boolean; ip: string; dev: string; mac?: string }
  | { kind: 'fdb'; deleted: boolean; dev: string; mac?: string }
  /** The node's own netns only: a main-table IPv4 route added, changed or removed. */
  | { kind: 'route'; deleted: boolean; dst: string; dstLen: number; ifindex: number; dev: string }
  /** Pods only: a tc filter, qdisc or filter chain removed (additions are not reported). */
  | { kind: 'tc'; deleted: true; what: 'filter' | 'qdisc' | 'chain'; ifindex: number; dev: string };

export interface NetlinkBatch {
  events: NetlinkEvent[];
  /** The kernel dropped notifications (receive buffer full): state may have changed unseen. */
  lost: boolean;
  /** The subscription ended by itself (its socket failed); no batch follows. */
  ended?: string;
}

export interface Native {
  openObject(source: string | Buffer, options?: OpenOptions): NativeObject;

  possibleCpus(): number;
  mapLookup(mapFd: number, key: Buffer, valueSize: number): Buffer | null;
  mapUpdate(mapFd: number, key: Buffer, value: Buffer, flags?: number): void;
  mapDelete(mapFd: number, key: Buffer): boolean; // false when the key was absent
  mapKeys(mapFd: number, keySize: number): Buffer[];
  /** The map's value struct, from the BTF the kernel keeps for the map; null without BTF or when the value is no struct. */
  mapValueStruct(mapFd: number): BtfStruct | null;
  /**
   * The `const volatile` globals of a loaded program's .rodata map (OpenOptions.constants),
   * from the BTF the kernel keeps for it; null when the program has none.
   */
  progConstants(progFd: number): Record<string, number> | null;
  /** A new map (without BTF); its fd. */
  mapCreate(type: number, keySize: number, valueSize: number, maxEntries: number, name: string): number;
  /** Every slot of an array map (BPF_MAP_LOOKUP_BATCH): each slot's value (all CPUs), slot 0 first, in one buffer. */
  mapLookupAll(mapFd: number): Buffer;

  objPin(fd: number, path: string): void;
  objGet(path: string): number; // new fd
  closeFd(fd: number): void;
  progIdOf(fd: number): number;
  /**
   * Takes a flock() on a directory (exclusive unless `shared`), waiting for it
   * unless `wait` is false (then -1 when another holds it); closeFd() releases it.
   */
  lockDir(path: string, options?: { shared?: boolean; wait?: boolean }): number;
  /** The identity and shape of a map by fd (a pinned one, from objGet()). */
  mapInfo(fd: number): Omit<NativeMap, 'name' | 'fd' | 'pinPath'>;
  /** A new fd for a loaded program by its id. */
  progFdById(id: number): number;

  testRun(progFd: number, request: TestRunRequest): TestRunResult;

  attach(request: AttachRequest): Attachment;
  /**
   * attach() off the JS thread: the work runs on its own native thread (which
   * enters the netns), so many attachments can wait in the kernel at once.
   */
  attachAsync(request: AttachRequest): Promise<Attachment>;
  /** Returns false when nothing (of vmpeer's) was attached there. */
  detach(request: DetachRequest): boolean;
  /**
   * Swaps the program of vmpeer's attachment in place, atomically: a tcx link
   * by its pin (BPF_LINK_UPDATE), a clsact filter at its handle and priority
   * (BPF_TC_F_REPLACE). Only when it still runs `oldProgId`. Returns the new program's id.
   */
  replace(request: HookTarget & { mode: AttachMode; progFd: number; oldProgId: number; pinPath?: string; handle?: number; priority?: number }): number;
  detachAsync(request: DetachRequest): Promise<boolean>;
  /**
   * Whether an interface has a clsact (or ingress) qdisc, its tc hooks; with
   * `create`, makes a clsact qdisc when missing (`created`). Making one on an
   * interface that is up drops the frames sent to it meanwhile (native/tc.h).
   */
  clsactQdisc(request: ClsactQdiscRequest): ClsactQdiscState;
  /** clsactQdisc() off the JS thread (its own native thread enters the netns). */
  clsactQdiscAsync(request: ClsactQdiscRequest): Promise<ClsactQdiscState>;
  listHook(target: HookTarget): HookEntry[];
  /** ifindex of an interface inside a netns (0 when absent). */
  ifindex(netns: string | undefined, ifname: string): number;

  kernelFeatures(): KernelFeatures;

  /**
   * The cookie of the netns of an open netns fd (absent: the caller's netns), read
   * off the JS thread; null where the kernel has no SO_NETNS_COOKIE (before 5.14).
   */
  netnsCookie(netnsFd: number | undefined): Promise<bigint | null>;
  /** Reads a netns (absent: the caller's) with rtnetlink dumps, off the JS thread. */
  netlinkDump(netns: string | undefined, kinds: NetlinkDumpKind[]): Promise<NetlinkDump>;
  /**
   * Subscribes to the link, neighbour and FDB notifications of a netns (absent: the
   * caller's); the netns is entered, the socket made and its link dump read off the
   * JS thread, and the promise resolves with the subscription's id (no batch comes
   * before it does; events since the subscription was made wait). The subscription's socket keeps the netns alive until
   * unwatchNetlink(). Does not keep the event loop alive once subscribed.
   */
  watchNetlink(netns: string | undefined, onBatch: (batch: NetlinkBatch) => void): Promise<number>;
  /** Ends a subscription (its socket is closed when this returns); false when it had already ended. */
  unwatchNetlink(id: number): boolean;
}

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

let loaded: Native | undefined;

/** The addon: build/Release (a local build) or prebuilds/ (an installed package). */
export function native(): Native {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    const load = require('node-gyp-build') as (dir: string) => Native;
    try {
      loaded = load(packageRoot);
    } catch (e) {
      throw new AddonLoadError(explainLoadFailure(e));
    }
  }
  return loaded;
}

export { packageRoot };
