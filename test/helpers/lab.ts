/**
 * A lab (lib/lab) for a test: netns names start with TEST_PREFIX, and the
 * lab is destroyed when the test ends, passed or failed.
 */
import type { ExecutionContext } from 'ava';
import { Lab, type LabOptions } from '../../lib/lab/index.js';
import { TEST_PREFIX } from './netns.js';

export async function lab(t: ExecutionContext, options: LabOptions = {}): Promise<Lab> {
  const l = await Lab.create({ prefix: TEST_PREFIX, ...options });
  t.teardown(() => l.destroy());
  return l;
}

/** True while a process with this pid exists. */
export function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
