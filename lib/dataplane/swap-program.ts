/**
 * Swapping in a changed BPF object without a gap in coverage.
 *
 * A record (the pin under links/ or filters/) is adopted as it is when the
 * kernel still has it at that hook and runs the same program (same tag, read
 * from /proc/self/fdinfo): the frames keep flowing through the instance that
 * was there. A record whose program differs (an upgrade) has its program
 * replaced in place, atomically: a tcx link by BPF_LINK_UPDATE (the link
 * keeps its id and its place at the hook), a clsact filter by
 * BPF_TC_F_REPLACE at vmpeer's own handle and priority. Every frame runs
 * either the old or the new program, never both and never neither. A kill
 * between the clsact replace and the new record leaves a filter without a
 * record, which the next run adopts (its tag is this build's).
 *
 * A record the kernel no longer has at its hook (the interface or its netns
 * was recreated, and the namespace inode reused) is stale: its pin is dropped
 * and the program attached afresh.
 */
import fs from 'node:fs';
import { TC_HANDLE, type HookTarget } from '../bpf/link.js';
import type { Program } from '../bpf/program.js';
import { pinned } from '../bpf/fdinfo.js';
import type { AttachmentRecord } from './records.js';
import { killPoint } from '../kill-point.js';
import type { Native } from '../native.js';

/** Replaces the program of a record with `prog`, in place and atomically (see above). */
export function swapProgram(n: Native, record: AttachmentRecord, target: HookTarget, prog: Program): void {
  const old = pinned(n, record.pin)?.progId;
  if (old === undefined) throw new Error(`${record.pin} cannot be opened`);
  if (record.mode === 'tcx') {
    n.replace({ ...target, mode: 'tcx', pinPath: record.pin, progFd: prog.fd, oldProgId: old });
    return;
  }
  const entry = n.listHook(target).find((e) => e.mode === 'clsact' && e.handle === TC_HANDLE && e.progId === old);
  if (!entry?.priority) throw new Error(`vmpeer's filter for ${record.pin} is no longer at ${target.ifname}`);
  n.replace({ ...target, mode: 'clsact', handle: TC_HANDLE, priority: entry.priority, progFd: prog.fd, oldProgId: old });
  killPoint('replaced'); // the new program runs, the record still names the old one
  fs.rmSync(record.pin, { force: true });
  n.objPin(prog.fd, record.pin);
}
