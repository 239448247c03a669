/**
 * Attachment records: one pin per attachment under links/ (tcx links) or
 * filters/ (the pinned program of a clsact filter), named after what it
 * attaches where, so that every vmpeer process finds it again.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { HookTarget } from '../bpf/link.js';
import { UsageError } from '../errors.js';
import type { AttachMode, Hook } from '../native.js';

/** The programs attached inside VM pods; `redirect` goes on host interfaces. */
export type PodProgram = 'fixup' | 'from_guest';
export type ProgramName = PodProgram | 'redirect';

export const isPodProgram = (name: string): name is PodProgram => name === 'fixup' || name === 'from_guest';

export interface AttachmentRecord {
  program: ProgramName;
  mode: AttachMode;
  hook: Hook;
  ifname: string;
  netnsInode: number;
  pin: string;
}

/** The records under a state root (names vmpeer did not make are not records, and are left alone). */
export function listRecords(root: string): AttachmentRecord[] {
  return (['links', 'filters'] as const).flatMap((dir) =>
    readdirOrNone(path.join(root, dir)).flatMap((name) => {
      const r = parseRecordName(name);
      return r ? [{ ...r, mode: dir === 'links' ? ('tcx' as const) : ('clsact' as const), pin: path.join(root, dir, name) }] : [];
    }),
  );
}

function readdirOrNone(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
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
export function recordName(program: ProgramName, target: HookTarget, netnsInode: number): string {
  const ifname = encodeURIComponent(target.ifname).replace(/\./g, '%2E');
  return `${program}_${target.hook}_ns${netnsInode}_${ifname}`;
}

export function parseRecordName(name: string): Omit<AttachmentRecord, 'mode' | 'pin'> | null {
  const m = /^(fixup|redirect|from_guest)_(ingress|egress)_ns(\d+)_(.+)$/.exec(name);
  if (!m) return null;
  return { program: m[1] as ProgramName, hook: m[2] as Hook, netnsInode: Number(m[3]), ifname: decodeURIComponent(m[4]!) };
}

