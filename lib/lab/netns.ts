/**
 * The lab's network namespaces: named ones under /var/run/netns, created and
 * deleted in batches (one `ip -batch` each way).
 */
import { execFileSync } from 'node:child_process';
import { NETNS_DIR } from '../paths.js';
import { ipBatch, run } from './exec.js';

export interface NetnsRef {
  /** Name under /var/run/netns. */
  readonly name: string;
  /** Path of the netns file: what nsenter --net=, the addon and vmpeer take. */
  readonly path: string;
}

export function netnsRef(name: string): NetnsRef {
  return { name, path: `${NETNS_DIR}/${name}` };
}

/** Lines of a host `ip -batch` that create these namespaces. */
export function netnsAddLines(names: string[]): string[] {
  return names.map((n) => `netns add ${n}`);
}

/**
 * Deletes the namespaces that still exist, ignoring the ones already gone.
 * The kernel frees a netns (and its interfaces, routes, tc programs) once no
 * process, mount or fd holds it: processes started in it must be gone first.
 */
export async function deleteNetns(names: string[]): Promise<void> {
  if (names.length === 0) return;
  // -force: go on past namespaces that are already gone
  await run('ip', ['-force', '-batch', '-'], {
    input: names.map((n) => `netns delete ${n}`).join('\n') + '\n',
    allowFail: true,
  });
}

/** The synchronous variant, for process 'exit' handlers. */
export function deleteNetnsSync(names: string[]): void {
  if (names.length === 0) return;
  try {
    execFileSync('ip', ['-force', '-batch', '-'], {
      input: names.map((n) => `netns delete ${n}`).join('\n') + '\n',
      stdio: ['pipe', 'ignore', 'ignore'],
    });
  } catch {
    // some were gone already
  }
}

export { ipBatch };
