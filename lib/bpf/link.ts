/**
 * Attaching programs to tc hooks, in the spirit of aya's SchedClassifier:
 * one call that uses tcx links where the kernel has them (Linux >= 6.6) and a
 * clsact filter otherwise, with an explicit override.
 *
 * Hook ownership: vmpeer removes only what it attached. Its clsact filters
 * use their own handle and priority; its tcx links are its own objects. A
 * foreign filter or link at the same hook is never removed, replaced or
 * reordered.
 */
import fs from 'node:fs';
import type { AttachMode, Attachment, AttachRequest, HookTarget, KernelFeatures, Native, NativeProgram } from '../native.js';
import { AlreadyAttachedError, fromNative, NoSuchInterfaceError, isNativeError, KernelUnsupportedError } from '../errors.js';
import { killPoint } from '../kill-point.js';

/** A tc hook: the interface and direction, in a netns (native.ts defines it; the one definition). */
export type { HookTarget };

/** What attaching needs of a program (a Program, or the addon's record of one). */
type Attachable = Pick<NativeProgram, 'name' | 'fd'>;

export interface AttachOptions {
  mode?: 'auto' | AttachMode;
  /**
   * Makes the attachment outlive the process: tcx pins the link here; clsact
   * filters outlive it anyway, and the program is pinned here as the record
   * that vmpeer attached it.
   */
  pinPath?: string;
  /** Run before the programs already at the hook instead of after them. */
  first?: boolean;
}

/** vmpeer's clsact filter handle ("vm") and priorities. */
export const TC_HANDLE = 0x766d;
export const TC_PRIORITY = 0x7600;
export const TC_PRIORITY_FIRST = 1;

export function describe(target: HookTarget): string {
  return `${target.ifname} (${target.hook})${target.netns ? ` in ${target.netns}` : ''}`;
}

const featuresOf = new WeakMap<Native, KernelFeatures>();

/**
 * What the kernel can do, asked once per addon. Asking costs more than it
 * seems: probing tcx is a BPF_PROG_QUERY, which waits for the rtnl lock, and
 * every tcx attach under way holds that lock across an RCU grace period.
 */
export function kernelFeatures(n: Native): KernelFeatures {
  let features = featuresOf.get(n);
  if (!features) {
    features = n.kernelFeatures();
    featuresOf.set(n, features);
  }
  return features;
}

export function resolveMode(n: Native, mode: AttachOptions['mode'] = 'auto'): AttachMode {
  const tcx = kernelFeatures(n).tcx;
  if (mode === 'auto') return tcx ? 'tcx' : 'clsact';
  if (mode === 'tcx' && !tcx) throw new KernelUnsupportedError('this kernel has no tcx (Linux 6.6 or later); use --mode clsact');
  return mode;
}

export class Link {
  constructor(
    private readonly n: Native,
    readonly target: HookTarget,
    readonly attachment: Attachment,
    readonly pinPath?: string,
  ) {}

  get mode(): AttachMode {
    return this.attachment.mode;
  }

  /** Removes this attachment. Returns false when it was already gone. */
  detach(): boolean {
    const { mode, linkFd, progId } = this.attachment;
    if (mode === 'tcx' && linkFd !== undefined) {
      this.n.closeFd(linkFd);
      return true;
    }
    return detach(this.n, this.target, { mode, pinPath: this.pinPath, progId });
  }
}

export function attach(n: Native, prog: Attachable, target: HookTarget, options: AttachOptions = {}): Link {
  const plan = planAttach(n, prog, target, options);
  let attachment: Attachment;
  try {
    attachment = n.attach(plan.request);
  } catch (e) {
    throw attachError(e, prog, target);
  }
  return finishAttach(n, prog, target, plan, attachment);
}

/**
 * attach() with the kernel work off the JS thread: a tcx attach waits for an
 * RCU grace period, and the JS thread goes on meanwhile. The same errors, and
 * the same guarantee: when it rejects, nothing is attached and nothing pinned.
 */
