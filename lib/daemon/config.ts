/**
 * The daemon's configuration: flags first, then environment variables, then
 * defaults. parseConfig() checks the syntax of every value; checkEnvironment()
 * checks, before anything is changed, that this process can do the job
 * (privileges, namespace directories, bpffs). Both throw a UsageError (exit 2)
 * with one line that says what is wrong and what to do.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { NotPermittedError, UsageError } from '../errors.js';
import { DEFAULT_BPFFS_ROOT } from '../dataplane/dataplane.js';
import { parseIfname } from '../validate.js';
import { requirePrivileges, effectiveCapabilities } from '../privileges.js';
import type { AttachMode } from '../native.js';
import { BPF_FS_MAGIC, fsType, nearestExisting, NETNS_DIR } from '../paths.js';
import { BRIDGE_FLAGS_CONTRADICT, BYPASS_BRIDGE_FLAG, KEEP_BRIDGE_FLAG } from '../dataplane/bridge-path.js';

export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9808';
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const CAP_SYS_PTRACE = 19;

export interface DaemonConfig {
  nodeName: string;
  bpffsRoot: string;
  netnsDirs: string[];
  /** Only netns files whose name starts with this are considered ('' = all). */
  netnsPrefix: string;
  /** Also find pod namespaces through /proc/<pid>/ns/net (needs hostPID). */
  proc: boolean;
  procRoot: string;
  procIntervalMs: number;
  resyncIntervalMs: number;
  logLevel: LogLevel;
  metrics: { host: string; port: number; text: string };
  accelerate: boolean;
  hostDevs: string[];
  /** Accelerate: run the redirect program before the others at the hook. */
  first: boolean;
  /** Accelerate: redirect even toward host veths with programs at their tc egress (egress-policy.ts). */
  skipEgressPrograms: boolean;
  mode: 'auto' | AttachMode;
  /**
   * Take each VM pod's bridge out of its guest's unicast IP traffic (README
   * "Bridge bypass"): the default; false with --keep-bridge. A pod where the
   * bypass is unsafe keeps its bridge either way (bridge-path.ts).
   */
  bypassBridge: boolean;
  cleanupOnExit: boolean;
  /** A BPF object other than the shipped one (testing a build). */
  object?: string;
}

/** Flag name → environment variable. */
export const ENV = {
  'node-name': 'NODE_NAME',
  bpffs: 'VMPEER_BPFFS',
  'netns-dir': 'VMPEER_NETNS_DIRS',
  'netns-prefix': 'VMPEER_NETNS_PREFIX',
  proc: 'VMPEER_PROC',
  'proc-root': 'VMPEER_PROC_ROOT',
  'proc-interval': 'VMPEER_PROC_INTERVAL',
  'resync-interval': 'VMPEER_RESYNC_INTERVAL',
  'log-level': 'VMPEER_LOG_LEVEL',
  'metrics-address': 'VMPEER_METRICS_ADDRESS',
  accelerate: 'VMPEER_ACCELERATE',
  'host-dev': 'VMPEER_HOST_DEVS',
  first: 'VMPEER_ACCELERATE_FIRST',
  'skip-egress-programs': 'VMPEER_SKIP_EGRESS_PROGRAMS',
  mode: 'VMPEER_MODE',
  'keep-bridge': 'VMPEER_KEEP_BRIDGE',
  /** The opt-in of earlier versions: true asks for the default, false keeps the bridge. */
  'bypass-bridge': 'VMPEER_BYPASS_BRIDGE',
  'cleanup-on-exit': 'VMPEER_CLEANUP_ON_EXIT',
  object: 'VMPEER_OBJECT',
} as const;

export type Flags = Partial<Record<keyof typeof ENV, string | boolean | string[] | undefined>>;

/** Parses `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds. */
/**
 * The full resync is a safety net: netlink subscriptions report every link,
 * neighbour and FDB change, and in pods every tc filter or qdisc removed
 * (and say so when the kernel had to drop some), so it is left to catch what
 * sends no event, such as a tcx link detached by someone else (read from its
 * pin). It looks into a fifth of the pods each time (about 2 ms of CPU per
 * VM pod: reconciler.ts LOOK_ROUNDS).
 */
export const DEFAULT_RESYNC_INTERVAL = '2m';

export function parseDuration(text: string, what: string, min: number, max: number): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new UsageError(`invalid ${what} '${text}': expected a duration such as 30s, 500ms or 2m`);
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  if (ms < min || ms > max) throw new UsageError(`invalid ${what} '${text}': must be between ${min} ms and ${max / 1000} s`);
  return Math.round(ms);
}

