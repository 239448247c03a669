/** Checking, before anything is changed, that this process may do what vmpeer does. */
import fs from 'node:fs';
import os from 'node:os';
import { NotPermittedError } from './errors.js';

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_SYS_RESOURCE = 24;
const CAP_BPF = 39;

/** The effective capability set of this process, from /proc/self/status. */
export function effectiveCapabilities(status = fs.readFileSync('/proc/self/status', 'utf8')): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/**
 * Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (5.11 moved them to the
 * memory cgroup, kernel/bpf/syscall.c), and libbpf raising that limit needs
 * CAP_SYS_RESOURCE unless it is already unlimited.
 */
export function memlockNeeded(release = os.release(), limits = readLimits()): boolean {
  const [major = 0, minor = 0] = release.split(/[.-]/).map(Number);
  const charged = major < 5 || (major === 5 && minor < 11);
  return charged && !/^Max locked memory\s+unlimited\s/m.test(limits);
}

function readLimits(): string {
  try {
    return fs.readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return '';
  }
}

/**
 * vmpeer needs CAP_NET_ADMIN (tc hooks, netlink), CAP_SYS_ADMIN (setns into
 * pod namespaces), CAP_BPF (loading programs; CAP_SYS_ADMIN also grants it)
 * and, where BPF maps count against RLIMIT_MEMLOCK, CAP_SYS_RESOURCE.
 */
export function requirePrivileges(what: string, caps = effectiveCapabilities(), memlock = memlockNeeded()): void {
  const has = (cap: number) => (caps & (1n << BigInt(cap))) !== 0n;
  const missing = [
    ...(has(CAP_NET_ADMIN) ? [] : ['CAP_NET_ADMIN']),
    ...(has(CAP_SYS_ADMIN) ? [] : ['CAP_SYS_ADMIN']),
    ...(has(CAP_BPF) || has(CAP_SYS_ADMIN) ? [] : ['CAP_BPF']),
    ...(memlock && !has(CAP_SYS_RESOURCE) ? ['CAP_SYS_RESOURCE'] : []),
  ];
  if (missing.length > 0) {
    throw new NotPermittedError(`${what} needs ${missing.join(', ')}: run it as root (or grant those capabilities)`);
  }
}
