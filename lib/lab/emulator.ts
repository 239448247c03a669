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
import type { BpfMap } from '../bpf/map.js';
import { BpfObject } from '../bpf/object.js';
import type { Program } from '../bpf/program.js';
import { ipv4Bytes } from './addressing.js';

export const EMULATOR_OBJECT = path.join(packageRoot, 'dist', 'bpf', 'cni_emulator.bpf.o');
export const EMULATOR_PROGRAM = 'cni_emulator';
/** clsact filter handle and priority of the emulator (tcx needs none). */
export const EMULATOR_CLSACT_HANDLE = 0xe0;
export const EMULATOR_CLSACT_PRIORITY = 100;

/**
 * The structs of bpf/cni_emulator.h as this file encodes them: the offsets
 * setRoute(), configure() and stats() read and write (test/lab checks them
 * against the object's BTF).
 */
export const EMU_ROUTE = { struct: 'emu_route', size: 8, fields: { ifindex: { offset: 0, size: 4 }, flags: { offset: 4, size: 4 } } } as const;
export const EMU_CONFIG = {
  struct: 'emu_config',
  size: 16,
  fields: { idle_timeout_ns: { offset: 0, size: 8 }, lifetime_ns: { offset: 8, size: 8 } },
} as const;
/** Counters, one __u64 each, in the order of EmulatorStats. */
export const EMU_STATS = {
  struct: 'emu_stats',
  size: 40,
  fields: {
    first: { offset: 0, size: 8 },
    expired: { offset: 8, size: 8 },
    redirected: { offset: 16, size: 8 },
    opted_out: { offset: 24, size: 8 },
    other: { offset: 32, size: 8 },
  },
} as const;
/** The key of emu_flows (struct emu_flow). */
export const EMU_FLOW_SIZE = 16;
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

export class CniEmulator {
  private readonly attached: Attached[] = [];
  private closed = false;
  private readonly prog: Program;
  private readonly routes: BpfMap;
  private readonly flows: BpfMap;
  private readonly config: BpfMap;
  private readonly statsMap: BpfMap;

  private constructor(
    private readonly n: Native,
    private readonly obj: BpfObject,
    readonly mode: AttachMode,
  ) {
    this.prog = obj.program(EMULATOR_PROGRAM);
    this.routes = obj.map('emu_routes');
    this.flows = obj.map('emu_flows');
    this.config = obj.map('emu_config');
    this.statsMap = obj.map('emu_stats');
  }

  /** Loads the object. `mode` defaults to tcx where the kernel has it, clsact otherwise. */
  static load(options: { objectPath?: string; mode?: AttachMode; native?: Native } = {}): CniEmulator {
    const n = options.native ?? native();
    const mode = resolveMode(n, options.mode);
    const obj = BpfObject.open(options.objectPath ?? EMULATOR_OBJECT, {}, n);
    try {
      return new CniEmulator(n, obj, mode);
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  get progId(): number {
    return this.prog.id;
  }

  /** Routes `podIp` to the host veth `ifindex` (in the netns the emulator is attached in). */
  setRoute(podIp: string, ifindex: number, options: { noRedirect?: boolean } = {}): void {
    const v = Buffer.alloc(EMU_ROUTE.size);
    v.writeUInt32LE(ifindex, EMU_ROUTE.fields.ifindex.offset);
    v.writeUInt32LE(options.noRedirect ? EMU_ROUTE_NO_REDIRECT : 0, EMU_ROUTE.fields.flags.offset);
    this.routes.update(ipv4Bytes(podIp), v);
  }

  deleteRoute(podIp: string): boolean {
    return this.routes.delete(ipv4Bytes(podIp));
  }

  configure(config: EmulatorConfig): void {
    const v = Buffer.alloc(EMU_CONFIG.size);
    v.writeBigUInt64LE(BigInt(Math.round((config.idleTimeoutMs ?? 0) * 1e6)), EMU_CONFIG.fields.idle_timeout_ns.offset);
    v.writeBigUInt64LE(BigInt(Math.round((config.lifetimeMs ?? 0) * 1e6)), EMU_CONFIG.fields.lifetime_ns.offset);
    this.config.update(ZERO, v);
  }

  /** Forgets every flow: the next packet of each is a first packet again. */
  flushFlows(): void {
    for (const k of this.flows.keys()) this.flows.delete(k);
  }

  /** Number of flows in the table. */
  flowCount(): number {
    return this.flows.keys().length;
  }

  stats(): EmulatorStats {
    const v = this.statsMap.lookup(ZERO)?.[0];
    const at = (field: keyof typeof EMU_STATS.fields) => (v ? Number(v.readBigUInt64LE(EMU_STATS.fields[field].offset)) : 0);
    return { first: at('first'), expired: at('expired'), redirected: at('redirected'), optedOut: at('opted_out'), other: at('other') };
  }

  resetStats(): void {
    this.statsMap.update(ZERO, Buffer.alloc(EMU_STATS.size));
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
      progFd: this.prog.fd,
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
