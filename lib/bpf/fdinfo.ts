/** What the kernel says about a BPF fd of this process (/proc/self/fdinfo), and about pins. */
import fs from 'node:fs';
import type { Native } from '../native.js';
import type { Program } from './program.js';

export interface FdInfo {
  progTag?: string;
  progId?: number;
  linkId?: number;
  /** A tcx link's device; 0 once the link is detached (its device gone, or BPF_LINK_DETACH): kernel/bpf/tcx.c tcx_link_fdinfo(). */
  ifindex?: number;
}

/** What the kernel says about a BPF program or link fd of this process. */
export function fdInfo(fd: number): FdInfo {
  const text = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)$`, 'm').exec(text)?.[1];
  const num = (name: string) => {
    const v = field(name);
    return v === undefined ? undefined : Number(v);
  };
  return { progTag: field('prog_tag'), progId: num('prog_id'), linkId: num('link_id'), ifindex: num('ifindex') };
}

/** The tag of a loaded program: the hash of its instructions, equal for equal programs. */
export function programTag(prog: Program): string {
  const tag = fdInfo(prog.fd).progTag;
  if (!tag) throw new Error(`no prog_tag for ${prog.name} in /proc/self/fdinfo`);
  return tag;
}

/** fdInfo() of a new fd that `open` returns (closed again); null when it cannot be opened. */
function infoOf(n: Native, open: () => number): FdInfo | null {
  let fd: number;
  try {
    fd = open();
  } catch {
    return null;
  }
  try {
    return fdInfo(fd);
  } finally {
    n.closeFd(fd);
  }
}

/** The tag of the loaded program with this id; null when it is gone. */
export function tagOfProgId(n: Native, id: number): string | null {
  return infoOf(n, () => n.progFdById(id))?.progTag ?? null;
}

/** The program (and tcx link) a pin holds; null when the pin cannot be opened. */
export function pinned(n: Native, pin: string): FdInfo | null {
  return infoOf(n, () => n.objGet(pin));
}

/** progConstants() by program id: a program's .rodata is frozen at load, so an answer holds while the id lives. */
const constantsById = new Map<number, Record<string, number> | null>();
const CONSTANTS_CACHE = 4096;

/** The `const volatile` globals of the loaded program with this id (OpenOptions.constants); null when it has none or is gone. */
export function programConstants(n: Native, id: number): Record<string, number> | null {
  if (constantsById.has(id)) return constantsById.get(id)!;
  let fd: number;
  try {
    fd = n.progFdById(id);
  } catch {
    return null;
  }
  try {
    const constants = n.progConstants(fd);
    if (constantsById.size >= CONSTANTS_CACHE) constantsById.clear();
    constantsById.set(id, constants);
    return constants;
  } finally {
    n.closeFd(fd);
  }
}
