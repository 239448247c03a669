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
 *
 * An open Dataplane holds the node lock (root.ts): one writer at a time, for
 * the whole of its transaction (a CLI command) or its life (the daemon).
 * Dataplane.view() reads the same state without the lock and changes nothing.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native as loadNative, packageRoot, type AttachMode, type Native } from '../native.js';
import { BpfObject } from '../bpf/object.js';
import type { BpfMap } from '../bpf/map.js';
import type { Program } from '../bpf/program.js';
import { attach, attachAsync, detach, describe, kernelFeatures, resolveMode, TC_HANDLE, TC_PRIORITY, TC_PRIORITY_FIRST, type HookTarget } from '../bpf/link.js';
import { pinned, programTag, tagOfProgId } from '../bpf/fdinfo.js';
import { AlreadyAttachedError, KernelUnsupportedError, UsageError } from '../errors.js';
import { checkRoot, lockedError, lockRoot, pruneRoot, ROOT_ENTRIES, tryLockRoot } from './root.js';
import { verifyRecord } from './verify.js';
import { mismatchedPin, openPinnedMaps } from './pinned-maps.js';
import { isPodProgram, listRecords, netnsInode, netnsMismatch, parseRecordName, readNetnsId, recordName, type AttachmentRecord, type NetnsId, type PodProgram, type ProgramName } from './records.js';
import { decodeStats, encodeStatKey, type Endpoint, type Stats } from './codec.js';
import { EndpointTable, type WithCounters } from './endpoint-table.js';
import { STAT_NAMES } from './layout.js';
import { pinStamp, settleLayout, STAMP_MAP, type Migration } from './migrate.js';
import { PodInstances } from './pod-instances.js';
import { swapProgram } from './swap-program.js';

export const DEFAULT_BPFFS_ROOT = '/sys/fs/bpf/vmpeer';
export const OBJECT_PATH = path.join(packageRoot, 'dist', 'bpf', 'vmpeer.bpf.o');
/** How long a CLI command waits for another vmpeer process to finish its change. */
const CLI_LOCK_WAIT_MS = 10_000;


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


export interface AttachOptions {
  mode?: 'auto' | AttachMode;
  first?: boolean;
  /** The pod whose own instance of a pod program to attach (pod-instances.ts); 0 or absent: the shared one. */
  pod?: number;
}

export interface DataplaneOptions {
  root?: string;
  object?: string | Buffer;
  native?: Native;
  /** How long to wait for the node lock (default: 10 s, as a CLI command does). */
  lockWaitMs?: number;
  /** Where the netns files of attached pods are (a migration finds their hooks through them). */
  netnsDirs?: readonly string[];
}


export class Dataplane {
  readonly root: string;
  /** The loaded object; null for a view(). */
  private readonly obj: BpfObject | null;
  private readonly maps: ReadonlyMap<string, BpfMap>;
  /** The node lock (root.ts); null for a view(). */
  private lockFd: number | null;
  private closed = false;
  /** Attachments under way (attachAsync), by their record's pin. */
  private readonly attaching = new Map<string, Promise<unknown>>();
  /** Pods' own instances of the pod programs; null for a view(). */
  private readonly instances: PodInstances | null;

  private constructor(
    root: string,
    obj: BpfObject | null,
    maps: ReadonlyMap<string, BpfMap>,
    lockFd: number | null,
    private readonly n: Native,
    /** What opening it migrated (migrate.ts); null when the state had this build's layout. */
    readonly migration: Migration | null = null,
    source: string | Buffer | null = null,
  ) {
    this.root = root;
    this.obj = obj;
    this.instances = obj && source !== null ? new PodInstances(n, source, obj.maps) : null;
    this.maps = maps;
    this.lockFd = lockFd;
  }

  /** Whether vmpeer has state under `root` (without creating any). */
  static exists(root = DEFAULT_BPFFS_ROOT): boolean {
    return fs.existsSync(path.join(root, 'maps', 'endpoints'));
  }

  /**
   * Takes the node lock (waiting up to lockWaitMs for another vmpeer process),
   * then loads the object, reusing the maps pinned under `root` (creating
   * them on first use). The lock is held until close().
   */
  static open(options: DataplaneOptions = {}): Dataplane {
    const { root, n } = Dataplane.preflight(options);
    return Dataplane.load(options, root, n, lockRoot(n, root, options.lockWaitMs ?? CLI_LOCK_WAIT_MS));
  }

