/**
 * The node daemon as a child process for tests: started in a lab's node netns
 * (nsenter keeps /sys/fs/bpf and /var/run/netns visible), its JSON log lines
 * collected, its HTTP endpoints reached from inside that netns, killed when
 * the test ends (passed or failed).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { parse as parseYaml } from 'yaml';
import { native, packageRoot, type HookEntry } from '../../lib/native.js';
import { Dataplane } from '../../lib/dataplane/dataplane.js';
import type { VmPod } from '../../lib/lab/index.js';

import { daemonArgv, DaemonProcess, sleep, type DaemonOptions } from '../../lib/testkit/daemon-process.js';
import { compileBpf } from '../../lib/testkit/clang.js';

export { BIN, childrenOf, daemonArgv, DaemonProcess, httpIn, imageNodeFlags, METRICS, sleep, type DaemonOptions, type LogLine } from '../../lib/testkit/daemon-process.js';

/** The capabilities deploy/daemonset.yaml gives the daemon's container, lower-case for setpriv. */
export function deployCapabilities(): string[] {
  const ds = parseYaml(fs.readFileSync(path.join(packageRoot, 'deploy', 'daemonset.yaml'), 'utf8')) as {
    spec: { template: { spec: { containers: Array<{ name: string; securityContext?: { capabilities?: { add?: string[] } } }> } } };
  };
  const add = ds.spec.template.spec.containers.find((c) => c.name === 'vmpeer')?.securityContext?.capabilities?.add;
  if (!add) throw new Error('no capabilities.add for the vmpeer container in deploy/daemonset.yaml');
  return add.map((c) => c.toLowerCase());
}

/** Starts the daemon; it is killed (SIGKILL) when the test ends, if still running. */
export function startDaemon(t: ExecutionContext, o: DaemonOptions): DaemonProcess {
  const argv = daemonArgv(o);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
  const d = new DaemonProcess(o, child);
  t.teardown(async () => {
    if (d.alive) await d.kill('SIGKILL');
  });
  return d;
}

/** A sample of a Prometheus text metric (first match of name and labels). */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number | null {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return null;
}

/** Polls `fn` every `everyMs` until it returns a truthy value; returns it and the time it took. */
export async function until<T>(fn: () => T | Promise<T>, timeoutMs: number, everyMs = 5): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  for (;;) {
    const value = await fn();
    if (value) return { value, ms: Date.now() - t0 };
    if (Date.now() - t0 > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/**
 * Builds the BPF object again with different code generation (-mcpu=v3), as
 * an upgrade would bring: same maps, same behaviour, different instructions
 * (so a different program tag).
 */
export function rebuiltObject(t: ExecutionContext): string {
  const dir = fs.mkdtempSync('/tmp/vpt-obj-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'vmpeer.bpf.o');
  const failed = compileBpf(path.join(packageRoot, 'bpf', 'vmpeer.bpf.c'), out, ['-mcpu=v3']);
  if (failed !== null) throw new Error(`clang failed: ${failed}`);
  return out;
}

/** The daemon's state as the kernel and the pins show it, read from the test process. */
export class State {
  readonly dp: Dataplane;
  readonly n = native();

  constructor(t: ExecutionContext, readonly root: string) {
    this.dp = Dataplane.open({ root });
    t.teardown(() => this.dp.close());
  }

  /** fixup attached at the pod's uplink and the guest's endpoint in place, with the MAC the guest uses. */
  covered(vm: VmPod): boolean {
    const inode = inodeOf(vm.podNs.path);
    if (inode === null) return false;
    const ep = this.dp.endpoint(vm.podIp);
    return (
      ep !== null &&
      ep.podNetns === inode &&
      ep.guestMac === vm.guestMac &&
      ep.hostIfindex === vm.hostVeth.ifindex &&
      this.dp.attachments().some((r) => r.program === 'fixup' && r.netnsInode === inode && r.ifname === vm.nic.name)
    );
  }

  /** Nothing of the pod with this netns inode is left (attachment records, endpoint). */
  gone(inode: number, guestIp: string): boolean {
    return !this.dp.attachments().some((r) => r.netnsInode === inode) && this.dp.endpoint(guestIp)?.podNetns !== inode;
  }

  /** What is at the tc ingress hook of an interface. */
  hook(netns: string, ifname: string): HookEntry[] {
    return this.n.listHook({ netns, ifname, hook: 'ingress' });
  }

  /** Pins under the state root (links/, filters/, maps/). */
  pins(): string[] {
    if (!fs.existsSync(this.root)) return [];
    return ['links', 'filters', 'maps'].flatMap((d) => {
      const dir = path.join(this.root, d);
      return fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => `${d}/${f}`) : [];
    });
  }
}

export function inodeOf(file: string): number | null {
  try {
    return fs.statSync(file).ino;
  } catch {
    return null;
  }
}
