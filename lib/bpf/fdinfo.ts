/** What the kernel says about a BPF fd of this process (/proc/self/fdinfo), and about pins. */
import fs from 'node:fs';
import type { Native } from '../native.js';
import type { Program } from './program.js';

export interface FdInfo {
  progTag?: string;
  progId?: number;
  linkId?: number;
}

/** What the kernel says about a BPF program or link fd of this process. */
export function fdInfo(fd: number): FdInfo {
  const text = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)$`, 'm').exec(text)?.[1];
  const num = (name: string) => {
    const v = field(name);
    return v === undefined ? undefined : Number(v);
  };
  return { progTag: field('prog_tag'), progId: num('prog_id'), linkId: num('link_id') };
}

/** The tag of a loaded program: the hash of its instructions, equal for equal programs. */
export function programTag(prog: Program): string {
  const tag = fdInfo(prog.fd).progTag;
  if (!tag) throw new Error(`no prog_tag for ${prog.name} in /proc/self/fdinfo`);
  return tag;
}

/** The tag of the loaded program with this id; null when it is gone. */
export function tagOfProgId(n: Native, id: number): string | null {
  let fd: number;
  try {
    fd = n.progFdById(id);
  } catch {
    return null;
  }
  try {
    return fdInfo(fd).progTag ?? null;
  } finally {
    n.closeFd(fd);
  }
}

/** The program (and tcx link) a pin holds; null when the pin cannot be opened. */
export function pinned(n: Native, pin: string): FdInfo | null {
  let fd: number;
  try {
    fd = n.objGet(pin);
  } catch {
    return null;
  }
  try {
    return fdInfo(fd);
  } finally {
    n.closeFd(fd);
  }
}
