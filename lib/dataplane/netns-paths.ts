/**
 * Finding a network namespace by its inode: a record names its netns by
 * inode, and removing its filter needs a path to enter that netns.
 */
import fs from 'node:fs';
import path from 'node:path';

import { NETNS_DIR } from '../paths.js';

/** Paths of the network namespaces this process can see, by inode: named ones (in `dirs`) first, then /proc/<pid>/ns/net. */
export function netnsPaths(dirs: readonly string[] = [NETNS_DIR]): Map<number, string> {
  const paths = new Map<number, string>();
  const add = (file: string) => {
    try {
      const ino = fs.statSync(file).ino;
      if (!paths.has(ino)) paths.set(ino, file);
    } catch {
      // raced with its removal
    }
  };
  for (const dir of dirs) {
    try {
      for (const name of fs.readdirSync(dir)) add(path.join(dir, name));
    } catch {
      // no such directory
    }
  }
  add('/proc/self/ns/net');
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) add(`/proc/${pid}/ns/net`);
  return paths;
}