export async function attachAsync(n: Native, prog: Attachable, target: HookTarget, options: AttachOptions = {}): Promise<Link> {
  const plan = planAttach(n, prog, target, options);
  let attachment: Attachment;
  try {
    attachment = await n.attachAsync(plan.request);
  } catch (e) {
    throw attachError(e, prog, target);
  }
  return finishAttach(n, prog, target, plan, attachment);
}

interface AttachPlan {
  request: AttachRequest;
  pinPath?: string;
  priority: number;
}

function planAttach(n: Native, prog: Attachable, target: HookTarget, options: AttachOptions): AttachPlan {
  const mode = resolveMode(n, options.mode);
  const { pinPath, first = false } = options;
  if (pinPath && fs.existsSync(pinPath)) throw new AlreadyAttachedError(`${prog.name} on ${describe(target)} (${pinPath} exists)`);
  const priority = first ? TC_PRIORITY_FIRST : TC_PRIORITY;
  const request: AttachRequest = {
    ...target,
    progFd: prog.fd,
    mode,
    first,
    ...(mode === 'tcx' ? { pinPath } : { handle: TC_HANDLE, priority }),
  };
  return { request, pinPath, priority };
}

function attachError(e: unknown, prog: Attachable, target: HookTarget): Error {
  if (isNativeError(e) && e.code === 'EEXIST') return new AlreadyAttachedError(`${prog.name} on ${describe(target)}`);
  if (isNativeError(e) && e.code === 'ENODEV') return new NoSuchInterfaceError(target.ifname, target.netns ?? 'this network namespace');
  return fromNative(e, `attaching ${prog.name} to ${describe(target)}`);
}

/** A clsact filter gets its record (the pinned program) here; without one, the filter is removed again. */
function finishAttach(n: Native, prog: Attachable, target: HookTarget, plan: AttachPlan, attachment: Attachment): Link {
  const { mode } = attachment;
  if (mode === 'clsact' && plan.pinPath) {
    killPoint('filter'); // attached, not yet recorded
    try {
      n.objPin(prog.fd, plan.pinPath);
    } catch (e) {
      n.detach({ ...target, mode, handle: TC_HANDLE, priority: plan.priority, progId: attachment.progId });
      throw fromNative(e, `recording the attachment at ${plan.pinPath}`);
    }
  }
  return new Link(n, target, attachment, plan.pinPath);
}

/**
 * Removes vmpeer's attachment at a hook, found by its pin (tcx link, or the
 * clsact record). Returns false when there was none.
 */
export function detach(n: Native, target: HookTarget, options: { mode: AttachMode; pinPath?: string; progId?: number }): boolean {
  try {
    if (options.mode === 'tcx') {
      return n.detach({ ...target, mode: 'tcx', pinPath: options.pinPath, progId: options.progId });
    }
    let progId = options.progId;
    if (options.pinPath && fs.existsSync(options.pinPath)) {
      const fd = n.objGet(options.pinPath);
      try {
        progId = n.progIdOf(fd);
      } finally {
        n.closeFd(fd);
      }
    }
    const ours = n.listHook(target).filter(
      (e) => e.mode === 'clsact' && e.handle === TC_HANDLE && (progId === undefined || e.progId === progId),
    );
    let removed = false;
    for (const entry of ours) {
      removed = n.detach({ ...target, mode: 'clsact', handle: TC_HANDLE, priority: entry.priority, progId: entry.progId }) || removed;
    }
    killPoint('detach-filter'); // detached, the record still there
    if (options.pinPath) fs.rmSync(options.pinPath, { force: true });
    return removed;
  } catch (e) {
    if (isNativeError(e) && e.code === 'ENODEV') {
      // the interface is gone, and its attachments with it
      if (options.pinPath) fs.rmSync(options.pinPath, { force: true });
      return false;
    }
    throw fromNative(e, `detaching from ${describe(target)}`);
  }
}
