/** The daemon's state as the kernel and its pins show it, read from the test process. */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { native, type HookEntry } from '../../lib/native.js';
import { Dataplane } from '../../lib/dataplane/dataplane.js';
import type { Lab, VmPod } from '../../lib/lab/index.js';
import { announce } from '../../lib/lab/dynamic.js';
import { lab } from './lab.js';
import { bpffsDir } from './netns.js';

/** The daemon's state as the kernel and the pins show it, read from the test process. */
export class State {
  readonly n = native();
  private opened: Dataplane | null = null;

  constructor(t: ExecutionContext, readonly root: string) {
    t.teardown(() => this.opened?.close());
  }

  /** A view (no lock: the daemon holds it) of the state, opened on first use. */
  get dp(): Dataplane {
    this.opened ??= Dataplane.view({ root: this.root });
    if (!this.opened) throw new Error(`no vmpeer state under ${this.root}`);
    return this.opened;
  }

  /** fixup attached at the pod's uplink and the guest's endpoint in place, with the MAC the guest uses. */
  covered(vm: VmPod): boolean {
    const inode = inodeOf(vm.podNs.path);
    if (inode === null) return false;
    const ep = this.dp.endpoint(vm.podIp);
    return (
      ep !== null &&
      ep.podNetns === inode &&
      ep.guestMac === vm.guestMac &&
      ep.hostIfindex === vm.hostVeth.ifindex &&
      this.dp.attachments().some((r) => r.program === 'fixup' && r.netnsInode === inode && r.ifname === vm.nic.name)
    );
  }

  /** Nothing of the pod with this netns inode is left (attachment records, endpoint). */
  gone(inode: number, guestIp: string): boolean {
    return !this.dp.attachments().some((r) => r.netnsInode === inode) && this.dp.endpoint(guestIp)?.podNetns !== inode;
  }

  /** What is at the tc ingress hook of an interface. */
  hook(netns: string, ifname: string): HookEntry[] {
    return this.n.listHook({ netns, ifname, hook: 'ingress' });
  }

  /** Pins under the state root (links/, filters/, maps/). */
  pins(): string[] {
    if (!fs.existsSync(this.root)) return [];
    return ['links', 'filters', 'maps'].flatMap((d) => {
      const dir = path.join(this.root, d);
      return fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => `${d}/${f}`) : [];
    });
  }
}

export function inodeOf(file: string): number | null {
  try {
    return fs.statSync(file).ino;
  } catch {
    return null;
  }
}

/**
 * Exactly one vmpeer filter (or link) at the uplink and, the bridge bypass
 * being the default, one at the guest port; one record of each; the endpoint.
 */
export function exactlyCovered(t: ExecutionContext, root: string, vm: VmPod, what: string): void {
  const n = native();
  t.deepEqual(n.listHook({ netns: vm.podNs.path, ifname: vm.nic.name, hook: 'ingress' }).map((e) => e.progName), ['fixup'], `${what}: one program at the hook`);
  t.deepEqual(n.listHook({ netns: vm.podNs.path, ifname: vm.tap, hook: 'ingress' }).map((e) => e.progName), ['from_guest'], `${what}: one program at the guest port`);
  const state = new State(t, root);
  const inode = inodeOf(vm.podNs.path);
  t.deepEqual(state.dp.attachments().filter((r) => r.netnsInode === inode).map((r) => r.program).sort(), ['fixup', 'from_guest'], `${what}: one record of each`);
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