/** Parses host:port ([v6]:port; an empty host means every address). */
export function parseListenAddress(text: string, what = '--metrics-address'): { host: string; port: number; text: string } {
  const t = text.trim();
  const bad = (why: string) => new UsageError(`invalid ${what} '${text}': ${why} (expected host:port, e.g. ${DEFAULT_METRICS_ADDRESS} or [::1]:9808)`);
  let host: string;
  let portText: string;
  const v6 = /^\[([^\]]*)\]:(.*)$/.exec(t);
  if (v6) {
    [host, portText] = [v6[1]!, v6[2]!];
    if (net.isIPv6(host) === false) throw bad(`'${host}' is not an IPv6 address`);
  } else {
    if (net.isIPv6(t)) throw bad('no port');
    const colon = t.lastIndexOf(':');
    if (colon < 0) throw bad('no port');
    [host, portText] = [t.slice(0, colon), t.slice(colon + 1)];
    if (host !== '' && host !== 'localhost' && !net.isIP(host)) throw bad(`'${host}' is not an IP address`);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw bad(`port '${portText}' is not 0-65535`);
  return { host, port: Number(portText), text: t };
}

function parseBool(value: string, what: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off|)$/i.test(value)) return false;
  throw new UsageError(`invalid ${what} '${value}': expected true or false`);
}

function list(value: string): string[] {
  return value.split(/[,:\s]+/).filter((s) => s.length > 0);
}

/** Flags, then the environment, then defaults; syntax only (nothing is read from the system). */
export function parseConfig(flags: Flags, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const str = (key: keyof typeof ENV): string | undefined => {
    const f = flags[key];
    if (typeof f === 'string') return f;
    if (Array.isArray(f)) return f.length > 0 ? f.join(',') : undefined;
    return env[ENV[key]];
  };
  const many = (key: keyof typeof ENV): string[] | undefined => {
    const f = flags[key];
    if (Array.isArray(f) && f.length > 0) return f;
    if (typeof f === 'string') return [f];
    const e = env[ENV[key]];
    return e === undefined || e === '' ? undefined : list(e);
  };
  const bool = (key: keyof typeof ENV): boolean => {
    const f = flags[key];
    if (typeof f === 'boolean') return f;
    const e = env[ENV[key]];
    return e === undefined ? false : parseBool(e, `${ENV[key]}`);
  };
  /** A boolean that was given (flag or environment), or undefined. */
  const given = (key: keyof typeof ENV): boolean | undefined => {
    const f = flags[key];
    if (typeof f === 'boolean') return f;
    const e = env[ENV[key]];
    return e === undefined || e === '' ? undefined : parseBool(e, `${ENV[key]}`);
  };

  const logLevel = (str('log-level') ?? 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(`invalid --log-level '${logLevel}': expected one of ${LOG_LEVELS.join(', ')}`);
  }
  const mode = str('mode') ?? 'auto';
  if (mode !== 'auto' && mode !== 'tcx' && mode !== 'clsact') throw new UsageError(`invalid --mode '${mode}': expected auto, tcx or clsact`);

  const bpffsRoot = path.resolve(str('bpffs') ?? DEFAULT_BPFFS_ROOT);
  const netnsDirs = (many('netns-dir') ?? [NETNS_DIR]).map((d) => path.resolve(d));
  const netnsPrefix = str('netns-prefix') ?? '';
  if (netnsPrefix.includes('/')) throw new UsageError(`invalid --netns-prefix '${netnsPrefix}': a file name prefix, without '/'`);

  const accelerate = bool('accelerate');
  const hostDevs = (many('host-dev') ?? []).map((d) => parseIfname(d, '--host-dev'));
  const first = bool('first');
  const skipEgressPrograms = bool('skip-egress-programs');
  if (!accelerate && (hostDevs.length > 0 || first)) throw new UsageError('--host-dev and --first go with --accelerate');
  if (!accelerate && skipEgressPrograms) throw new UsageError('--skip-egress-programs goes with --accelerate');
  if (accelerate && hostDevs.length === 0) throw new UsageError('--accelerate needs at least one --host-dev <ifname> (the node interfaces to accelerate)');

  const keepBridge = given(KEEP_BRIDGE_FLAG);
  const bypassBridge = given(BYPASS_BRIDGE_FLAG);
  if (keepBridge === true && bypassBridge === true) {
    throw new UsageError(BRIDGE_FLAGS_CONTRADICT);
  }

  const object = str('object');
  return {
    nodeName: str('node-name') ?? env.HOSTNAME ?? '',
    bpffsRoot,
    netnsDirs: [...new Set(netnsDirs)],
    netnsPrefix,
    proc: bool('proc'),
    procRoot: path.resolve(str('proc-root') ?? '/proc'),
    procIntervalMs: parseDuration(str('proc-interval') ?? '1s', '--proc-interval', 100, 60_000),
    resyncIntervalMs: parseDuration(str('resync-interval') ?? DEFAULT_RESYNC_INTERVAL, '--resync-interval', 1_000, 3_600_000),
    logLevel: logLevel as LogLevel,
    metrics: parseListenAddress(str('metrics-address') ?? DEFAULT_METRICS_ADDRESS),
    accelerate,
    hostDevs: [...new Set(hostDevs)],
    first,
    skipEgressPrograms,
    mode,
    bypassBridge: !(keepBridge === true || bypassBridge === false),
    cleanupOnExit: bool('cleanup-on-exit'),
    object: object === undefined ? undefined : path.resolve(object),
  };
}

