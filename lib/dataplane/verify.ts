/**
 * A record (the pin under links/ or filters/) checked against the kernel: is
 * vmpeer's attachment still at its hook, and which program runs there? The
 * CLI and the daemon trust a record only after this check: a netns inode is
 * reused by the next namespace, an interface index by the next interface.
 * Where the record and the kernel both give a netns cookie, a namespace that
 * got the record's inode again is told apart before the hook is looked at;
 * without one (a record of an earlier vmpeer, a kernel before 5.14) the hook
 * check alone tells it (the attachment went with the old namespace).
 */
import { TC_HANDLE, type HookTarget } from '../bpf/link.js';
import { pinned, type FdInfo } from '../bpf/fdinfo.js';
import type { HookEntry, Native } from '../native.js';
import { netnsMismatch, type AttachmentRecord, type NetnsId } from './records.js';
import { podOfProgram } from './pod-instances.js';

export type Verdict =
  | { state: 'ok'; tag: string }
  /** Another build's program (its tag), or this build's for another pod (`pod`: the one it serves, 0 shared). */
  | { state: 'outdated'; tag: string; pod?: number }
  | { state: 'stale'; why: string };

/**
 * Why a record is stale (its netns is not `netns`, the netns of `target`, or
 * its attachment is not at its hook), or null when it is there. Changes nothing.
 */
export function recordInKernel(n: Native, record: AttachmentRecord, target: HookTarget, netns: NetnsId): string | null {
  const found = inKernel(n, record, target, netns);
  return 'why' in found ? found.why : null;
}

/** recordInKernel(), with what it read: the pin's info and the hook's entries (one read of each). */
function inKernel(n: Native, record: AttachmentRecord, target: HookTarget, netns: NetnsId): { why: string } | { info: FdInfo; entries: HookEntry[] } {
  const other = netnsMismatch(record, netns);
  if (other) return { why: other };
  const info = pinned(n, record.pin);
  if (!info || info.progId === undefined) return { why: 'its pin cannot be opened' };
  const entries = n.listHook(target);
  if (record.mode === 'tcx') {
    return info.linkId !== undefined && entries.some((e) => e.mode === 'tcx' && e.linkId === info.linkId) ? { info, entries } : { why: 'its tcx link is no longer at the hook' };
  }
  return entries.some((e) => e.mode === 'clsact' && e.handle === TC_HANDLE && e.progId === info.progId) ? { info, entries } : { why: 'its filter is no longer at the hook' };
}

/**
 * Compares a record with the kernel: is it at its hook, running `tag`, and
 * (when `pod` is given) the instance that serves `pod` (pod-instances.ts; 0:
 * the shared one)? Every instance has the same tag, so the tag alone cannot
 * tell them apart. Throws when the hook cannot be listed (no such interface:
 * the caller decides). Extra vmpeer clsact filters at the hook (a swap that
 * was cut short) are removed.
 */
export function verifyRecord(n: Native, record: AttachmentRecord, target: HookTarget, netns: NetnsId, tag: string, pod?: number): Verdict {
  const found = inKernel(n, record, target, netns);
  if ('why' in found) return { state: 'stale', why: found.why };
  const { info, entries } = found;
  if (record.mode === 'clsact') {
    const extras = entries.filter((e) => e.mode === 'clsact' && e.handle === TC_HANDLE && e.progId !== info.progId);
    for (const extra of extras) n.detach({ ...target, mode: 'clsact', handle: TC_HANDLE, priority: extra.priority, progId: extra.progId });
  }
  const current = info.progTag ?? '';
  if (current !== tag) return { state: 'outdated', tag: current };
  if (pod !== undefined && info.progId !== undefined) {
    const serves = podOfProgram(n, info.progId);
    if (serves !== pod) return { state: 'outdated', tag: current, pod: serves };
  }
  return { state: 'ok', tag: current };
}
