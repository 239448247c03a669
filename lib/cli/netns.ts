/** Resolving the --netns argument: a name under /var/run/netns, or any netns file path. */
import fs from 'node:fs';
import path from 'node:path';
import { NetnsNotFoundError, UsageError } from '../errors.js';
import { fsType, NETNS_DIR, NSFS_MAGIC } from '../paths.js';
import { netnsPaths } from '../dataplane/netns-paths.js';


export function resolveNetns(arg: string): string {
  if (arg === '') throw new UsageError('--netns needs a name under /var/run/netns or a path');
  const file = arg.includes('/') ? path.resolve(arg) : path.join(NETNS_DIR, arg);
  let type: number;
  try {
    type = fsType(file);
  } catch {
    throw new NetnsNotFoundError(arg);
  }
  if (type !== NSFS_MAGIC) throw new UsageError(`${arg} is not a network namespace file (expected /var/run/netns/<name> or /proc/<pid>/ns/net)`);
  return file;
}

/** Names for netns inodes, for display: /var/run/netns entries first, then /proc/<pid>/ns/net; this one is "node". */
export function netnsNames(): Map<number, string> {
  const names = netnsPaths([NETNS_DIR]);
  names.set(fs.statSync('/proc/self/ns/net').ino, 'node');
  return names;
}
