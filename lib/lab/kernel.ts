/**
 * A Debian kernel for the lab's QEMU guests. Downloading and extracting is
 * scripts/vmtest's job (`--prepare`: newest generic image of a series in the
 * Debian suite that ships it, through a private sources list, cached under
 * .cache/vmtest); this module
 * asks it for a kernel and picks the image and the modules the guest needs.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../native.js';
import { run } from './exec.js';

export interface GuestKernel {
  /** e.g. 6.1.0-56-amd64 */
  release: string;
  image: string;
  /** Module files to insmod, dependencies first. */
  modules: string[];
}

/** Drivers the guest needs that Debian builds as modules (virtio-net over PCI). */
export const GUEST_MODULES = ['virtio_pci', 'virtio_net'];

const VMTEST = path.join(packageRoot, 'scripts', 'vmtest');

export function vmtestCache(): string {
  return process.env.VMTEST_CACHE ?? path.join(packageRoot, '.cache', 'vmtest');
}

/**
 * Resolves `series` ("5.10", "6.1", "6.12", "sid", or an exact Debian release such as
 * "6.1.0-56-amd64"), downloading it once. Throws when it is not available.
 */
export async function guestKernel(series = '6.1'): Promise<GuestKernel> {
  if (!existsSync(VMTEST)) throw new Error(`lab: ${VMTEST} is missing: it provides the guest kernels`);
  const { stdout } = await run(VMTEST, ['--prepare', '--kernel', series], { timeoutMs: 600_000 }).catch((e: Error) => {
    throw new Error(`lab: no guest kernel ${series}: ${e.message}`);
  });
  const release = stdout.trim().split('\n').pop() ?? '';
  const base = path.join(vmtestCache(), release);
  const image = path.join(base, 'boot', `vmlinuz-${release}`);
  if (!release || !existsSync(image)) throw new Error(`lab: scripts/vmtest prepared no kernel image for ${series}`);

  const modules: string[] = [];
  for (const m of GUEST_MODULES) {
    const dep = await run('modprobe', ['-d', base, '-S', release, '--show-depends', m]);
    for (const line of dep.stdout.split('\n')) {
      const f = /^insmod (\S+)/.exec(line.trim());
      if (f && !modules.includes(f[1]!)) modules.push(f[1]!);
    }
  }
  return { release, image, modules };
}