/**
 * Outside Kubernetes, a daemon without --netns-prefix takes every network
 * namespace of the host as a pod: it says so. (The kubelet sets
 * KUBERNETES_SERVICE_HOST in every container, hostNetwork or not.)
 */
export function scopeWarning(config: DaemonConfig, env: NodeJS.ProcessEnv = process.env): string | null {
  if (config.netnsPrefix !== '' || env.KUBERNETES_SERVICE_HOST !== undefined) return null;
  return `not on a Kubernetes node (no KUBERNETES_SERVICE_HOST) and no --netns-prefix: every network namespace under ${config.netnsDirs.join(', ')}${config.proc ? ' and of every process' : ''} is in scope, and each one that looks like a bridged VM pod gets vmpeer's programs; pass --netns-prefix to narrow it`;
}

/**
 * What the daemon needs from the system, checked before anything changes:
 * privileges, readable netns directories, a bpffs under the state root.
 * Returns warnings (logged once the logger exists).
 */
export function checkEnvironment(config: DaemonConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  const warnings: string[] = [];
  requirePrivileges('vmpeer daemon');
  const scope = scopeWarning(config, env);
  if (scope) warnings.push(scope);
  if (config.proc && (effectiveCapabilities() & (1n << BigInt(CAP_SYS_PTRACE))) === 0n) {
    warnings.push('--proc without CAP_SYS_PTRACE: namespaces of processes owned by other users cannot be opened');
  }

  for (const dir of config.netnsDirs) {
    let st: fs.Stats;
    try {
      st = fs.statSync(dir);
    } catch (e) {
      throw new UsageError(`netns directory ${dir} cannot be read (${(e as NodeJS.ErrnoException).code}): create it or mount the host's ${NETNS_DIR} there`);
    }
    if (!st.isDirectory()) throw new UsageError(`netns directory ${dir} is not a directory`);
    try {
      fs.readdirSync(dir);
    } catch (e) {
      throw new UsageError(`netns directory ${dir} cannot be read (${(e as NodeJS.ErrnoException).code}): the daemon needs to list it`);
    }
  }
  if (config.proc) {
    try {
      fs.readdirSync(config.procRoot);
    } catch (e) {
      throw new UsageError(`--proc: ${config.procRoot} cannot be read (${(e as NodeJS.ErrnoException).code})`);
    }
  }

  // the state root, or its nearest existing ancestor, must be on a bpffs
  const dir = nearestExisting(config.bpffsRoot);
  let type: number;
  try {
    type = fsType(dir);
  } catch (e) {
    throw new UsageError(`cannot inspect ${dir} (${(e as NodeJS.ErrnoException).code}) for the state root ${config.bpffsRoot}`);
  }
  if (type !== BPF_FS_MAGIC) {
    throw new UsageError(
      `${config.bpffsRoot} is not on a bpffs mount (${dir} is not bpffs): mount one with 'mount -t bpf bpf /sys/fs/bpf' or pass --bpffs <dir on bpffs>`,
    );
  }
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    throw new NotPermittedError(`${dir} is not writable for this process: vmpeer keeps its pinned state there (run as root)`);
  }
  if (config.object !== undefined && !fs.existsSync(config.object)) throw new UsageError(`--object ${config.object} does not exist`);
  return warnings;
}
