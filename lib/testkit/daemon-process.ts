/**
 * The node daemon as a child process (for the tests and the control-plane
 * benchmark): started in a lab's node netns (nsenter keeps /sys/fs/bpf and
 * /var/run/netns visible), its JSON log lines collected, its HTTP endpoints
 * reached from inside that netns.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { packageRoot } from '../native.js';

export const BIN = path.join(packageRoot, 'dist', 'lib', 'cli', 'bin.js');
export const METRICS = '127.0.0.1:9808';

/** The Node.js flags of the image's entrypoint (deploy/Dockerfile). */
export function imageNodeFlags(): string[] {
  const dockerfile = fs.readFileSync(path.join(packageRoot, 'deploy', 'Dockerfile'), 'utf8');
  const m = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile);
  if (!m) throw new Error('no ENTRYPOINT in deploy/Dockerfile');
  return (JSON.parse(m[1]!) as string[]).filter((a) => a.startsWith('--'));
}

/** The environment the image gives the daemon (deploy/Dockerfile's last stage: its ENV lines, PATH aside). */
export function imageEnv(): Record<string, string> {
  const dockerfile = fs.readFileSync(path.join(packageRoot, 'deploy', 'Dockerfile'), 'utf8');
  const last = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const env: Record<string, string> = {};
  for (const [, line] of last.matchAll(/^ENV (.+)$/gm)) {
    for (const [, k, v] of line!.matchAll(/(\w+)=(\S+)/g)) if (k !== 'PATH') env[k!] = v!;
  }
  return env;
}

export interface LogLine {
  level: string;
  msg: string;
  change?: string;
  reason?: string;
  [key: string]: unknown;
}

export interface DaemonOptions {
  /** The netns the daemon treats as the node (a lab's node netns path). */
  nodeNs: string;
  /** State root on bpffs. */
  root: string;
  /** Only pod netns whose names start with this (a lab's name + '-'). */
  prefix?: string;
  args?: string[];
  /** Node.js flags (the image runs the daemon with NODE_FLAGS_IN_IMAGE). */
  nodeArgs?: string[];
  /** Run with exactly these capabilities (bounding set), as a container would; default: all of root's. */
  capabilities?: string[];
  env?: NodeJS.ProcessEnv;
}

export class DaemonProcess {
  readonly logs: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly options: DaemonOptions,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        this.logs.push({ level: 'raw', msg: line });
      }
      for (const w of this.waiters) w();
    });
    child.stderr!.on('data', (b: Buffer) => {
      this.stderr += b.toString('utf8');
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first log line (from `from` on) that matches, or rejects after `timeoutMs`. */
  waitLog(pred: (l: LogLine) => boolean, timeoutMs = 10_000, from = 0): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.logs.slice(from).find(pred);
        if (hit) {
          cleanup();
          resolve(hit);
        } else if (!this.alive && this.child.stdout!.readableEnded) {
          cleanup();
          reject(new Error(`daemon exited before the log line came: ${this.stderr}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no such log line within ${timeoutMs} ms; last lines:\n${this.logs.slice(-8).map((l) => JSON.stringify(l)).join('\n')}\n${this.stderr}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      this.child.once('exit', () => setTimeout(check, 50));
      check();
    });
  }

  changes(action?: string): LogLine[] {
    return this.logs.filter((l) => l.change !== undefined && (action === undefined || l.change === action));
  }

  /** GET on the daemon's HTTP address, from inside the node netns. */
  http(urlPath: string, address = METRICS): Promise<{ status: number; body: string }> {
    return httpIn(this.options.nodeNs, `http://${address}${urlPath}`);
  }

  /** Waits until /readyz answers 200. */
  // inside the kernel matrix's emulated VMs (VMTEST_KERNEL set) everything is ~15x slower; natively,
  // a 2-CPU host running QEMU guests beside the daemon has taken more than 15 s
  async ready(timeoutMs = process.env.VMTEST_KERNEL ? 90_000 : 30_000): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      const r = await this.http('/readyz').catch(() => ({ status: 0, body: '' }));
      if (r.status === 200) return Date.now() - t0;
      if (!this.alive) throw new Error(`daemon exited: ${this.stderr}\n${this.logs.map((l) => JSON.stringify(l)).join('\n')}`);
      if (Date.now() - t0 > timeoutMs) {
        throw new Error(`daemon not ready after ${timeoutMs} ms (last: ${r.status} ${r.body.trim()}); its last log lines:\n${this.logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`);
      }
      await sleep(50);
    }
  }

  /** Sends a signal and waits for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.alive) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const r = await this.exited;
    clearTimeout(timer);
    return r;
  }

  /** Resident memory of the daemon, in kB. */
  rssKb(): number {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  }

  /** PIDs of the daemon's child processes. */
  children(): number[] {
    return childrenOf(this.pid);
  }
}

export function childrenOf(pid: number): number[] {
  try {
    return fs
      .readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** argv that runs the daemon in `nodeNs`, optionally with a reduced capability set. */
export function daemonArgv(o: DaemonOptions): string[] {
  const caps = o.capabilities ? ['setpriv', '--inh-caps=-all', `--bounding-set=-all,${o.capabilities.map((c) => `+${c}`).join(',')}`] : [];
  return [
    'nsenter',
    `--net=${o.nodeNs}`,
    ...caps,
    'setpriv',
    '--pdeathsig',
    'KILL',
    process.execPath,
    ...(o.nodeArgs ?? []),
    BIN,
    'daemon',
    '--bpffs',
    o.root,
    '--metrics-address',
    METRICS,
    ...(o.prefix ? ['--netns-prefix', o.prefix] : []),
    ...(o.args ?? []),
  ];
}

const FETCH = `
const [url] = process.argv.slice(1);
fetch(url, { signal: AbortSignal.timeout(3000) }).then(async (r) => {
  process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() }));
}, (e) => { process.stdout.write(JSON.stringify({ status: 0, body: String(e) })); });
`;

/** An HTTP GET from inside a netns (a node one-liner: no curl needed). */
export function httpIn(netns: string, url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${netns}`, process.execPath, '-e', FETCH, url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
    child.on('error', reject);
    child.on('close', () => {
      try {
        resolve(JSON.parse(out) as { status: number; body: string });
      } catch {
        reject(new Error(`http ${url}: ${out}`));
      }
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

