/** What the state tests assert after every race and every kill. */
import type { ExecutionContext } from 'ava';
import type { VmPod } from '../../lib/lab/index.js';
import { native } from '../../lib/native.js';
import { inodeOf, State } from './daemon.js';

/** Exactly one vmpeer filter (or link) at the uplink, one record of the pod, its endpoint. */
export function exactlyCovered(t: ExecutionContext, root: string, vm: VmPod, what: string): void {
  const hook = native().listHook({ netns: vm.podNs.path, ifname: vm.nic.name, hook: 'ingress' });
  t.deepEqual(hook.map((e) => e.progName), ['fixup'], `${what}: one program at the hook`);
  const state = new State(t, root);
  const inode = inodeOf(vm.podNs.path);
  t.is(state.dp.attachments().filter((r) => r.netnsInode === inode).length, 1, `${what}: one record`);
  t.true(state.covered(vm), `${what}: the endpoint`);
  state.dp.close();
}

