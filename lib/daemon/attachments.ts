/**
 * Attachment sync of a pod: a program at a port is adopted when the kernel
 * already runs it there (its record verified), swapped in place when the
 * object changed, attached when missing (its stale record dropped first),
 * and detached when the port is no longer the pod's.
 *
 * Once verified, an attachment is trusted until something says otherwise:
 * a clsact filter removed sends a tc event to the pod's monitor (which asks
 * for a verifying check: watchers.ts); a tcx link detached sends nothing, so
 * it is remembered as its link and program ids, and the periodic resync
 * tells from its pin alone whether it is still that link, attached
 * (stillAsVerified()).
 */
import { pinned } from '../bpf/fdinfo.js';
import type { HookTarget } from '../bpf/link.js';
import { isPodProgram, readNetnsId, type AttachmentRecord, type NetnsId, type PodProgram } from '../dataplane/dataplane.js';
import { prepareGuestHooksAsync } from '../dataplane/guest-hooks.js';
import { swapProgram } from '../dataplane/swap-program.js';
import { verifyRecord } from '../dataplane/verify.js';
import type { VmPort } from '../discovery/vm-pod.js';
import type { ProgramSyncDeps } from './changes.js';
import type { CheckRequest, Pod } from './pod.js';
import type { Slots } from './slots.js';

export interface AttachmentSyncDeps extends ProgramSyncDeps {
  /** Attaching, each on its own native thread: a bounded number at once. */
  attachSlots: Slots<Pod>;
  stopping: () => boolean;
}

export class AttachmentSync {
  /** Attachments found in place (verified, not attached again) since the start. */
  adopted = 0;

  constructor(private readonly d: AttachmentSyncDeps) {}

  /** `program` attached at `ifname` in the pod: adopted, upgraded or attached; `scope`: the pod whose own instance it must be (pod-instances.ts), 0 the shared one. */
  async ensureAttached(program: PodProgram, pod: Pod, port: VmPort, ifname: string, records: AttachmentRecord[], request: CheckRequest, scope: number): Promise<void> {
    const { dp, changes, tags } = this.d;
    const { reason, verify } = request;
    let record = records.find((r) => r.program === program && r.ifname === ifname);
    const target: HookTarget = { netns: pod.path, ifname, hook: 'ingress' };
    const key = `${program}@${ifname}`;
    const generation = `${port.uplink.ifindex}/${port.hostVeth.ifindex}/${port.guestPort?.ifindex ?? 0}/${scope}`;
    const where = { program, netns: pod.path, ifname };
    if (record) {
      const known = pod.verified.get(key)?.generation;
      if (!verify && known === generation) return;
      const netns = await readNetnsId(this.d.native, pod.path).catch((): NetnsId => ({ inode: pod.inode, cookie: null }));
      const v = verifyRecord(this.d.native, record, target, netns, tags[program], scope);
      if (v.state !== 'stale') record = changes.upgradeRecord(record, target, netns);
      if (v.state === 'ok') {
        if (known === undefined) {
          this.adopted++;
          this.d.log.info({ ...where, mode: record.mode, tag: v.tag }, `adopted ${program} (already attached, same program)`);
        }
        this.verified(pod, key, generation, record);
        return;
      }
      if (v.state === 'outdated') {
        swapProgram(this.d.native, record, target, dp.program(program, scope));
        this.verified(pod, key, generation, record);
        changes.change('upgrade', { ...where, mode: record.mode, from: v.tag, to: tags[program] }, `upgraded ${program}`, 'the attached program differs from this object (replaced in place)');
        return;
      }
      changes.dropRecord(record, pod.path);
      changes.change('drop_stale', { ...where, pin: record.pin }, 'dropped a stale attachment record', v.why);
    }
    const attaching = await this.d.attachSlots.acquire(pod, request.background);
    let created: AttachmentRecord;
    try {
      if (pod.gone || this.d.stopping()) return;
      // covered from now on: the guest ports' tc hooks are made with the uplink's (guest-hooks.ts)
      if (program === 'fixup') await prepareGuestHooksAsync(this.d.native, pod.path, port.guestPorts, this.d.cfg.mode);
      ({ record: created } = await dp.attachAsync(program, target, { mode: this.d.cfg.mode, pod: scope }));
    } finally {
      attaching();
    }
    if (pod.gone) {
      // removed while the attach was under way: what it made goes too
      changes.dropRecord(created, pod.path);
      return;
    }
    this.verified(pod, key, generation, created);
    changes.recordAdded(created);
    changes.change('attach', { ...where, mode: created.mode, guestIp: port.guestIp }, `attached ${program}`, record ? 'replacing a stale record' : reason === 'start' ? 'VM pod found at start' : `VM pod found (${reason})`);
  }

  /** The record is what the kernel has at its hook (just verified or made): remembered for `generation` of the port. */
  private verified(pod: Pod, key: string, generation: string, record: AttachmentRecord): void {
    const info = record.mode === 'tcx' ? pinned(this.d.native, record.pin) : null;
    const link = info?.linkId !== undefined && info.progId !== undefined && info.ifindex ? `${info.linkId}/${info.progId}` : null;
    pod.verified.set(key, { generation, link });
  }

  /**
   * Whether the pod's attachments are still those last verified, without
   * looking into the pod (for a pod whose monitor runs): each pod program's
   * record is there and was verified; a clsact filter counts as there (its
   * removal is an event), a tcx link must still be attached (fdinfo's
   * ifindex: 0 once detached, by its device going or by BPF_LINK_DETACH)
   * and run the same program, read from its pin. Changes nothing; false
   * asks for a full check of the pod.
   */
  stillAsVerified(pod: Pod): boolean {
    const records = this.d.changes.recordsOf(pod.inode).filter((r) => isPodProgram(r.program));
    if (records.length !== pod.verified.size) return false;
    for (const r of records) {
      const seen = pod.verified.get(`${r.program}@${r.ifname}`);
      if (!seen) return false;
      if (r.mode === 'clsact') continue;
      const info = seen.link === null ? null : pinned(this.d.native, r.pin);
      if (!info?.ifindex || `${info.linkId}/${info.progId}` !== seen.link) return false;
    }
    return true;
  }

  /** Detaches the pod's programs (but those on `keepPorts`). */
  forget(pod: Pod, reason: string, keepPorts: string[] = []): void {
    for (const r of this.d.changes.recordsOf(pod.inode)) {
      if (!isPodProgram(r.program) || keepPorts.includes(r.ifname)) continue;
      this.dropPodRecord(pod, r, reason);
    }
  }

  dropPodRecord(pod: Pod, r: AttachmentRecord, reason: string): void {
    this.d.changes.dropRecord(r, pod.path);
    pod.verified.delete(`${r.program}@${r.ifname}`);
    this.d.changes.change('detach', { program: r.program, netns: pod.path, ifname: r.ifname, mode: r.mode }, `detached ${r.program}`, reason);
  }
}
