/** Running the vmpeer CLI as its own process, inside a lab's node netns (its "node"). */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../native.js';

export const CLI = path.join(packageRoot, 'dist', 'lib', 'cli', 'bin.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `vmpeer ...args` in the netns at `nodeNs` (undefined: this process's netns), as root or as nobody. */
export function vmpeer(nodeNs: string | undefined, args: string[], env: NodeJS.ProcessEnv = {}, user?: 'nobody'): Promise<CliResult> {
  const asUser = user ? ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--inh-caps=-all'] : [];
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