  /** open() without waiting: null when another vmpeer process holds the node lock. */
  static tryOpen(options: DataplaneOptions = {}): Dataplane | null {
    const { root, n } = Dataplane.preflight(options);
    const fd = tryLockRoot(n, root);
    return fd === null ? null : Dataplane.load(options, root, n, fd);
  }

  /** The process that holds the node lock on `root`, as a sentence. */
  static lockedMessage(root: string): string {
    return lockedError(root).message;
  }

  private static preflight(options: DataplaneOptions): { root: string; n: Native } {
    const root = options.root ?? DEFAULT_BPFFS_ROOT;
    const n = options.native ?? loadNative();
    if (!kernelFeatures(n).redirectPeer) {
      throw new KernelUnsupportedError(`this kernel (${os.release()}) lacks bpf_redirect_peer: vmpeer needs Linux 5.10 or later`);
    }
    checkRoot(root);
    return { root, n };
  }

  private static load(options: DataplaneOptions, root: string, n: Native, lockFd: number): Dataplane {
    try {
      checkRoot(root); // again, now that nobody else changes it
      for (const dir of ROOT_ENTRIES) fs.mkdirSync(path.join(root, dir), { recursive: true });
      const source = options.object ?? OBJECT_PATH;
      const migration = settleLayout(n, root, source, options.netnsDirs);
      let obj: BpfObject;
      try {
        obj = BpfObject.open(source, { pinMapsIn: path.join(root, 'maps') }, n);
      } catch (e) {
        throw mismatchedPin(n, source, root) ?? e;
      }
      try {
        // new state (an older one was migrated above): stamped once its maps exist
        if (!fs.existsSync(path.join(root, 'maps', STAMP_MAP))) pinStamp(n, path.join(root, 'maps'));
        EndpointTable.of(obj.maps).seed(); // a new table draws its hash key now, under the lock
      } catch (e) {
        obj.close();
        throw e;
      }
      return new Dataplane(root, obj, obj.maps, lockFd, n, migration, source);
    } catch (e) {
      n.closeFd(lockFd);
      throw e;
    }
  }

  /**
   * The pinned state, read without the lock and without loading programs
   * (`vmpeer status`, tests beside a running daemon); null when there is none.
   */
  static view(options: Omit<DataplaneOptions, 'object' | 'lockWaitMs'> = {}): Dataplane | null {
    const root = options.root ?? DEFAULT_BPFFS_ROOT;
    const n = options.native ?? loadNative();
    checkRoot(root);
    const maps = openPinnedMaps(n, root);
    return maps && new Dataplane(root, null, maps, null, n);
  }

  /** Releases the object (or the view's maps) and the node lock; attachments that are pinned stay. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.instances?.close();
    if (this.obj) this.obj.close();
    else for (const m of this.maps.values()) this.n.closeFd(m.fd);
    if (this.lockFd !== null) this.n.closeFd(this.lockFd);
    this.lockFd = null;
  }

  private writable(): this {
    if (!this.obj || this.lockFd === null) throw new Error('a Dataplane.view() (or a closed one) cannot change the dataplane');
    return this;
  }

  /**
   * A program of the loaded object: its fd, id and instruction count (the
   * daemon compares it with what is attached). With a `pod`, that pod's own
   * instance of a pod program (pod-instances.ts), loaded on first use.
   */
  program(name: ProgramName, pod = 0): Program {
    this.writable();
    if (!pod) return this.obj!.program(name);
    if (!isPodProgram(name)) throw new Error(`${name} has no per-pod instances`);
    return this.instances!.program(name, pod);
  }

  private tagCache: Map<string, ProgramName> | null = null;

  /** Which of this object's programs has this tag. */
  private programWithTag(tag: string | null): ProgramName | undefined {
    this.tagCache ??= new Map(
      (['fixup', 'from_guest', 'redirect'] as const).flatMap((p) => (this.obj?.programs.has(p) ? [[programTag(this.program(p)), p] as const] : [])),
    );
    return tag === null ? undefined : this.tagCache.get(tag);
  }

