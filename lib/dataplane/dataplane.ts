/**
 * The vmpeer dataplane on this node: the shipped BPF object, its endpoint
 * table and counters, and the attachments vmpeer made. Everything that must
 * outlive a process lives under one bpffs directory:
 *
 *   <root>/maps/{endpoints,stats,hash_key}   the shared maps (maps/layout: their stamp)
 *   <root>/links/<record>                    tcx links
 *   <root>/filters/<record>                  clsact filters (the pinned program is the record)
 *
 * so the CLI and the daemon see the same state, and stopping either never
 * interrupts traffic.
 *
 * An open Dataplane holds the node lock (root.ts): one writer at a time, for
 * the whole of its transaction (a CLI command) or its life (the daemon).
 * Dataplane.view() reads the same state without the lock and changes nothing.
 * The attachments and their records are attachments.ts's.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native as loadNative, packageRoot, type Native } from '../native.js';
import { BpfObject } from '../bpf/object.js';
import type { BpfMap } from '../bpf/map.js';
import type { Program } from '../bpf/program.js';
import { describe, kernelFeatures } from '../bpf/link.js';
import { pinned, programTag } from '../bpf/fdinfo.js';
import { KernelUnsupportedError } from '../errors.js';
import { checkRoot, lockedError, lockRoot, pruneRoot, ROOT_ENTRIES, tryLockRoot } from './root.js';
import { mismatchedPin, openPinnedMaps } from './pinned-maps.js';
import { isPodProgram, netnsInode, parseRecordName, readNetnsId, type AttachmentRecord, type NetnsId, type PodProgram, type ProgramName } from './records.js';
import { decodeStats, encodeStatKey, type Endpoint, type Stats } from './codec.js';
import { EndpointTable, type WithCounters } from './endpoint-table.js';
import type { EndpointRows } from './endpoint-rows.js';
import { STAT_NAMES } from './layout.js';
import { pinStamp, settleLayout, STAMP_MAP, type Migration } from './migrate.js';
import { PodInstances } from './pod-instances.js';
import { Attachments } from './attachments.js';

export const DEFAULT_BPFFS_ROOT = '/sys/fs/bpf/vmpeer';
export const OBJECT_PATH = path.join(packageRoot, 'dist', 'bpf', 'vmpeer.bpf.o');
/** How long a CLI command waits for another vmpeer process to finish its change. */
const CLI_LOCK_WAIT_MS = 10_000;

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
  /** Pods' own instances of the pod programs; null for a view(). */
  private readonly instances: PodInstances | null;
  private readonly links: Attachments;

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
    this.links = new Attachments({
      n,
      root,
      writable: () => this.writable(),
      has: (name) => this.obj?.programs.has(name) ?? false,
      program: (name, pod) => this.program(name, pod),
      instances: () => this.instances!,
    });
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

  /** The addon this dataplane works through. */
  get native(): Native {
    return this.n;
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

  /** Whether `pod`'s own instance of the pod programs is loaded (pod-instances.ts). */
  podInstanceLoaded(pod: number): boolean {
    return this.instances?.isLoaded(pod) ?? false;
  }

  /** Loads `pod`'s own instance now (a verifier run per program), kept until the returned function is called. */
  preloadPodInstance(pod: number): () => void {
    this.writable();
    return this.instances!.preload(pod);
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

  /** The endpoints' counters and what labels them, read in place from one batch read (for /metrics). */
  endpointRows(): EndpointRows {
    return this.table.rows();
  }

  stats(): Stats {
    const map = this.maps.get('stats')!;
    return decodeStats(STAT_NAMES.map((_, slot) => map.lookup(encodeStatKey(slot)) ?? []));
  }

  // ---- attachments (attachments.ts)

  attach(...a: Parameters<Attachments['attach']>): ReturnType<Attachments['attach']> {
    return this.links.attach(...a);
  }

  upgradeRecord(...a: Parameters<Attachments['upgradeRecord']>): AttachmentRecord {
    return this.links.upgradeRecord(...a);
  }

  attachAsync(...a: Parameters<Attachments['attachAsync']>): ReturnType<Attachments['attachAsync']> {
    return this.links.attachAsync(...a);
  }

  detach(...a: Parameters<Attachments['detach']>): boolean {
    return this.links.detach(...a);
  }

  removeRecordIfSame(...a: Parameters<Attachments['removeRecordIfSame']>): boolean {
    return this.links.removeRecordIfSame(...a);
  }

  forgetRecord(...a: Parameters<Attachments['forgetRecord']>): void {
    this.links.forgetRecord(...a);
  }

  removeRecord(...a: Parameters<Attachments['removeRecord']>): void {
    this.links.removeRecord(...a);
  }

  /** vmpeer's attachment records: all, or those of the netns with this inode. */
  attachments(netnsInode?: number): AttachmentRecord[] {
    return this.links.attachments(netnsInode);
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
