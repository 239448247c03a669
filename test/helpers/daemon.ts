/**
 * The node daemon for tests: started as a child process (lib/testkit/
 * daemon-process.ts) and killed when the test ends (passed or failed); the
 * capabilities the DaemonSet gives it, its metrics, polling, and an object
 * built with other code generation (an upgrade's). Its state as the kernel
 * shows it is in state.ts.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { parse as parseYaml } from 'yaml';
import { packageRoot } from '../../lib/native.js';
import { daemonArgv, DaemonProcess, sleep, type DaemonOptions } from '../../lib/testkit/daemon-process.js';
import { compileBpf } from '../../lib/testkit/clang.js';

export { inodeOf, State } from './state.js';
export { BIN, childrenOf, daemonArgv, DaemonProcess, httpIn, imageEnv, imageNodeFlags, METRICS, sleep, type DaemonOptions, type LogLine } from '../../lib/testkit/daemon-process.js';

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
