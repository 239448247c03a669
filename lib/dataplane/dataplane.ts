/**
 * The vmpeer dataplane on this node: the shipped BPF object, its endpoint
 * table and counters, and the attachments vmpeer made. Everything that must
 * outlive a process lives under one bpffs directory:
 *
 *   <root>/maps/endpoints, <root>/maps/stats    the shared maps
 *   <root>/links/<record>                        tcx links
 *   <root>/filters/<record>                      clsact filters (the pinned program is the record)
 *
 * so the CLI and the daemon see the same state, and stopping either never
 * interrupts traffic.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native as loadNative, packageRoot, type AttachMode, type Hook, type Native } from '../native.js';
import { BpfObject } from '../bpf/object.js';
import type { Program } from '../bpf/program.js';
import { attach, attachAsync, detach, describe, kernelFeatures, resolveMode, type HookTarget } from '../bpf/link.js';
import { KernelUnsupportedError, UsageError } from '../errors.js';
import { decodeStats, encodeStatKey, type Endpoint, type Stats } from './codec.js';
import { EndpointTable, type WithCounters } from './endpoint-table.js';
import { STAT_NAMES } from './layout.js';

export const DEFAULT_BPFFS_ROOT = '/sys/fs/bpf/vmpeer';
export const OBJECT_PATH = path.join(packageRoot, 'dist', 'bpf', 'vmpeer.bpf.o');
const BPF_FS_MAGIC = 0xcafe4a11;

/** The programs attached inside VM pods; `redirect` goes on host interfaces. */
export type PodProgram = 'fixup' | 'from_guest';
export type ProgramName = PodProgram | 'redirect';

export const isPodProgram = (name: string): name is PodProgram => name === 'fixup' || name === 'from_guest';

/**
 * What mode 'auto' means for a program. In a VM pod vmpeer is alone at the
 * hook, and a clsact filter attaches at once, where a tcx link holds the rtnl
 * lock across an RCU grace period (tcx_link_attach(): about 13 ms each, one
 * at a time): 250 pods are covered in 0.55 s with clsact, 3.9 s with tcx. On
 * host interfaces, tcx orders vmpeer among the CNI's own tcx programs.
 */
export function autoMode(n: Native, program: ProgramName): AttachMode {
  return isPodProgram(program) ? 'clsact' : resolveMode(n, 'auto');
}

export interface AttachmentRecord {
  program: ProgramName;
  mode: AttachMode;
  hook: Hook;
  ifname: string;
  netnsInode: number;
  pin: string;
}

export interface AttachOptions {
  mode?: 'auto' | AttachMode;
  first?: boolean;
}

export interface DataplaneOptions {
  root?: string;
  object?: string | Buffer;
  native?: Native;
}

export class Dataplane {
  readonly root: string;
  private readonly obj: BpfObject;
  /** Attachments under way (attachAsync), by their record's pin. */
  private readonly attaching = new Map<string, Promise<unknown>>();

  private constructor(root: string, obj: BpfObject, private readonly n: Native) {
    this.root = root;
    this.obj = obj;
  }

  /** Whether vmpeer has state under `root` (without creating any). */
  static exists(root = DEFAULT_BPFFS_ROOT): boolean {
    return fs.existsSync(path.join(root, 'maps', 'endpoints'));
  }

  /** Loads the object, reusing the maps pinned under `root` (creating them on first use). */
  static open(options: DataplaneOptions = {}): Dataplane {
    const root = options.root ?? DEFAULT_BPFFS_ROOT;
    const n = options.native ?? loadNative();
    if (!kernelFeatures(n).redirectPeer) {
      throw new KernelUnsupportedError(`this kernel (${os.release()}) lacks bpf_redirect_peer: vmpeer needs Linux 5.10 or later`);
    }
    ensureBpffs(root);
    for (const dir of ['maps', 'links', 'filters']) fs.mkdirSync(path.join(root, dir), { recursive: true });
    const obj = BpfObject.open(options.object ?? OBJECT_PATH, { pinMapsIn: path.join(root, 'maps') }, n);
    return new Dataplane(root, obj, n);
  }

  close(): void {
    this.obj.close();
  }

  /** A program of the loaded object: its fd, id and instruction count (the daemon compares it with what is attached). */
  program(name: ProgramName): Program {
    return this.obj.program(name);
  }

  /** Closes, and removes all of vmpeer's state when nothing is attached and no endpoint is left. */
  closeAndPruneIfEmpty(): boolean {
    const empty = this.attachments().length === 0 && this.endpoints().length === 0;
    this.close();
    if (empty) fs.rmSync(this.root, { recursive: true, force: true });
    return empty;
  }

  // ---- endpoints

  private get table(): EndpointTable {
    return new EndpointTable(this.obj.map('endpoints'));
  }

  /** Adds or updates the endpoint for a guest IP; its counters are kept. */
  setEndpoint(ep: Endpoint): 'added' | 'updated' | 'unchanged' {
    return this.locked(() => this.table.set(ep));
  }

  deleteEndpoint(guestIp: string): boolean {
    return this.locked(() => this.table.delete(guestIp));
  }

  endpoint(guestIp: string): WithCounters | null {
    return this.table.get(guestIp);
  }

  endpoints(): WithCounters[] {
    return this.table.all();
  }

  /** Runs `fn` holding the lock on the state directory: writers of the endpoint table take turns. */
  private locked<T>(fn: () => T): T {
    const fd = this.n.lockDir(this.root);
    try {
      return fn();
    } finally {
      this.n.closeFd(fd);
    }
  }