  /**
   * Closes; when nothing is attached and no endpoint is left, first removes
   * vmpeer's own pins and folders (never anything else, never recursively).
   * Returns whether the state directory is gone.
   */
  closeAndPruneIfEmpty(): boolean {
    const empty = this.lockFd !== null && this.attachments().length === 0 && this.endpoints().length === 0;
    try {
      if (empty) pruneRoot(this.root, this.ourMapPins());
    } finally {
      this.close();
    }
    return empty && !fs.existsSync(this.root);
  }

  /** The map pins this object made (or reused): the only map pins vmpeer ever removes. */
  private ourMapPins(): string[] {
    const maps = [...this.maps.values()].flatMap((m) => (m.pinPath && m.pinPath.startsWith(path.join(this.root, 'maps') + '/') ? [m.pinPath] : []));
    return [...maps, path.join(this.root, 'maps', STAMP_MAP)];
  }

  /**
   * Whether the pins that hold vmpeer's state are still there and still this
   * process's maps; when not (someone removed them), says what is missing and
   * pins them again from the maps this process holds (the kernel's truth).
   */
  repairPins(): string[] {
    const repaired: string[] = [];
    if (this.lockFd !== null && fs.fstatSync(this.lockFd).ino !== inodeOrNull(this.root)) {
      // the directory itself was removed: the lock held guards nothing, take it on the new one
      const fd = tryLockRoot(this.n, this.root);
      if (fd === null) throw lockedError(this.root);
      this.n.closeFd(this.lockFd);
      this.lockFd = fd;
      repaired.push(`${this.root} was removed`);
    }
    for (const dir of ROOT_ENTRIES) {
      const p = path.join(this.root, dir);
      if (!fs.existsSync(p)) {
        fs.mkdirSync(p, { recursive: true });
        repaired.push(`${p} was missing`);
      }
    }
    for (const m of this.maps.values()) {
      if (!m.pinPath) continue;
      let id: number | null = null;
      try {
        const fd = this.n.objGet(m.pinPath);
        try {
          id = this.n.mapInfo(fd).id;
        } finally {
          this.n.closeFd(fd);
        }
      } catch {
        // missing: pinned again below
      }
      if (id === m.id) continue;
      if (id !== null) fs.rmSync(m.pinPath, { force: true }); // another map under our name: ours is the one the programs use
      this.n.objPin(m.fd, m.pinPath);
      repaired.push(`${m.pinPath} was ${id === null ? 'missing' : `map ${id}, not ${m.id}`}`);
    }
    const stamp = path.join(this.root, 'maps', STAMP_MAP);
    if (this.obj && !fs.existsSync(stamp)) {
      pinStamp(this.n, path.dirname(stamp));
      repaired.push(`${stamp} was missing`);
    }
    return repaired;
  }

  // ---- endpoints

  private get table(): EndpointTable {
    return EndpointTable.of(this.maps);
  }

  /** Adds or updates the endpoint for a guest IP; its counters are kept. */
  setEndpoint(ep: Endpoint): 'added' | 'updated' | 'unchanged' {
    return this.writable().table.set(ep);
  }

  deleteEndpoint(guestIp: string): boolean {
    return this.writable().table.delete(guestIp);
  }

  endpoint(guestIp: string): WithCounters | null {
    return this.table.get(guestIp);
  }

  endpoints(): WithCounters[] {
    return this.table.all();
  }

  stats(): Stats {
    const map = this.maps.get('stats')!;
    return decodeStats(STAT_NAMES.map((_, slot) => map.lookup(encodeStatKey(slot)) ?? []));
  }

  // ---- attachments

