/** A lab's name, the prefix of all its netns names, and the owner it tells a sweeper. */
import { randomTag } from './addressing.js';

export const DEFAULT_PREFIX = 'vpl';

/**
 * A lab's name, the prefix of all its netns names: `<prefix><pid>-<6 hex>`,
 * e.g. vpt4242-1a2b3c-node. The pid of the process that owns the lab lets a
 * sweeper tell a leftover (owner gone) from a lab another run still uses.
 */
export function labName(prefix: string): string {
  if (!/^[a-z]+$/.test(prefix)) throw new TypeError(`lab: bad prefix ${JSON.stringify(prefix)}`);
  return `${prefix}${process.pid}-${randomTag(3)}`;
}

/** The pid that owns the lab a netns belongs to (null when the name is not a lab's). */
export function labOwnerPid(netnsName: string): number | null {
  const m = /^[a-z]+?(\d+)-[0-9a-f]{6}-/.exec(netnsName);
  return m ? Number(m[1]) : null;
}
