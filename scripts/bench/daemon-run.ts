/** The daemon under benchmark: started in the lab's node, /readyz probed, its coverage read from its pins. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { Dataplane } from '../../lib/dataplane/dataplane.js';
import { killAndWait } from '../../lib/lab/exec.js';
import type { Lab } from '../../lib/lab/lab.js';
import { VM_NIC } from '../../lib/lab/addressing.js';
import { daemonArgv, DaemonProcess, imageEnv, imageNodeFlags, METRICS } from '../../lib/testkit/daemon-process.js';
import type { BenchVm } from './pods.js';
import { sleep } from './util.js';

export const POLL_MS = 20;

/** /readyz from inside the node netns, every 20 ms; one JSON line per status change. */
const PROBER = `
const url = process.argv[1];
let last = -1;
const tick = async () => {
  let status = 0;
  try { const r = await fetch(url, { signal: AbortSignal.timeout(1000) }); status = r.status; await r.text(); } catch {}
  if (status !== last) { last = status; process.stdout.write(JSON.stringify({ t: Date.now(), status }) + '\\n'); }
  setTimeout(tick, 20);
};
tick();
`;

export class Prober {
  readonly child: ChildProcess;
  readonly changes: Array<{ t: number; status: number }> = [];
  private readonly first: Promise<void>;

  constructor(nodeNs: string) {
    this.child = spawn('nsenter', [`--net=${nodeNs}`, 'setpriv', '--pdeathsig', 'KILL', process.execPath, '-e', PROBER, `http://${METRICS}/readyz`], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    this.child.on('error', () => undefined);
    this.first = new Promise((resolve) => {
      readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
        try {
          this.changes.push(JSON.parse(line) as { t: number; status: number });
        } catch {
          // not ours
        }
        resolve();
      });
    });
  }

  /** Resolves once the prober runs (its first answer, usually "connection refused"). */
  started(): Promise<void> {
    return Promise.race([this.first, sleep(5000)]);
  }

  readyAt(): number | null {
    return this.changes.find((c) => c.status === 200)?.t ?? null;
  }

  stop(): Promise<void> {
    return killAndWait(this.child);
  }
}

export interface Running {
  d: DaemonProcess;
  root: string;
  spawnAt: number;
}

/** More Node.js flags for the daemon under benchmark, e.g. `--cpu-prof --cpu-prof-dir=<dir>` to profile it (written when it stops). */
export const DAEMON_NODE_ARGS_ENV = 'VMPEER_BENCH_DAEMON_NODE_ARGS';

export function startDaemon(lab: Lab, root: string, prefix: string, args: string[] = []): Running {
  const extra = (process.env[DAEMON_NODE_ARGS_ENV] ?? '').split(/\s+/).filter(Boolean);
  const options = { nodeNs: lab.node.ns.path, root, prefix, args: ['--cleanup-on-exit', ...args], nodeArgs: [...imageNodeFlags(), ...extra] };
  const argv = daemonArgv(options);
  const spawnAt = Date.now();
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...imageEnv() } }); // as the image runs it
  child.on('error', () => undefined);
  return { d: new DaemonProcess(options, child), root, spawnAt };
}

/** SIGTERM (the daemon removes everything it attached: --cleanup-on-exit), SIGKILL if it hangs; then the pins go. */
export async function stopDaemon(r: Running): Promise<void> {
  if (r.d.alive) await r.d.kill('SIGTERM', 30_000);
  fs.rmSync(path.dirname(r.root), { recursive: true, force: true });
}

/** What the daemon has in place, read from its pins: is this pod covered? */
export class Coverage {
  constructor(private readonly dp: Dataplane) {}

  private fixups(): Set<string> {
    return new Set(
      this.dp
        .attachments()
        .filter((r) => r.program === 'fixup')
        .map((r) => `${r.netnsInode}/${r.ifname}`),
    );
  }

  /** fixup is attached at the pod's uplink (its guest may not have shown its MAC yet). */
  attached(vm: BenchVm): boolean {
    return this.dp.attachments(vm.inode).some((r) => r.program === 'fixup' && r.ifname === VM_NIC);
  }

  covered(vms: BenchVm[]): BenchVm[] {
    const endpointOk = (vm: BenchVm) => {
      const ep = this.dp.endpoint(vm.podIp);
      return ep !== null && ep.podNetns === vm.inode && ep.guestMac === vm.guestMac && ep.hostIfindex === vm.hostVeth.ifindex;
    };
    // A few pods (a new one, polled every few ms): the endpoint first (one map lookup), then only
    // their own records. Listing them all is 2000 pins at 1000 pods, milliseconds a poll, which
    // the measurement would add to the daemon's time and take from its CPU.
    if (vms.length <= 4) {
      return vms.filter((vm) => endpointOk(vm) && this.attached(vm));
    }
    const attached = this.fixups();
    return vms.filter((vm) => attached.has(`${vm.inode}/${VM_NIC}`) && endpointOk(vm));
  }

  gone(vm: BenchVm): boolean {
    return this.dp.endpoint(vm.podIp)?.podNetns !== vm.inode && this.dp.attachments(vm.inode).length === 0;
  }
}

/** Polls until `fn` is true; returns Date.now() at that moment, or null after `timeoutMs`. */
export async function until(fn: () => boolean, timeoutMs: number, everyMs = POLL_MS): Promise<number | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (fn()) return Date.now();
    if (Date.now() > deadline) return null;
    await sleep(everyMs);
  }
}
