/**
 * vmpeer's attachments at the hooks and their records (records.ts): attach
 * (idempotent, verified against the kernel, adopting what a killed vmpeer
 * left), detach, and the records' upkeep. Part of a Dataplane, which holds
 * the node lock while any of this changes the kernel or the pins.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { AttachMode, Native } from '../native.js';
import type { Program } from '../bpf/program.js';
import { attach, attachAsync, detach, resolveMode, TC_HANDLE, TC_PRIORITY, TC_PRIORITY_FIRST, type HookTarget } from '../bpf/link.js';
import { pinned, programTag, tagOfProgId } from '../bpf/fdinfo.js';
import { AlreadyAttachedError } from '../errors.js';
import { verifyRecord } from './verify.js';
import { isPodProgram, listRecords, netnsInode, netnsMismatch, readNetnsId, recordName, type AttachmentRecord, type NetnsId, type ProgramName } from './records.js';
import type { PodInstances } from './pod-instances.js';
import { swapProgram } from './swap-program.js';

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

/** The mode `program` attaches with when asked for `mode`. */
export function modeFor(n: Native, program: ProgramName, mode: 'auto' | AttachMode = 'auto'): AttachMode {
  return mode === 'auto' ? autoMode(n, program) : resolveMode(n, mode);
}

export interface AttachOptions {
  mode?: 'auto' | AttachMode;
  first?: boolean;
  /** The pod whose own instance of a pod program to attach (pod-instances.ts); 0 or absent: the shared one. */
  pod?: number;
}

/** What the attachments need of their Dataplane. */
export interface AttachmentsOf {
  readonly n: Native;
  readonly root: string;
  /** Throws unless the Dataplane may change the state (not a view, not closed). */
  writable(): void;
  /** Whether the loaded object has this program. */
  has(name: ProgramName): boolean;
  program(name: ProgramName, pod?: number): Program;
  instances(): PodInstances;
}

export class Attachments {
  /** Attachments under way (attachAsync), by their record's pin. */
  private readonly attaching = new Map<string, Promise<unknown>>();

  constructor(private readonly d: AttachmentsOf) {}

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
      const verdict = verifyRecord(this.d.n, existing, target, netns, programTag(this.d.program(program)), isPodProgram(program) ? pod : undefined);
      if (verdict.state === 'ok') return { record: this.upgradeRecord(existing, target, netns), created: false };
      if (verdict.state === 'outdated') {
        // another build's program, or another pod's instance (the bypass turned on or off): replaced in place
        swapProgram(this.d.n, existing, target, this.d.program(program, pod));
        return { record: this.upgradeRecord(existing, target, netns), created: false };
      }
      this.removeRecord(existing, target.netns);
    }
    const record = this.newRecord(program, target, netns, options.mode);
    try {
      attach(this.d.n, this.d.program(program, options.pod), target, { ...options, mode: record.mode, pinPath: record.pin });
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
    this.d.writable();
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
    const netns = await readNetnsId(this.d.n, target.netns);
    const existing = this.findRecord(program, target, netns);
    if (existing) return { record: existing, created: false };
    // the record is named before the attach: the netns may be gone when it ends
    const record = this.newRecord(program, target, netns, options.mode);
    const underway = this.attaching.get(record.pin);
    if (underway) {
      await underway.catch(() => undefined);
      return this.attachAsync(program, target, options);
    }
    const prog = this.d.program(program, options.pod);
    const release = this.d.instances().hold(options.pod ?? 0);
    const attaching = attachAsync(this.d.n, prog, target, { ...options, mode: record.mode, pinPath: record.pin });
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
      if (verifyRecord(this.d.n, record, target, netns, programTag(prog), pod).state === 'outdated') swapProgram(this.d.n, record, target, this.d.program(program, pod));
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
    const entry = this.d.n.listHook(target).find((x) => x.mode === 'clsact' && x.handle === TC_HANDLE && x.priority === priority);
    if (!entry?.progId) return null;
    const theirs = this.programWithTag(tagOfProgId(this.d.n, entry.progId));
    if (theirs === undefined) return null;
    if (theirs === program) {
      const fd = this.d.n.progFdById(entry.progId);
      try {
        this.d.n.objPin(fd, record.pin);
      } finally {
        this.d.n.closeFd(fd);
      }
      return 'adopted';
    }
    this.d.n.detach({ ...target, mode: 'clsact', handle: TC_HANDLE, priority, progId: entry.progId });
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
    const id = pinned(this.d.n, record.pin)?.progId;
    const ours = id !== undefined && (id === this.d.program(record.program).id || (isPodProgram(record.program) && this.d.instances().has(record.program, id)));
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
    this.d.writable();
    try {
      if (record.mode === 'tcx') this.d.n.detach({ ifname: record.ifname, hook: record.hook, mode: 'tcx', pinPath: record.pin });
      else if (netns !== null) detach(this.d.n, { netns, ifname: record.ifname, hook: record.hook }, { mode: 'clsact', pinPath: record.pin });
    } catch {
      // the attachment is gone already
    }
    fs.rmSync(record.pin, { force: true });
  }

  /** Removes an attachment by its record; when the netns is gone, only its pin is left to remove. */
  removeRecord(record: AttachmentRecord, netns?: string): void {
    if (!netns || fs.existsSync(netns)) {
      detach(this.d.n, { netns, ifname: record.ifname, hook: record.hook }, { mode: record.mode, pinPath: record.pin });
    }
    fs.rmSync(record.pin, { force: true });
  }

  /** Every record, or those of one netns inode. */
  attachments(netnsInode?: number): AttachmentRecord[] {
    return listRecords(this.d.root, netnsInode);
  }

  /** The record of `program` at a hook in a netns with `netns`'s inode: one of that very netns first. */
  private findRecord(program: ProgramName, target: HookTarget, netns: NetnsId): AttachmentRecord | undefined {
    const there = this.attachments(netns.inode).filter((r) => r.program === program && r.ifname === target.ifname && r.hook === target.hook && r.netnsInode === netns.inode);
    return there.find((r) => netnsMismatch(r, netns) === null) ?? there[0];
  }

  private newRecord(program: ProgramName, target: HookTarget, netns: NetnsId, mode: AttachOptions['mode'] = 'auto'): AttachmentRecord {
    const resolved = modeFor(this.d.n, program, mode);
    const pin = path.join(this.d.root, resolved === 'tcx' ? 'links' : 'filters', recordName(program, target, netns));
    return { program, mode: resolved, hook: target.hook, ifname: target.ifname, netnsInode: netns.inode, netnsCookie: netns.cookie, pin };
  }

  private tagCache: Map<string, ProgramName> | null = null;

  /** Which of this object's programs has this tag. */
  private programWithTag(tag: string | null): ProgramName | undefined {
    this.tagCache ??= new Map(
      (['fixup', 'from_guest', 'redirect'] as const).flatMap((p) => (this.d.has(p) ? [[programTag(this.d.program(p)), p] as const] : [])),
    );
    return tag === null ? undefined : this.tagCache.get(tag);
  }
}
