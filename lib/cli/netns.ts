/** Resolving the --netns argument: a name under /var/run/netns, or any netns file path. */
import fs from 'node:fs';
import path from 'node:path';
import { NetnsNotFoundError, UsageError } from '../errors.js';
import { fsType, NETNS_DIR, NSFS_MAGIC } from '../paths.js';


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

/** Names for netns inodes, for display: /var/run/netns entries first, then /proc/<pid>/ns/net. */
export function netnsNames(): Map<number, string> {
  const names = new Map<number, string>();
  const add = (file: string) => {
    try {
      const ino = fs.statSync(file).ino;
      if (!names.has(ino)) names.set(ino, file);
    } catch {
      // raced with its removal
    }
  };
  try {
    for (const name of fs.readdirSync(NETNS_DIR)) add(path.join(NETNS_DIR, name));
  } catch {
    // no named namespaces
  }
  add('/proc/self/ns/net');
  names.set(fs.statSync('/proc/self/ns/net').ino, 'node');
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) add(`/proc/${pid}/ns/net`);
  return names;
}
