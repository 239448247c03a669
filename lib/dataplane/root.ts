/**
 * vmpeer's state directory on bpffs, and the node lock on it.
 *
 * The directory holds only what vmpeer made: maps/, links/, filters/ (and
 * the pins in them). vmpeer refuses a directory that is itself a bpffs mount
 * point or holds anything else (another agent's state, which it must never
 * touch), and removes its own entries one by one, never recursively.
 *
 * The lock is a flock() on the directory. Whoever changes vmpeer's state (a
 * CLI command for its whole transaction, the daemon for its whole life)
 * holds it; readers (`vmpeer status`) need none.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Native } from '../native.js';
import { isNativeError, UsageError, VmpeerError } from '../errors.js';
import { killPoint } from '../kill-point.js';
import { BPF_FS_MAGIC, fsType, nearestExisting } from '../paths.js';

/** The entries vmpeer makes in its state directory. */
export const ROOT_ENTRIES = ['maps', 'links', 'filters'] as const;
/** Where a migration stages the new maps (migrate.ts); it exists only while one is under way. */
export const STAGING_DIR = 'maps_next';

export class StateLockedError extends VmpeerError {
  override name = 'StateLockedError';
}

/** Checks that `root` can be vmpeer's own state directory; creates nothing. */
export function checkRoot(root: string): void {
  ensureBpffs(root);
  let st: fs.Stats;
  try {
    st = fs.statSync(root);
  } catch {
    return; // created on first use
  }
  if (!st.isDirectory()) throw new UsageError(`--bpffs ${root} is not a directory`);
  const parent = path.dirname(path.resolve(root));
  if (parent === path.resolve(root) || fs.statSync(parent).dev !== st.dev) {
    throw new UsageError(`--bpffs ${root} is a bpffs mount point, shared with other programs: give vmpeer a directory of its own under it, e.g. ${path.join(root, 'vmpeer')}`);
  }
  const foreign = fs.readdirSync(root).filter((name) => name !== STAGING_DIR && !(ROOT_ENTRIES as readonly string[]).includes(name));
  if (foreign.length > 0) {
    throw new UsageError(`--bpffs ${root} holds ${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''}, which vmpeer did not create: give vmpeer a directory of its own`);
  }
}

/** The state directory must be on bpffs: checked on its nearest existing ancestor. */
function ensureBpffs(root: string): void {
  const dir = nearestExisting(root);
  if (fsType(dir) !== BPF_FS_MAGIC) {
    throw new UsageError(
      dir === '/sys/fs' || dir === '/sys/fs/bpf' || root.startsWith('/sys/fs/bpf/')
        ? `/sys/fs/bpf is not a bpffs mount: mount it with 'mount -t bpf bpf /sys/fs/bpf' (vmpeer keeps its state under ${root})`
        : `${root} is not on a bpffs mount: vmpeer keeps its state in bpffs, e.g. under /sys/fs/bpf`,
    );
  }
}

/**
 * Takes the node lock on `root` (creating the directory when missing), or
 * returns null when another process holds it and `wait` is false.
 */
export function tryLockRoot(n: Native, root: string): number | null {
  for (;;) {
    fs.mkdirSync(root, { recursive: true });
    try {
      const fd = n.lockDir(root, { wait: false });
      return fd < 0 ? null : fd;
    } catch (e) {
      // the holder removed the directory (its last state) while we asked: make it again
      if (isNativeError(e) && e.code === 'ENOENT') continue;
      throw e;
    }
  }
}

/**
 * Takes the node lock, waiting up to `waitMs` for another command to finish;
 * refuses at once when the holder is a daemon (it holds it for its life).
 */
export function lockRoot(n: Native, root: string, waitMs: number): number {
  const until = Date.now() + waitMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    const fd = tryLockRoot(n, root);
    if (fd !== null) return fd;
    if (Date.now() >= until || lockHolder(root)?.daemon) throw lockedError(root);
    Atomics.wait(pause, 0, 0, 50);
  }
}

export function lockedError(root: string): StateLockedError {
  const holder = lockHolder(root);
  const who = holder ? `${holder.daemon ? 'the vmpeer daemon' : 'another vmpeer process'} (pid ${holder.pid})` : 'another vmpeer process';
  return new StateLockedError(
    holder?.daemon
      ? `${who} manages the state under ${root}: while it runs, it alone changes this node (it attaches every VM pod it sees); stop it to attach or detach by hand`
      : `${who} is changing the state under ${root}; try again when it is done`,
  );
}

/** The process holding the flock on `root`, from /proc/locks (in this pid namespace). */
export function lockHolder(root: string): { pid: number; daemon: boolean } | null {
  let ino: number;
  try {
    ino = fs.statSync(root).ino;
    for (const line of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
      const m = /^\d+:\s+FLOCK\s+\S+\s+\S+\s+(\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s/.exec(line);
      if (!m || Number(m[2]) !== ino) continue;
      const pid = Number(m[1]);
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return { pid, daemon: cmdline.includes('daemon') };
    }
  } catch {
    // gone meanwhile
  }
  return null;
}

/**
 * Removes vmpeer's own entries (given pins, then its folders, then `root`),
 * each only if it is what vmpeer made and, for folders, empty. Anything else
 * found there stays, and so do the folders that hold it.
 */
export function pruneRoot(root: string, pins: string[]): void {
  for (const pin of pins) fs.rmSync(pin, { force: true });
  killPoint('prune');
  for (const dir of [...ROOT_ENTRIES.map((d) => path.join(root, d)), root]) {
    try {
      fs.rmdirSync(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTEMPTY') throw e;
    }
  }
}
