/** Running the vmpeer CLI as its own process, inside a lab's node netns (its "node"). */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../native.js';

export const CLI = path.join(packageRoot, 'dist', 'lib', 'cli', 'bin.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A command prefix that runs what follows without any capability, as the
 * user who owns the checkout: a user vmpeer must refuse, who can still read
 * the code it runs (nobody could not, in a checkout other users cannot read).
 * Root without capabilities is refused the same way as any other user.
 */
export function unprivileged(): string[] {
  const { uid, gid } = fs.statSync(packageRoot);
  return ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all'];
}

/** Runs `vmpeer ...args` in the netns at `nodeNs` (undefined: this process's netns), as root or without capabilities. */
export function vmpeer(nodeNs: string | undefined, args: string[], env: NodeJS.ProcessEnv = {}, user?: 'unprivileged'): Promise<CliResult> {
  const asUser = user ? unprivileged() : [];
  const inNs = nodeNs ? ['nsenter', `--net=${nodeNs}`] : [];
  const argv = [...inNs, ...asUser, process.execPath, CLI, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
