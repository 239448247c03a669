/**
 * Running commands for the lab: on the host, inside a netns (nsenter, which
 * keeps /sys/fs/bpf visible, unlike `ip netns exec`), and iproute2 batches.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export class CommandError extends Error {
  constructor(
    readonly command: string[],
    readonly code: number | null,
    readonly stderr: string,
    readonly stdout: string,
  ) {
    super(`${command.join(' ')}: exit ${code}${stderr ? `: ${stderr.trim()}` : ''}`);
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  /** Resolve instead of rejecting on a non-zero exit. */
  allowFail?: boolean;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; rejects with CommandError on a non-zero exit. */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    if (options.timeoutMs) {
      timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    }
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      const result = {
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (code === 0 || options.allowFail) resolve(result);
      else reject(new CommandError([cmd, ...args], code, result.stderr, result.stdout));
    });
    child.stdin.on('error', () => {
      // the command exited without reading its input
    });
    child.stdin.end(options.input ?? '');
  });
}

/** The argv prefix that runs a command inside the netns at `nsPath`. */
export function inNetns(nsPath: string, cmd: string, args: string[]): [string, string[]] {
  return ['nsenter', [`--net=${nsPath}`, cmd, ...args]];
}

/** Runs a command inside a netns. */
export function runIn(nsPath: string, cmd: string, args: string[], options?: RunOptions): Promise<RunResult> {
  const [c, a] = inNetns(nsPath, cmd, args);
  return run(c, a, options);
}

/**
 * Starts a long-lived command inside a netns. It gets SIGKILL when the thread
 * that started it (the process's main thread) dies, so a crashed test run
 * leaves no orphan behind (setpriv --pdeathsig survives nsenter's exec).
 */
export function spawnIn(nsPath: string, cmd: string, args: string[], options: SpawnOptions = {}): ChildProcess {
  return spawn('nsenter', [`--net=${nsPath}`, 'setpriv', '--pdeathsig', 'KILL', cmd, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    ...options,
  });
}

/**
 * Runs iproute2 commands as one batch (`ip -batch -`), inside the named netns
 * when `netnsName` is given (`ip -n`, which only affects that ip process).
 */
export async function ipBatch(lines: string[], netnsName?: string): Promise<void> {
  if (lines.length === 0) return;
  const args = netnsName ? ['-n', netnsName, '-batch', '-'] : ['-batch', '-'];
  await run('ip', args, { input: lines.join('\n') + '\n' });
}

/** Writes sysctls inside a netns, in order, with one process. */
export async function sysctls(nsPath: string, settings: Array<[string, string | number]>): Promise<void> {
  if (settings.length === 0) return;
  await runIn(nsPath, 'sysctl', ['-q', '-w', ...settings.map(([k, v]) => `${k}=${v}`)]);
}

/** Waits for a child to exit, killing it with `signal` first; resolves at once if it is gone. */
export function killAndWait(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}
