/**
 * Adopting attachments left by an earlier daemon, and swapping in a changed
 * BPF object without a gap in coverage.
 *
 * A record (the pin under links/ or filters/) is adopted as it is when the
 * kernel still has it at that hook and runs the same program (same tag, read
 * from /proc/self/fdinfo). Nothing is detached and attached again for that:
 * the frames keep flowing through the instance that was there.
 *
 * A record whose program differs (an upgrade) is swapped: the new program is
 * attached next to the old one first, then the old one is removed. For the
 * moment both run, fixup leaves a frame that is already correct alone and
 * returns "next", so every frame is handled exactly as by either version.
 * tcx: a second link pinned as next_<record>, then the old link detached and
 * the new pin renamed over the record. clsact: a second filter with vmpeer's
 * handle at the neighbouring priority, the record re-pinned to the new
 * program, then the old filter deleted.
 *
 * A record the kernel no longer has at its hook (the interface or its netns
 * was recreated, and the namespace inode reused) is stale: its pin is dropped
 * and the program attached afresh.
 */
import fs from 'node:fs';
import path from 'node:path';
import { TC_HANDLE, TC_PRIORITY, TC_PRIORITY_FIRST, type HookTarget } from '../bpf/link.js';
import type { Program } from '../bpf/program.js';
import { pinned } from '../bpf/fdinfo.js';
import { parseRecordName, type AttachmentRecord } from '../dataplane/dataplane.js';
import { isNativeError } from '../errors.js';
import type { Native } from '../native.js';

export function nextPin(pin: string): string {
  return path.join(path.dirname(pin), `next_${path.basename(pin)}`);
}

/** Replaces the program of a record with `prog`, attaching the new one before removing the old one. */
export function swapProgram(n: Native, record: AttachmentRecord, target: HookTarget, prog: Program, first: boolean): void {
  const tmp = nextPin(record.pin);
  if (record.mode === 'tcx') {
    if (fs.existsSync(tmp)) n.detach({ ...target, mode: 'tcx', pinPath: tmp });
    n.attach({ ...target, progFd: prog.fd, mode: 'tcx', pinPath: tmp, first });
    try {
      n.detach({ ...target, mode: 'tcx', pinPath: record.pin });
    } catch (e) {
      n.detach({ ...target, mode: 'tcx', pinPath: tmp });
      throw e;
    }
    fs.renameSync(tmp, record.pin);
    return;
  }
  const old = pinned(n, record.pin)?.progId;
  const ours = n.listHook(target).filter((e) => e.mode === 'clsact' && e.handle === TC_HANDLE && e.progId === old);
  const base = first ? TC_PRIORITY_FIRST : TC_PRIORITY;
  const current = ours[0]?.priority ?? base;
  const priority = current === base ? base + 1 : base;
  n.attach({ ...target, progFd: prog.fd, mode: 'clsact', handle: TC_HANDLE, priority });
  fs.rmSync(tmp, { force: true });
  n.objPin(prog.fd, tmp);
  fs.renameSync(tmp, record.pin);
  for (const e of ours) n.detach({ ...target, mode: 'clsact', handle: TC_HANDLE, priority: e.priority, progId: old });
}

/**
 * Finishes swaps that a crash cut short: a next_ link next to its record is
 * detached again (the record's program still runs and is checked as usual);
 * a next_ link whose record is gone becomes the record. Returns what it did.
 */
export function recoverSwaps(n: Native, root: string): string[] {
  const done: string[] = [];
  for (const dir of ['links', 'filters']) {
    let names: string[];
    try {
      names = fs.readdirSync(path.join(root, dir));
    } catch {
      continue;
    }
    for (const name of names.filter((x) => x.startsWith('next_'))) {
      const tmp = path.join(root, dir, name);
      const record = path.join(root, dir, name.slice('next_'.length));
      const m = parseRecordName(name.slice('next_'.length));
      try {
        if (dir === 'filters') {
          fs.rmSync(tmp, { force: true });
          done.push(`removed ${tmp}`);
        } else if (fs.existsSync(record) || !m) {
          n.detach({ ifname: m?.ifname ?? 'unknown', hook: m?.hook ?? 'ingress', mode: 'tcx', pinPath: tmp });
          fs.rmSync(tmp, { force: true });
          done.push(`detached ${tmp}`);
        } else {
          fs.renameSync(tmp, record);
          done.push(`renamed ${tmp} to ${record}`);
        }
      } catch (e) {
        if (!isNativeError(e)) throw e;
        fs.rmSync(tmp, { force: true });
        done.push(`removed ${tmp} (${e.code})`);
      }
    }
  }
  return done;
}