  stats(): Stats {
    const map = this.obj.map('stats');
    return decodeStats(STAT_NAMES.map((_, slot) => map.lookup(encodeStatKey(slot)) ?? []));
  }

  // ---- attachments

  /**
   * Attaches a program at a hook. Idempotent: when vmpeer's attachment of the
   * same program is already there, nothing changes and `created` is false.
   */
  attach(program: ProgramName, target: HookTarget, options: AttachOptions = {}): { record: AttachmentRecord; created: boolean } {
    const existing = this.findRecord(program, target);
    if (existing) return { record: existing, created: false };
    const record = this.newRecord(program, target, options.mode);
    attach(this.n, this.obj.program(program), target, { ...options, mode: record.mode, pinPath: record.pin });
    return { record, created: true };
  }

  /**
   * attach() with the kernel work off the JS thread, so that attachments to
   * many pods can be under way at once. When it rejects, no record was made.
   * A second call for the same hook while one is under way waits for it.
   */
  async attachAsync(program: ProgramName, target: HookTarget, options: AttachOptions = {}): Promise<{ record: AttachmentRecord; created: boolean }> {
    const existing = this.findRecord(program, target);
    if (existing) return { record: existing, created: false };
    // the record is named before the attach: the netns may be gone when it ends
    const record = this.newRecord(program, target, options.mode);
    const underway = this.attaching.get(record.pin);
    if (underway) {
      await underway.catch(() => undefined);
      return this.attachAsync(program, target, options);
    }
    const attaching = attachAsync(this.n, this.obj.program(program), target, { ...options, mode: record.mode, pinPath: record.pin });
    this.attaching.set(record.pin, attaching);
    try {
      await attaching;
    } finally {
      this.attaching.delete(record.pin);
    }
    return { record, created: true };
  }

  /** Removes vmpeer's attachment of `program` at a hook. Returns false when there was none. */
  detach(program: ProgramName, target: HookTarget): boolean {
    const record = this.findRecord(program, target);
    if (!record) return false;
    this.removeRecord(record, target.netns);
    return true;
  }

  /** Removes an attachment by its record; when the netns is gone, only its pin is left to remove. */
  removeRecord(record: AttachmentRecord, netns?: string): void {
    if (!netns || fs.existsSync(netns)) {
      detach(this.n, { netns, ifname: record.ifname, hook: record.hook }, { mode: record.mode, pinPath: record.pin });
    }
    fs.rmSync(record.pin, { force: true });
  }

  attachments(): AttachmentRecord[] {
    return (['links', 'filters'] as const).flatMap((dir) =>
      fs.readdirSync(path.join(this.root, dir)).flatMap((name) => {
        const r = parseRecordName(name);
        return r ? [{ ...r, mode: dir === 'links' ? ('tcx' as const) : ('clsact' as const), pin: path.join(this.root, dir, name) }] : [];
      }),
    );
  }

  private findRecord(program: ProgramName, target: HookTarget): AttachmentRecord | undefined {
    const inode = netnsInode(target.netns);
    return this.attachments().find((r) => r.program === program && r.ifname === target.ifname && r.hook === target.hook && r.netnsInode === inode);
  }

  private newRecord(program: ProgramName, target: HookTarget, mode: AttachOptions['mode'] = 'auto'): AttachmentRecord {
    const resolved = mode === 'auto' ? autoMode(this.n, program) : resolveMode(this.n, mode);
    const inode = netnsInode(target.netns);
    const pin = path.join(this.root, resolved === 'tcx' ? 'links' : 'filters', recordName(program, target, inode));
    return { program, mode: resolved, hook: target.hook, ifname: target.ifname, netnsInode: inode, pin };
  }
}

/** The inode of a netns file identifies the namespace while it exists. */
export function netnsInode(netns?: string): number {
  try {
    return fs.statSync(netns ?? '/proc/self/ns/net').ino;
  } catch {
    throw new UsageError(`network namespace not found: ${netns}`);
  }
}

// bpffs names may not contain '.', so interface names are percent-encoded.
function recordName(program: ProgramName, target: HookTarget, netnsInode: number): string {
  const ifname = encodeURIComponent(target.ifname).replace(/\./g, '%2E');
  return `${program}_${target.hook}_ns${netnsInode}_${ifname}`;
}

export function parseRecordName(name: string): Omit<AttachmentRecord, 'mode' | 'pin'> | null {
  const m = /^(fixup|redirect|from_guest)_(ingress|egress)_ns(\d+)_(.+)$/.exec(name);
  if (!m) return null;
  return { program: m[1] as ProgramName, hook: m[2] as Hook, netnsInode: Number(m[3]), ifname: decodeURIComponent(m[4]!) };
}

/** The state directory must be on bpffs: checked on its nearest existing ancestor. */
function ensureBpffs(root: string): void {
  let dir = path.resolve(root);
  while (!fs.existsSync(dir)) dir = path.dirname(dir);
  if (Number(fs.statfsSync(dir).type) !== BPF_FS_MAGIC) {
    throw new UsageError(
      dir === '/sys/fs' || dir === '/sys/fs/bpf' || root.startsWith('/sys/fs/bpf/')
        ? `/sys/fs/bpf is not a bpffs mount: mount it with 'mount -t bpf bpf /sys/fs/bpf' (vmpeer keeps its state under ${root})`
        : `${root} is not on a bpffs mount: vmpeer keeps its state in bpffs, e.g. under /sys/fs/bpf`,
    );
  }
}

export { describe };
