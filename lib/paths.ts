/** Where a node keeps what vmpeer works with, and the filesystems those places must be on. */
import fs from 'node:fs';
import path from 'node:path';

/** Named network namespaces (`ip netns add`, CNI plugins). */
export const NETNS_DIR = '/var/run/netns';

/** statfs(2) f_type values (include/uapi/linux/magic.h). */
export const BPF_FS_MAGIC = 0xcafe4a11;
export const NSFS_MAGIC = 0x6e736673;

/** The nearest existing ancestor of `dir` (itself when it exists): where a state root that is not there yet would live. */
export function nearestExisting(dir: string): string {
  let at = path.resolve(dir);
  while (!fs.existsSync(at)) at = path.dirname(at);
  return at;
}

/** The filesystem type of `file` (statfs f_type); throws what statfs throws. */
export function fsType(file: string): number {
  return Number(fs.statfsSync(file).type);
}
