/**
 * The CNI fast-path emulator (bpf/cni_emulator.bpf.c) from user space: load
 * it, fill its route table, attach it at tc ingress of node interfaces, read
 * its counters. Lab and tests only.
 *
 * Attachments and the object live as long as this process holds their fds:
 * close() (the lab's destroy()) detaches and unloads everything.
 */
import path from 'node:path';
import { type Attachment, type AttachMode, type Native, native, packageRoot } from '../native.js';
import { resolveMode } from '../bpf/link.js';
import { ipv4Bytes } from './addressing.js';

export const EMULATOR_OBJECT = path.join(packageRoot, 'dist', 'bpf', 'cni_emulator.bpf.o');
export const EMULATOR_PROGRAM = 'cni_emulator';
/** clsact filter handle and priority of the emulator (tcx needs none). */
export const EMULATOR_CLSACT_HANDLE = 0xe0;
export const EMULATOR_CLSACT_PRIORITY = 100;

/** Sizes of the structs in bpf/cni_emulator.h (test/lab checks them against the object's BTF). */
export const EMU_ROUTE_SIZE = 8;
export const EMU_CONFIG_SIZE = 16;
export const EMU_STATS_SIZE = 40;
export const EMU_ROUTE_NO_REDIRECT = 1;

export interface EmulatorStats {
  /** First packets of a flow, left to the kernel path. */
  first: number;
  /** ... of which the flow was known but had timed out. */
  expired: number;
  /** Established packets sent through bpf_redirect_peer(), frame untouched. */
  redirected: number;
  /** Packets to pods marked noRedirect. */
  optedOut: number;
  /** Everything else the emulator saw (not IPv4, not to a local pod). */
  other: number;
}

export interface EmulatorConfig {
  /** A flow idle this long starts over with a first packet (default 15 s). */
  idleTimeoutMs?: number;
  /** A flow this old starts over, busy or not (default: never). */
  lifetimeMs?: number;
}

export interface EmulatorAttachPoint {
  /** netns path. */
  netns: string;
  ifname: string;
}

interface Attached extends EmulatorAttachPoint {
  attachment: Attachment;
}

const ZERO = Buffer.alloc(4);

function mapFd(obj: { maps: Array<{ name: string; fd: number }> }, name: string): number {
  const m = obj.maps.find((x) => x.name === name);
  if (!m) throw new Error(`cni emulator: map ${name} missing from ${EMULATOR_OBJECT}`);
  return m.fd;
}

export class CniEmulator {
  private readonly attached: Attached[] = [];
  private closed = false;
  private readonly progFd: number;
  private readonly routesFd: number;
  private readonly flowsFd: number;
  private readonly configFd: number;
  private readonly statsFd: number;

  private constructor(
    private readonly n: Native,
    private readonly obj: ReturnType<Native['openObject']>,
    readonly mode: AttachMode,
  ) {
    const prog = obj.programs.find((p) => p.name === EMULATOR_PROGRAM);
    if (!prog) throw new Error(`cni emulator: program ${EMULATOR_PROGRAM} missing from ${EMULATOR_OBJECT}`);
    this.progFd = prog.fd;
    this.routesFd = mapFd(obj, 'emu_routes');
    this.flowsFd = mapFd(obj, 'emu_flows');
    this.configFd = mapFd(obj, 'emu_config');
    this.statsFd = mapFd(obj, 'emu_stats');
  }

