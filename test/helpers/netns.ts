/**
 * Throwaway network namespaces, links and bpffs directories for tests.
 *
 * Every name starts with TEST_PREFIX so that scripts/test.mjs can sweep what a
 * killed run left behind; every resource registers its removal with
 * t.teardown(), which ava runs whether the test passed or failed.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type { ExecutionContext } from 'ava';

export const TEST_PREFIX = 'vpt';
export const BPFFS_TEST_ROOT = '/sys/fs/bpf/vpt';

/** A short unique name: interface names are limited to 15 bytes. */
export function uniqueName(tag = ''): string {
  return `${TEST_PREFIX}${tag}${randomBytes(4).toString('hex')}`.slice(0, 15);
}

/** Runs a command, returning stdout; throws with stderr on failure. */
export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

export class Netns {
  readonly path: string;

  constructor(readonly name: string) {
    this.path = `/var/run/netns/${name}`;
  }

  /** Runs a command inside the namespace. nsenter keeps /sys/fs/bpf visible (ip netns exec remounts /sys). */
  run(cmd: string, args: string[], input?: string): string {
    return sh('nsenter', [`--net=${this.path}`, cmd, ...args], input);
  }

  ip(...args: string[]): string {
    return this.run('ip', args);
  }

  delete(): void {
    try {
      sh('ip', ['netns', 'delete', this.name]);
    } catch {
      // already gone
    }
  }
}

/** A new netns with loopback up, deleted when the test ends. */
export function netns(t: ExecutionContext, tag = 'n'): Netns {
  const ns = new Netns(uniqueName(tag));
  sh('ip', ['netns', 'add', ns.name]);
  t.teardown(() => ns.delete());
  ns.ip('link', 'set', 'lo', 'up');
  return ns;
}

/**
 * A veth pair with one end in each namespace (undefined: the test's own netns),
 * both ends up. Deleting either namespace removes the pair.
 */
export function veth(
  t: ExecutionContext,
  a: { ns?: Netns; name: string; mac?: string },
  b: { ns?: Netns; name: string; mac?: string },
): void {
  sh('ip', ['link', 'add', a.name, 'type', 'veth', 'peer', 'name', b.name]);
  t.teardown(() => {
    try {
      sh('ip', ['link', 'delete', a.name]);
    } catch {
      // moved into a namespace, or already gone with it
    }
  });
  for (const end of [a, b]) {
    if (end.mac) sh('ip', ['link', 'set', end.name, 'address', end.mac]);
    if (end.ns) sh('ip', ['link', 'set', end.name, 'netns', end.ns.name]);
    const ip = end.ns ? end.ns.ip.bind(end.ns) : (...args: string[]) => sh('ip', args);
    ip('link', 'set', end.name, 'up');
  }
}

/** A fresh bpffs directory under BPFFS_TEST_ROOT, removed (with its pins) when the test ends. */
export function bpffsDir(t: ExecutionContext): string {
  const dir = `${BPFFS_TEST_ROOT}/${uniqueName()}`;
  fs.mkdirSync(dir, { recursive: true });
  t.teardown(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    try {
      fs.rmdirSync(BPFFS_TEST_ROOT);
    } catch {
      // other tests still use it
    }
  });
  return dir;
}
