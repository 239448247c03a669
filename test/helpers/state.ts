/** The daemon's state as the kernel and its pins show it, read from the test process. */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { native, type HookEntry } from '../../lib/native.js';
import { Dataplane } from '../../lib/dataplane/dataplane.js';
import type { VmPod } from '../../lib/lab/index.js';

/** The daemon's state as the kernel and the pins show it, read from the test process. */
export class State {
  readonly dp: Dataplane;
  readonly n = native();

  constructor(t: ExecutionContext, readonly root: string) {
    this.dp = Dataplane.open({ root });
    t.teardown(() => this.dp.close());
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
