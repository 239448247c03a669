/** What the state tests assert after every race and every kill. */
import type { ExecutionContext } from 'ava';
import { announce } from '../../lib/lab/dynamic.js';
import type { Lab, VmPod } from '../../lib/lab/index.js';
import { lab } from './lab.js';
import { bpffsDir } from './netns.js';
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


/** A lab with one VM pod whose guest has announced itself, and a state root for the test. */
export async function oneVmLab(t: ExecutionContext): Promise<{ l: Lab; vm: Lab['vms'][number]; root: string; node: string }> {
  const l = await lab(t, { vmPods: 1, plainPods: 0 });
  const vm = l.vms[0]!;
  await announce(vm);
  return { l, vm, root: `${bpffsDir(t)}/vmpeer`, node: l.node.ns.path };
}
