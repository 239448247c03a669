/** The lab's QEMU guests: which VM pods get one, booted on their taps, reachable before the lab is handed out. */
import { QemuGuest } from './qemu.js';
import type { VmPod } from './topology.js';

const QEMU_REACHABLE_TIMEOUT_MS = 30_000;

/** A VM pod of the lab, with its guest. */
export interface LabVm extends VmPod {
  /** The QEMU guest, when the pod has one (then `guest` is null). */
  readonly qemu: QemuGuest | null;
}

export interface GuestOptions {
  /** Real QEMU guests on taps: true for every VM pod, or the indexes of some. Default false. */
  qemu?: boolean | number[];
  /** Kernel series or Debian release of the QEMU guests (default "6.1"). */
  qemuKernel?: string;
  /** QEMU guests: a multi-queue tap (2 queues), as KubeVirt's networkInterfaceMultiqueue. */
  multiQueue?: boolean;
  qemuAccel?: 'auto' | 'kvm' | 'tcg';
}

/** The indexes of the VM pods that get a QEMU guest (a RangeError for one that is not a VM pod). */
export function qemuIndexes(options: GuestOptions, vmCount: number): Set<number> {
  const set = new Set<number>(options.qemu === true ? [...Array(vmCount).keys()] : Array.isArray(options.qemu) ? options.qemu : []);
  for (const i of set) {
    if (!Number.isInteger(i) || i < 0 || i >= vmCount) throw new RangeError(`lab: qemu index ${i} is not a VM pod`);
  }
  return set;
}

export interface GuestHost {
  readonly vms: LabVm[];
  readonly destroyed: boolean;
  waitReachable(ip: string, timeoutMs: number): Promise<void>;
}

/**
 * Boots a QEMU guest in each of those VM pods and waits until the node
 * reaches it. allSettled: every boot has ended (and its QEMU is known, to be
 * killed) before a failure is thrown.
 */
export async function bootQemuGuests(lab: GuestHost, indexes: Set<number>, options: GuestOptions): Promise<void> {
  const boots = await Promise.allSettled(
    [...indexes].map(async (i) => {
      const vm = lab.vms[i]!;
      const q = await QemuGuest.boot({
        podNs: vm.podNs.path,
        tap: vm.tap,
        mac: vm.guestMac,
        ip: vm.podIp,
        kernel: options.qemuKernel,
        queues: options.multiQueue ? 2 : 1,
        accel: options.qemuAccel,
      });
      if (lab.destroyed) {
        await q.kill();
        return;
      }
      lab.vms[i] = { ...vm, qemu: q };
      await lab.waitReachable(vm.podIp, QEMU_REACHABLE_TIMEOUT_MS);
    }),
  );
  const failed = boots.find((b): b is PromiseRejectedResult => b.status === 'rejected');
  if (failed) throw failed.reason;
}
