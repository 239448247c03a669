/**
 * The daemon's changes to vmpeer's state, as the log and the metrics see
 * them: each change is one log line with its reason and counts in
 * vmpeer_changes_total. Also what every collaborator needs to remove an
 * attachment record, and the records themselves, read once per full resync.
 */
import fs from 'node:fs';
import type { HookTarget } from '../bpf/link.js';
import type { AttachmentRecord, Dataplane, NetnsId, ProgramName } from '../dataplane/dataplane.js';
import type { Native } from '../native.js';
import type { DaemonConfig } from './config.js';
import type { Logger } from './log.js';
import type { DaemonMetrics } from './metrics.js';
import { inodeOf } from './pod.js';

export interface ChangesDeps {
  dp: Dataplane;
  native: Native;
  log: Logger;
  /** The daemon's own netns (the node's): records there are the host interfaces'. */
  selfInode: number;
  metrics: () => DaemonMetrics | null;
}

/** What a part that attaches vmpeer's programs is handed. */
export interface ProgramSyncDeps {
  cfg: DaemonConfig;
  dp: Dataplane;
  native: Native;
  log: Logger;
  changes: Changes;
  /** The tags of this object's programs: an attached program with another tag is outdated. */
  tags: Record<ProgramName, string>;
}

/**
 * Changes that leave the attachment records as they were (endpoints; a
 * program swapped in place keeps its pin: upgrade), or that update the
 * reading of them themselves (attach: recordAdded; detach and drop_stale go
 * through dropRecord). Any other change makes the next records() read them
 * again: at 1000 VM pods a listing is 2000 pins, 15-30 ms of the JS thread,
 * which a new pod's check (it upgrades fixup to the pod's own instance) paid
 * right before its guest's endpoint was written.
 */
const KEEPS_RECORDS = new Set(['endpoint_add', 'endpoint_update', 'endpoint_delete', 'attach', 'upgrade', 'detach', 'drop_stale']);

export class Changes {
  /** The records as this process left them; null: read them again. */
  private known: AttachmentRecord[] | null = null;

  constructor(private readonly d: ChangesDeps) {}

  change(action: string, fields: Record<string, unknown>, msg: string, reason: string): void {
    // an endpoint is no record; an attachment made by a pod's check was added to the records (recordAdded)
    if (!KEEPS_RECORDS.has(action)) this.known = null;
    this.d.metrics()?.changes.inc({ action });
    this.d.log.info({ change: action, ...fields, reason }, msg);
  }

  /**
   * The attachment records. Reading them is listing a directory of one pin
   * per attachment (two per VM pod: 2000 names at 1000 pods, 15-30 ms), and
   * every check of a pod wants its own: they are read once, and each
   * attachment this process makes or record it drops is added to or taken
   * from that reading (the daemon holds the node lock: no other vmpeer
   * writes them). Each full resync reads them again (invalidate()), and so
   * does the first call after any other change.
   */
  records(): AttachmentRecord[] {
    return (this.known ??= this.d.dp.attachments());
  }

  /** The records of one pod's netns. */
  recordsOf(netnsInode: number): AttachmentRecord[] {
    return this.records().filter((r) => r.netnsInode === netnsInode);
  }

  /** A record this process just made (an attachment): the reading has it too. */
  recordAdded(record: AttachmentRecord): void {
    this.known?.push(record);
  }

  /** The records are read again at the next records(). */
  invalidate(): void {
    this.known = null;
  }

  /** A verified record without a cookie gets its netns's (Dataplane.upgradeRecord). */
  upgradeRecord(record: AttachmentRecord, target: HookTarget, netns: NetnsId): AttachmentRecord {
    const upgraded = this.d.dp.upgradeRecord(record, target, netns);
    if (upgraded.pin !== record.pin && this.known) {
      this.known = this.known.map((r) => (r.pin === record.pin ? upgraded : r));
    }
    return upgraded;
  }

  /**
   * Removes one attachment record. tcx: the link is detached through its pin,
   * wherever it is. clsact: the filter is removed when the record's netns is
   * still at `podPath`; otherwise only the record goes (the filter went, or
   * goes, with its interface).
   */
  dropRecord(r: AttachmentRecord, podPath: string | null): void {
    if (this.known) this.known = this.known.filter((x) => x.pin !== r.pin);
    try {
      if (r.netnsInode === this.d.selfInode) {
        this.d.dp.removeRecord(r, undefined);
      } else if (r.mode === 'tcx') {
        this.d.native.detach({ ifname: r.ifname, hook: r.hook, mode: 'tcx', pinPath: r.pin });
      } else if (podPath && inodeOf(podPath) === r.netnsInode) {
        this.d.dp.removeRecord(r, podPath);
      }
    } catch (e) {
      this.d.log.debug({ pin: r.pin, err: (e as Error).message }, 'detaching failed; removing the record');
    }
    fs.rmSync(r.pin, { force: true });
  }
}