  /**
   * Attaches a program at a hook in the netns `netns` (readNetnsId() of
   * target.netns). Idempotent: when vmpeer's attachment of the same program
   * is already there, nothing changes and `created` is false. A record is
   * believed only when it names this netns (inode and, where both have one,
   * cookie) and the kernel still has its attachment at the hook (a netns
   * inode is reused by the next namespace); a stale one is dropped and the
   * program attached for real. A believed record without a cookie gets it.
   */
  attach(program: ProgramName, target: HookTarget, netns: NetnsId, options: AttachOptions = {}): { record: AttachmentRecord; created: boolean } {
    const existing = this.findRecord(program, target, netns);
    if (existing) {
      const pod = options.pod ?? 0;
      const verdict = verifyRecord(this.n, existing, target, netns, programTag(this.program(program)), isPodProgram(program) ? pod : undefined);
      if (verdict.state === 'ok') return { record: this.upgradeRecord(existing, target, netns), created: false };
      if (verdict.state === 'outdated') {
        // another build's program, or another pod's instance (the bypass turned on or off): replaced in place
        swapProgram(this.n, existing, target, this.program(program, pod));
        return { record: this.upgradeRecord(existing, target, netns), created: false };
      }
      this.removeRecord(existing, target.netns);
    }
    const record = this.newRecord(program, target, netns, options.mode);
    try {
      attach(this.n, this.program(program, options.pod), target, { ...options, mode: record.mode, pinPath: record.pin });
    } catch (e) {
      if (!this.adoptOrphan(e, program, target, record, options)) throw e;
      return this.attach(program, target, netns, options); // the adopted record is verified, or attached again
    }
    return { record, created: true };
  }

  /**
   * Gives a verified record without a cookie (an earlier vmpeer's) the
   * cookie of its netns: the pin is renamed, in one step. Returns the record
   * as it is now (unchanged without a cookie to give).
   */
  upgradeRecord(record: AttachmentRecord, target: HookTarget, netns: NetnsId): AttachmentRecord {
    if (record.netnsCookie !== null || netns.cookie === null || record.netnsInode !== netns.inode) return record;
    this.writable();
    const pin = path.join(path.dirname(record.pin), recordName(record.program, target, netns));
    fs.renameSync(record.pin, pin);
    return { ...record, netnsCookie: netns.cookie, pin };
  }

  /**
   * attach() with the kernel work off the JS thread, so that attachments to
   * many pods can be under way at once. When it rejects, no record was made.
   * A second call for the same hook while one is under way waits for it.
   * (The daemon verifies records itself before it calls this.)
   */
  async attachAsync(program: ProgramName, target: HookTarget, options: AttachOptions = {}): Promise<{ record: AttachmentRecord; created: boolean }> {
    const netns = await readNetnsId(this.n, target.netns);
    const existing = this.findRecord(program, target, netns);
    if (existing) return { record: existing, created: false };
    // the record is named before the attach: the netns may be gone when it ends
    const record = this.newRecord(program, target, netns, options.mode);
    const underway = this.attaching.get(record.pin);
    if (underway) {
      await underway.catch(() => undefined);
      return this.attachAsync(program, target, options);
    }
    const prog = this.program(program, options.pod);
    const release = this.instances!.hold(options.pod ?? 0);
    const attaching = attachAsync(this.n, prog, target, { ...options, mode: record.mode, pinPath: record.pin });
    this.attaching.set(record.pin, attaching);
    let outcome: 'attached' | 'adopted' | 'removed' = 'attached';
    try {
      await attaching;
    } catch (e) {
      const recovered = this.adoptOrphan(e, program, target, record, options);
      if (!recovered) throw e;
      outcome = recovered;
    } finally {
      this.attaching.delete(record.pin);
      release();
    }
    if (outcome === 'removed') return this.attachAsync(program, target, options);
    if (outcome === 'adopted' && isPodProgram(program)) {
      // the orphan has this build's tag, but maybe another pod's constant (or none)
      const pod = options.pod ?? 0;
      if (verifyRecord(this.n, record, target, netns, programTag(prog), pod).state === 'outdated') swapProgram(this.n, record, target, this.program(program, pod));
    }
    return { record, created: true };
  }

