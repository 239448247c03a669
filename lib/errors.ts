/**
 * Typed errors. Each carries the process exit code the CLI uses for it
 * (docs/design.md §8): 2 for bad usage or bad input, 1 for failures at run time.
 */
import type { NativeError } from './native.js';

export class VmpeerError extends Error {
  readonly exitCode: 1 | 2 = 1;
  override name = 'VmpeerError';
}

/** Bad usage or bad input: nothing was changed. */
export class UsageError extends VmpeerError {
  override readonly exitCode = 2;
  override name = 'UsageError';
}

export class NetnsNotFoundError extends UsageError {
  override name = 'NetnsNotFoundError';
  constructor(readonly netns: string) {
    super(`network namespace not found: ${netns} (give a name under /var/run/netns or a path such as /proc/<pid>/ns/net)`);
  }
}

export class NoSuchInterfaceError extends UsageError {
  override name = 'NoSuchInterfaceError';
  constructor(readonly ifname: string, readonly where: string) {
    super(`no interface ${ifname} in ${where}`);
  }
}

export class AlreadyAttachedError extends VmpeerError {
  override name = 'AlreadyAttachedError';
  constructor(readonly what: string) {
    super(`already attached: ${what}`);
  }
}

export class KernelUnsupportedError extends UsageError {
  override name = 'KernelUnsupportedError';
}

export class NotPermittedError extends UsageError {
  override name = 'NotPermittedError';
}

/** What a user can do about a kernel error, by errno name. */
const hints: Record<string, string> = {
  EPERM: 'run as root (CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN are needed)',
  EACCES: 'the verifier or a security module refused it; see the log above',
  ENOENT: 'it does not exist (any more)',
  ENODEV: 'check the interface name inside that network namespace',
  EEXIST: 'something is already attached there',
  EBUSY: 'a program vmpeer did not attach is there; vmpeer leaves it alone',
  EINVAL: 'the kernel rejected the request; it may be too old for this feature',
  ENOSPC: 'a map is full',
  E2BIG: 'a map is full',
  ENOMEM: 'raise the memlock limit or free memory',
};

/** A failure reported by the kernel, with its errno name and what to do about it. */
export class KernelError extends VmpeerError {
  override name = 'KernelError';
  readonly code: string;
  readonly op: string;
  readonly log?: string;

  constructor(cause: NativeError, context?: string) {
    const hint = hints[cause.code];
    super(`${context ? `${context}: ` : ''}${cause.message}${hint ? ` (${hint})` : ''}`, { cause });
    this.code = cause.code;
    this.op = cause.op;
    this.log = cause.log;
  }
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as NativeError).code === 'string' && typeof (e as NativeError).op === 'string';
}

/** Turns an addon error into the typed error a caller can act on. */
export function fromNative(e: unknown, context?: string): Error {
  if (!isNativeError(e)) return e instanceof Error ? e : new Error(String(e));
  if (e.code === 'EPERM' || (e.code === 'EACCES' && e.op !== 'bpf_object__load')) {
    return new NotPermittedError(`${context ? `${context}: ` : ''}${e.message} (run as root: vmpeer needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)`, { cause: e });
  }
  if (e.op === 'open netns' && e.code === 'ENOENT') return new NetnsNotFoundError(e.object);
  return new KernelError(e, context);
}
