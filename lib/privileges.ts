/** Checking, before anything is changed, that this process may do what vmpeer does. */
import fs from 'node:fs';
import { NotPermittedError } from './errors.js';

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_BPF = 39;

/** The effective capability set of this process, from /proc/self/status. */
export function effectiveCapabilities(status = fs.readFileSync('/proc/self/status', 'utf8')): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/**
 * vmpeer needs CAP_NET_ADMIN (tc hooks, netlink), CAP_SYS_ADMIN (setns into
 * pod namespaces) and CAP_BPF (loading programs; CAP_SYS_ADMIN also grants it).
 */
export function requirePrivileges(what: string, caps = effectiveCapabilities()): void {
  const has = (cap: number) => (caps & (1n << BigInt(cap))) !== 0n;
  const missing = [
    ...(has(CAP_NET_ADMIN) ? [] : ['CAP_NET_ADMIN']),
    ...(has(CAP_SYS_ADMIN) ? [] : ['CAP_SYS_ADMIN']),
    ...(has(CAP_BPF) || has(CAP_SYS_ADMIN) ? [] : ['CAP_BPF']),
  ];
  if (missing.length > 0) {
    throw new NotPermittedError(`${what} needs ${missing.join(', ')}: run it as root (or grant those capabilities)`);
  }
}