  /**
   * After EEXIST at vmpeer's clsact handle and priority: a filter there
   * without a record is one a vmpeer process attached and was killed before
   * it pinned the record, when its program's tag is one of vmpeer's. The same
   * program is adopted (its record pinned); another of vmpeer's programs is
   * removed (attach again). A filter whose tag is not vmpeer's is left alone
   * and the error stands (null).
   */
  private adoptOrphan(e: unknown, program: ProgramName, target: HookTarget, record: AttachmentRecord, options: AttachOptions): 'adopted' | 'removed' | null {
    if (!(e instanceof AlreadyAttachedError) || record.mode !== 'clsact' || fs.existsSync(record.pin)) return null;
    const priority = options.first ? TC_PRIORITY_FIRST : TC_PRIORITY;
    const entry = this.n.listHook(target).find((x) => x.mode === 'clsact' && x.handle === TC_HANDLE && x.priority === priority);
    if (!entry?.progId) return null;
    const theirs = this.programWithTag(tagOfProgId(this.n, entry.progId));
    if (theirs === undefined) return null;
    if (theirs === program) {
      const fd = this.n.progFdById(entry.progId);
      try {
        this.n.objPin(fd, record.pin);
      } finally {
        this.n.closeFd(fd);
      }
      return 'adopted';
    }
    this.n.detach({ ...target, mode: 'clsact', handle: TC_HANDLE, priority, progId: entry.progId });
    return 'removed';
  }

  /** Removes vmpeer's attachment of `program` at a hook. Returns false when there was none. */
  detach(program: ProgramName, target: HookTarget): boolean {
    const record = this.findRecord(program, target, { inode: netnsInode(target.netns), cookie: null });
    if (!record) return false;
    this.removeRecord(record, target.netns);
    return true;
  }

  /** Removes an attachment this process made, unless its record now holds another program (another writer's). */
  removeRecordIfSame(record: AttachmentRecord, target: HookTarget): boolean {
    const id = pinned(this.n, record.pin)?.progId;
    const ours = id !== undefined && (id === this.program(record.program).id || (isPodProgram(record.program) && this.instances!.has(record.program, id)));
    if (!ours) return false;
    this.removeRecord(record, target.netns);
    return true;
  }

  /**
   * Removes a stale record: a tcx link is detached through its pin (wherever
   * it is), a clsact filter in `netns` when it still exists there (found by
   * the record's program); then the pin goes.
   */
  forgetRecord(record: AttachmentRecord, netns: string | null): void {
    this.writable();
    try {
      if (record.mode === 'tcx') this.n.detach({ ifname: record.ifname, hook: record.hook, mode: 'tcx', pinPath: record.pin });
      else if (netns !== null) detach(this.n, { netns, ifname: record.ifname, hook: record.hook }, { mode: 'clsact', pinPath: record.pin });
    } catch {
      // the attachment is gone already
    }
    fs.rmSync(record.pin, { force: true });
  }

  /** Removes an attachment by its record; when the netns is gone, only its pin is left to remove. */
  removeRecord(record: AttachmentRecord, netns?: string): void {
    if (!netns || fs.existsSync(netns)) {
      detach(this.n, { netns, ifname: record.ifname, hook: record.hook }, { mode: record.mode, pinPath: record.pin });
    }
    fs.rmSync(record.pin, { force: true });
  }

  attachments(): AttachmentRecord[] {
    return listRecords(this.root);
  }

  /** The record of `program` at a hook in a netns with `netns`'s inode: one of that very netns first. */
  private findRecord(program: ProgramName, target: HookTarget, netns: NetnsId): AttachmentRecord | undefined {
    const there = this.attachments().filter((r) => r.program === program && r.ifname === target.ifname && r.hook === target.hook && r.netnsInode === netns.inode);
    return there.find((r) => netnsMismatch(r, netns) === null) ?? there[0];
  }

  private newRecord(program: ProgramName, target: HookTarget, netns: NetnsId, mode: AttachOptions['mode'] = 'auto'): AttachmentRecord {
    const resolved = mode === 'auto' ? autoMode(this.n, program) : resolveMode(this.n, mode);
    const pin = path.join(this.root, resolved === 'tcx' ? 'links' : 'filters', recordName(program, target, netns));
    return { program, mode: resolved, hook: target.hook, ifname: target.ifname, netnsInode: netns.inode, netnsCookie: netns.cookie, pin };
  }
}

function inodeOrNull(file: string): number | null {
  try {
    return fs.statSync(file).ino;
  } catch {
    return null;
  }
}

export { describe, isPodProgram, netnsInode, parseRecordName, readNetnsId, type AttachmentRecord, type NetnsId, type PodProgram, type ProgramName };
