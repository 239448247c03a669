/**
 * Attaching a "foreign" program (one vmpeer did not attach) at a hook, the way
 * another agent would: a tcx link of its own, or a clsact filter with its own
 * handle and a priority before or after vmpeer's.
 */
import type { ExecutionContext } from 'ava';
import { native, type HookTarget } from '../../lib/native.js';
import { TC_PRIORITY } from '../../lib/bpf/link.js';
import type { Program } from '../../lib/bpf/program.js';
import { isPodProgram } from '../../lib/dataplane/dataplane.js';

let handles = 0x1100;

/** In the mode of vmpeer's program at the hook (tcx runs before every clsact filter), else tcx where the kernel has it. */
export function attachForeign(t: ExecutionContext, prog: Program, target: HookTarget, position: 'before' | 'after' = 'before'): void {
  const n = native();
  const ours = n.listHook(target).find((e) => isPodProgram(e.progName) || e.progName === 'redirect');
  if (ours ? ours.mode === 'tcx' : n.kernelFeatures().tcx) {
    const { linkFd } = n.attach({ ...target, progFd: prog.fd, mode: 'tcx', first: position === 'before' });
    t.teardown(() => n.closeFd(linkFd!));
    return;
  }
  const handle = handles++;
  const priority = position === 'before' ? 0x100 : TC_PRIORITY + 0x100;
  n.attach({ ...target, progFd: prog.fd, mode: 'clsact', handle, priority });
  t.teardown(() => {
    try {
      n.detach({ ...target, mode: 'clsact', handle, priority });
    } catch {
      // the netns went first
    }
  });
}