  /** Loads the object. `mode` defaults to tcx where the kernel has it, clsact otherwise. */
  static load(options: { objectPath?: string; mode?: AttachMode; native?: Native } = {}): CniEmulator {
    const n = options.native ?? native();
    const mode = resolveMode(n, options.mode);
    const obj = n.openObject(options.objectPath ?? EMULATOR_OBJECT);
    try {
      return new CniEmulator(n, obj, mode);
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  get progId(): number {
    return this.n.progIdOf(this.progFd);
  }

  /** Routes `podIp` to the host veth `ifindex` (in the netns the emulator is attached in). */
  setRoute(podIp: string, ifindex: number, options: { noRedirect?: boolean } = {}): void {
    const v = Buffer.alloc(EMU_ROUTE_SIZE);
    v.writeUInt32LE(ifindex, 0);
    v.writeUInt32LE(options.noRedirect ? EMU_ROUTE_NO_REDIRECT : 0, 4);
    this.n.mapUpdate(this.routesFd, ipv4Bytes(podIp), v);
  }

  deleteRoute(podIp: string): boolean {
    return this.n.mapDelete(this.routesFd, ipv4Bytes(podIp));
  }

  configure(config: EmulatorConfig): void {
    const v = Buffer.alloc(EMU_CONFIG_SIZE);
    v.writeBigUInt64LE(BigInt(Math.round((config.idleTimeoutMs ?? 0) * 1e6)), 0);
    v.writeBigUInt64LE(BigInt(Math.round((config.lifetimeMs ?? 0) * 1e6)), 8);
    this.n.mapUpdate(this.configFd, ZERO, v);
  }

  /** Forgets every flow: the next packet of each is a first packet again. */
  flushFlows(): void {
    for (const k of this.n.mapKeys(this.flowsFd, 16)) this.n.mapDelete(this.flowsFd, k);
  }

  /** Number of flows in the table. */
  flowCount(): number {
    return this.n.mapKeys(this.flowsFd, 16).length;
  }

  stats(): EmulatorStats {
    const v = this.n.mapLookup(this.statsFd, ZERO, EMU_STATS_SIZE);
    const at = (i: number) => (v ? Number(v.readBigUInt64LE(i * 8)) : 0);
    return { first: at(0), expired: at(1), redirected: at(2), optedOut: at(3), other: at(4) };
  }

  resetStats(): void {
    this.n.mapUpdate(this.statsFd, ZERO, Buffer.alloc(EMU_STATS_SIZE));
  }

  /** Attaches at tc ingress of `ifname` in `netns`, after whatever is there. */
  attach(point: EmulatorAttachPoint): Attachment {
    if (this.closed) throw new Error('cni emulator: closed');
    if (this.attached.some((a) => a.netns === point.netns && a.ifname === point.ifname)) {
      throw new Error(`cni emulator: already attached to ${point.ifname} in ${point.netns}`);
    }
    const attachment = this.n.attach({
      netns: point.netns,
      ifname: point.ifname,
      hook: 'ingress',
      progFd: this.progFd,
      mode: this.mode,
      ...(this.mode === 'clsact' ? { handle: EMULATOR_CLSACT_HANDLE, priority: EMULATOR_CLSACT_PRIORITY } : {}),
    });
    this.attached.push({ ...point, attachment });
    return attachment;
  }

  get attachments(): ReadonlyArray<EmulatorAttachPoint> {
    return this.attached.map(({ netns, ifname }) => ({ netns, ifname }));
  }

  /** Detaches from one hook (false when not attached there). */
  detach(point: EmulatorAttachPoint): boolean {
    const i = this.attached.findIndex((a) => a.netns === point.netns && a.ifname === point.ifname);
    if (i < 0) return false;
    const [a] = this.attached.splice(i, 1);
    this.release(a!);
    return true;
  }

  detachAll(): void {
    for (const a of this.attached.splice(0)) this.release(a);
  }

  private release(a: Attached): void {
    try {
      if (a.attachment.linkFd !== undefined) {
        this.n.closeFd(a.attachment.linkFd);
      } else if (a.attachment.mode === 'clsact') {
        this.n.detach({
          netns: a.netns,
          ifname: a.ifname,
          hook: 'ingress',
          mode: 'clsact',
          handle: a.attachment.handle ?? EMULATOR_CLSACT_HANDLE,
          priority: a.attachment.priority ?? EMULATOR_CLSACT_PRIORITY,
          progId: a.attachment.progId,
        });
      }
    } catch {
      // the netns or interface is gone, and the attachment with it
    }
  }

  /** Detaches everywhere and unloads. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.detachAll();
    this.closed = true;
    this.obj.close();
  }
}
