/**
 * Attachment records: one pin per attachment under links/ (tcx links) or
 * filters/ (the pinned program of a clsact filter), named after what it
 * attaches where, so that every vmpeer process finds it again:
 *
 *   <program>_<hook>_ns<inode>c<cookie>_<ifname>
 *
 * The name is the record's metadata, written in one step with the pin. The
 * netns is named by its nsfs inode, which the next namespace may get again
 * once the pod is gone, and by its netns cookie, which no other namespace
 * gets while the kernel runs. A record of an earlier vmpeer (or made on a
 * kernel without netns cookies) has no `c<cookie>`: it is read and verified
 * by its inode and the kernel's hook alone, and renamed with the cookie the
 * next time a vmpeer process holding the node lock writes or verifies it.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { HookTarget } from '../bpf/link.js';
import { UsageError } from '../errors.js';
import type { AttachMode, Hook, Native } from '../native.js';

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
  /** null: a record without a cookie (an earlier vmpeer's, or from a kernel before 5.14). */
  netnsCookie: bigint | null;
  pin: string;
}

/**
 * What identifies a network namespace: its nsfs inode (reused) and its
 * cookie (never reused; null on kernels without SO_NETNS_COOKIE, < 5.14).
 */
export interface NetnsId {
  inode: number;
  cookie: bigint | null;
}

/** The records under a state root (names vmpeer did not make are not records, and are left alone); those of one netns inode. */
export function listRecords(root: string, netnsInode?: number): AttachmentRecord[] {
  // `_ns<inode>` then `c<cookie>` or `_`: only those names are parsed (a node has one record per pod)
  const tag = netnsInode === undefined ? null : `_ns${netnsInode}`;
  const ofNetns = (name: string) => {
    if (tag === null) return true;
    const i = name.indexOf(tag);
    const next = i < 0 ? '' : name[i + tag.length];
    return next === 'c' || next === '_';
  };
  // a node of 1000 VM pods has 2000 records, listed by every full resync: no path.join(), spread
  // or URI decoding per name where plain concatenation does (about 10 µs a record before, 20 ms)
  const out: AttachmentRecord[] = [];
  for (const dir of ['links', 'filters'] as const) {
    const at = path.join(root, dir);
    const mode = dir === 'links' ? ('tcx' as const) : ('clsact' as const);
    for (const name of readdirOrNone(at)) {
      if (!ofNetns(name)) continue;
      const r = parseRecordName(name);
      if (r && (netnsInode === undefined || r.netnsInode === netnsInode)) out.push({ program: r.program, mode, hook: r.hook, ifname: r.ifname, netnsInode: r.netnsInode, netnsCookie: r.netnsCookie, pin: `${at}/${name}` });
    }
  }
  return out;
}

function readdirOrNone(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/**
 * The inode and the cookie of a netns (absent: this process's), both of the
 * namespace one open fd holds. The cookie is read off the JS thread.
 * VMPEER_TEST_NETNS_COOKIE=absent makes it null, as on a kernel before 5.14
 * (a test's way to take that path on any kernel).
 */
export async function readNetnsId(n: Native, netns?: string): Promise<NetnsId> {
  let fd: number;
  try {
    fd = fs.openSync(netns ?? '/proc/self/ns/net', 'r');
  } catch {
    throw new UsageError(`network namespace not found: ${netns}`);
  }
  try {
    const inode = fs.fstatSync(fd).ino;
    return { inode, cookie: process.env.VMPEER_TEST_NETNS_COOKIE === 'absent' ? null : await n.netnsCookie(fd) };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Why a record does not belong to the netns `id`, or null when it does as
 * far as can be told: a cookie is compared only where both have one (else
 * the hook check of verify.ts tells a namespace that reused the inode).
 */
export function netnsMismatch(record: AttachmentRecord, id: NetnsId): string | null {
  if (record.netnsInode !== id.inode) return `its network namespace (inode ${record.netnsInode}) is gone`;
  if (record.netnsCookie !== null && id.cookie !== null && record.netnsCookie !== id.cookie) {
    return `its network namespace is gone: inode ${id.inode} now belongs to another one (netns cookie ${id.cookie}, the record's ${record.netnsCookie})`;
  }
  return null;
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
export function recordName(program: ProgramName, target: HookTarget, netns: NetnsId): string {
  const ifname = encodeURIComponent(target.ifname).replace(/\./g, '%2E');
  return `${program}_${target.hook}_ns${netns.inode}${netns.cookie === null ? '' : `c${netns.cookie}`}_${ifname}`;
}

export function parseRecordName(name: string): Omit<AttachmentRecord, 'mode' | 'pin'> | null {
  const m = /^(fixup|redirect|from_guest)_(ingress|egress)_ns(\d+)(?:c(\d+))?_(.+)$/.exec(name);
  if (!m) return null;
  return {
    program: m[1] as ProgramName,
    hook: m[2] as Hook,
    netnsInode: Number(m[3]),
    netnsCookie: m[4] === undefined ? null : BigInt(m[4]),
    ifname: m[5]!.includes('%') ? decodeURIComponent(m[5]!) : m[5]!,
  };
}

