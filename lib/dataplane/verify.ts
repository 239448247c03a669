/**
 * A record (the pin under links/ or filters/) checked against the kernel: is
 * vmpeer's attachment still at its hook, and which program runs there? The
 * CLI and the daemon trust a record only after this check: a netns inode is
 * reused by the next namespace, an interface index by the next interface.
 */
import { TC_HANDLE, type HookTarget } from '../bpf/link.js';
import { pinned } from '../bpf/fdinfo.js';
import type { Native } from '../native.js';
import type { AttachmentRecord } from './dataplane.js';

export type Verdict =
  | { state: 'ok'; tag: string }
  | { state: 'outdated'; tag: string }
  | { state: 'stale'; why: string };

/**
 * Compares a record with the kernel: is it at its hook, running `tag`?
 * Throws when the hook cannot be listed (no such interface: the caller
 * decides). Extra vmpeer clsact filters at the hook (a swap that was cut
 * short) are removed.
 */
export function verifyRecord(n: Native, record: AttachmentRecord, target: HookTarget, tag: string): Verdict {
  const info = pinned(n, record.pin);
  if (!info || info.progId === undefined) return { state: 'stale', why: 'its pin cannot be opened' };
  const entries = n.listHook(target);
  if (record.mode === 'tcx') {
    if (info.linkId === undefined || !entries.some((e) => e.mode === 'tcx' && e.linkId === info.linkId)) {
      return { state: 'stale', why: 'its tcx link is no longer at the hook' };
    }
  } else {
    const ours = entries.filter((e) => e.mode === 'clsact' && e.handle === TC_HANDLE);
    if (!ours.some((e) => e.progId === info.progId)) return { state: 'stale', why: 'its filter is no longer at the hook' };
    for (const extra of ours.filter((e) => e.progId !== info.progId)) {
      n.detach({ ...target, mode: 'clsact', handle: TC_HANDLE, priority: extra.priority, progId: extra.progId });
    }
  }
  const current = info.progTag ?? '';
  return current === tag ? { state: 'ok', tag: current } : { state: 'outdated', tag: current };
}
