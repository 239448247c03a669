/**
 * Netlink events of one network namespace, from `ip -o monitor link neigh`
 * (links, neighbours and bridge FDB entries, one line each). The monitor runs
 * as a child process; `setpriv --pdeathsig KILL` ends it with the daemon, even
 * on `kill -9`, so a killed daemon leaves no process holding a pod's netns.
 *
 * Events are triggers, not state: the reconciler re-reads what it needs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';

export type NetlinkEvent =
  | { kind: 'link'; deleted: boolean; ifindex: number; ifname: string }
  | { kind: 'neigh'; deleted: boolean; ip: string; dev: string; mac?: string }
  | { kind: 'fdb'; deleted: boolean; dev: string; mac?: string };

const LINK = /^(Deleted )?(\d+): ([^:@\s]+)(?:@\S+)?: </;
const NEIGH = /^(Deleted )?(?:(\S+) )?dev (\S+)(?:.*? lladdr ([0-9a-f:]{17}))?/i;

export function parseMonitorLine(line: string): NetlinkEvent | null {
  const link = LINK.exec(line);
  if (link) return { kind: 'link', deleted: link[1] !== undefined, ifindex: Number(link[2]), ifname: link[3]! };
  const n = NEIGH.exec(line);
  if (!n) return null;
  const deleted = n[1] !== undefined;
  const mac = n[4]?.toLowerCase();
  if (n[2] === undefined) return { kind: 'fdb', deleted, dev: n[3]!, mac };
  return { kind: 'neigh', deleted, ip: n[2], dev: n[3]!, mac };
}

export interface MonitorOptions {
  /** netns path; absent: this process's netns (the node). */
  netns?: string;
  onEvent(event: NetlinkEvent): void;
  /** The monitor ended without stop() (its netns went away, or it failed). */
  onExit(code: number | null, stderr: string): void;
}

export class Monitor {
  private readonly child: ChildProcess;
  private stopped = false;
  private stderr = '';

  constructor(private readonly options: MonitorOptions) {
    const ip = ['ip', '-o', 'monitor', 'link', 'neigh'];
    const argv = options.netns
      ? ['nsenter', `--net=${options.netns}`, 'setpriv', '--pdeathsig', 'KILL', ...ip]
      : ['setpriv', '--pdeathsig', 'KILL', ...ip];
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.on('error', (e) => {
      this.stderr += String(e.message);
    });
    this.child.stderr!.on('data', (b: Buffer) => {
      if (this.stderr.length < 4096) this.stderr += b.toString('utf8');
    });
    const lines = readline.createInterface({ input: this.child.stdout! });
    lines.on('line', (line) => {
      if (this.stopped) return;
      const event = parseMonitorLine(line);
      if (event) options.onEvent(event);
    });
    this.child.on('close', (code) => {
      lines.close();
      if (!this.stopped) options.onExit(code, this.stderr.trim());
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get netns(): string | undefined {
    return this.options.netns;
  }

  /** Ends the monitor (and with it its hold on the netns). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
