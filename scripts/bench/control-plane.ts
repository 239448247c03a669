/**
 * Control-plane benchmark of `vmpeer daemon` (the node daemon), on a lab node
 * in network namespaces with N bridged VM pods whose guests are netns:
 *
 *   - cold start: daemon spawned with N VM pods already there (guest MACs
 *     learned), time until every pod is covered (fixup attached at its uplink
 *     and the guest's endpoint in the pinned map, read from the pins by this
 *     process) and until /readyz answers 200;
 *   - a new pod: time from its bridge and tap existing (the guest announces
 *     itself right after) to covered, one pod at a time, with the N pods there;
 *   - idle: CPU of the daemon and of any child processes (it watches netlink
 *     in-process, so there should be none) over a window that holds one
 *     periodic full resync, and its RSS;
 *   - churn: pods created and deleted (4 at a time) while measuring CPU and RSS.
 *
 * The pods are built here rather than with DynamicPods: the lab's addressing
 * has room for 100 VM pods (198.18.1.10+i), and DynamicPods names guests
 * `<lab>-d<n>g`, which a daemon with `--netns-prefix <lab>-` takes for 250
 * more (plain) pods. The wiring is the same (CNI veth, pod IP route and proxy
 * ARP on the node; dummy, bridge, tap in the pod; netns guest), the names are
 * `<lab>-pa<i>` (the first 50), `<lab>-pb<i>`, `<lab>-pn<i>` (added while the
 * daemon runs) and `<lab>-g<i>` (guests, outside every prefix the daemon is
 * given), the pod IPs 198.18.2.1 and up. The lab adopts every namespace, so
 * its destroy() (and its exit hook) deletes them whatever happens.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { DEFAULT_RESYNC_INTERVAL, parseDuration } from '../../lib/daemon/config.js';
import { Dataplane } from '../../lib/dataplane/dataplane.js';
import { native, packageRoot } from '../../lib/native.js';
import { BRIDGE_IP, CALICO_HOST_MAC, GATEWAY_IP, POD_IF, VM_BRIDGE, VM_NIC, VM_TAP, caliName, randomMac, randomTag } from '../../lib/lab/addressing.js';
import { announce } from '../../lib/lab/dynamic.js';
import { ipBatch, run, runIn, sysctls, killAndWait } from '../../lib/lab/exec.js';
import { Lab } from '../../lib/lab/lab.js';
import { netnsRef, type NetnsRef } from '../../lib/lab/netns.js';
import type { VmPod } from '../../lib/lab/topology.js';
import { childrenOf, daemonArgv, DaemonProcess, imageNodeFlags, METRICS } from '../../test/helpers/daemon.js';
import { median, percentile } from './stats.js';

// ------------------------------------------------------------------ result

export interface ColdStart {
  /** VM pods on the node when the daemon was spawned. */
  pods: number;
  /**
   * The daemon's --mode: 'auto' (what it runs by default: clsact filters in VM pods) or
   * 'tcx', a diagnostic run (full runs only, where the kernel has tcx): a tcx attach holds the
   * rtnl lock across an RCU grace period, so attaches queue one behind the other.
   */
  mode: 'auto' | 'tcx';
  /** Seconds from spawn until every pod was covered (polled from the pins every POLL_MS). */
  coveredS: number | null;
  /** Seconds from spawn until /readyz answered 200 (polled from inside the node netns). */
  readyzS: number | null;
  /** Seconds from spawn to the daemon's own "ready" log line, and to its last attach/endpoint change log line. */
  readyLogS: number | null;
  lastChangeLogS: number | null;
  /** Pods covered at the end of the wait. */
  covered: number;
  /** CPU seconds the daemon and its children used from spawn to covered. */
  cpuS: number;
  /** Daemon RSS right after covered. */
  rssMb: number;
  /** Child processes once covered (none expected: netlink is watched in-process). */
  children: number;
  loadavg: number[];
}

export interface Latencies {
  /** ms, in the order measured. */
  samples: number[];
  p50: number;
  p99: number;
  max: number;
}

export interface CpuWindow {
  windowS: number;
  /** CPU of the daemon and its children, in % of one core, over the window. */
  pctOfCore: number;
  /** Per-second % of a core (1 s samples): the median shows the floor, the max the resync. */
  perSecondMedianPct: number;
  perSecondMaxPct: number;
  /** Of it, the share of child processes. */
  childrenPct: number;
  /** Mean of the seconds that are not bursts (a burst: more than 5 points above the median second). */
  floorPct: number;
  /** CPU seconds of the bursts above the median (idle: the periodic full resync). */
  burstCpuS: number;
  loadavg: number[];
}

export interface ControlPlaneResult {
  quick: boolean;
  date: string;
  machine: { cpus: number; kernel: string; node: string; loadavgStart: number[]; loadavgEnd: number[] };
  /** Daemon: its Node.js flags (the image's), resync interval. */
  daemon: { nodeFlags: string[]; resyncIntervalS: number; logLevel: string; commit: string | null };
  build: { pods: number; seconds: number };
  coldStart: ColdStart[];
  /** spanS: first to last addition (more than a resync interval in full runs). */
  newPod: Latencies & { basePods: number; sinceAnnouncedP50: number; spanS: number };
  rss: {
    idleMb: number;
    churnMaxMb: number;
    afterMb: number;
    /** The children when idle: count, summed RSS and PSS. */
    children: { count: number; rssMb: number; pssMb: number };
  };
  cpu: { idle: CpuWindow; churn: CpuWindow & { cycles: number } };
  churnCover: Latencies;
  counts: { podsBuilt: number; podsAdded: number; podsDeleted: number; coveredAtEnd: number; pollMs: number };
  targets: Array<{ name: string; target: string; value: string; met: boolean | null }>;
  notes: string[];
}

// ------------------------------------------------------------------ knobs

const POLL_MS = 20;
/** The daemon's default full resync interval: the idle window holds one. */
const RESYNC_S = parseDuration(DEFAULT_RESYNC_INTERVAL, 'resync interval', 0, Infinity) / 1000;
// additions are spaced so that they span more than one resync interval: some of them meet a periodic full resync
const FULL = { pods: [50, 250], additions: 25, additionGapMs: Math.ceil((RESYNC_S * 1000) / 24), idleS: RESYNC_S + 2, churnS: 30, churnParallel: 4 };
const QUICK = { pods: [10], additions: 5, additionGapMs: 200, idleS: 3, churnS: 4, churnParallel: 2 };
const BRIDGE_SETTLED_MS = 20_000;
const BUILD_BATCH = 50;
const CONCURRENCY = 8;

// ------------------------------------------------------------------ small helpers

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;
const loadavg = () => os.loadavg().map((x) => round(x, 2));

async function pool<T, R>(items: T[], n: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const errors: unknown[] = [];
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length && errors.length === 0) {
        const i = next++;
        try {
          out[i] = await fn(items[i]!, i);
        } catch (e) {
          errors.push(e);
        }
      }
    }),
  );
  if (errors.length > 0) throw errors[0];
  return out;
}

function latencies(samples: number[]): Latencies {
  if (samples.length === 0) return { samples, p50: NaN, p99: NaN, max: NaN };
  return { samples, p50: percentile(samples, 50), p99: percentile(samples, 99), max: Math.max(...samples) };
}

const TICK_MS = 1000 / 100; // USER_HZ is 100 on Linux

/** utime, stime, cutime, cstime of a process, in clock ticks; null when it is gone. */
function statTimes(pid: number): { own: number; reaped: number } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { own: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) };
  } catch {
    return null;
  }
}

/** Every descendant of a process (children of all its threads, recursively). */
function descendants(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const kids = new Set<number>();
  for (const tid of tasks) {
    if (Number(tid) === pid) for (const c of childrenOf(pid)) kids.add(c);
    else {
      try {
        for (const c of fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) kids.add(Number(c));
      } catch {
        // the thread ended
      }
    }
  }
  return [...kids].flatMap((c) => [c, ...descendants(c)]);
}

/**
 * CPU time of a process tree in ms: the process itself, the children it
 * has waited for (cutime/cstime), and the ones still running.
 */
export function treeCpuMs(pid: number): { total: number; children: number } {
  const self = statTimes(pid);
  if (!self) return { total: 0, children: 0 };
  let live = 0;
  for (const c of descendants(pid)) live += statTimes(c)?.own ?? 0;
  return { total: (self.own + self.reaped + live) * TICK_MS, children: (self.reaped + live) * TICK_MS };
}

function statusKb(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function pssKb(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

const mb = (kb: number) => round(kb / 1024, 1);

/** The commit of the daemon under test, "+" when lib/ has uncommitted changes; null outside a git checkout. */
function commitOf(): string | null {
  const git = (args: string[]) => spawnSync('git', ['-C', packageRoot, ...args], { encoding: 'utf8' });
  const head = git(['rev-parse', '--short', 'HEAD']);
  if (head.status !== 0) return null;
  const dirty = git(['status', '--porcelain', '--', 'lib']).stdout.trim() !== '';
  return `${head.stdout.trim()}${dirty ? '+' : ''}`;
}

// ------------------------------------------------------------------ VM pods

export interface BenchVm extends VmPod {
  readonly name: string;
  readonly inode: number;
  /** When its bridge and tap both existed and forwarded (Date.now()). */
  readyAt: number;
  /** When its guest had announced itself (the bridge learned its MAC). */
  announcedAt: number;
}

/** The i-th bench pod IP: 198.18.2.1 … 198.18.2.250, 198.18.3.1 … (inside the lab's 198.18.0.0/15). */
function benchPodIp(i: number): string {
  return `198.18.${2 + Math.floor(i / 250)}.${1 + (i % 250)}`;
}

/** Creates and deletes bridged VM pods with netns guests on a lab's node, in batches. */
export class PodFactory {
  private seq = 0;
  private readonly live = new Map<string, BenchVm>();

  constructor(private readonly lab: Lab) {}

  get pods(): BenchVm[] {
    return [...this.live.values()];
  }

  /**
   * Creates VM pods named `names`; resolves when each has its bridge and tap
   * forwarding and (announce) its guest MAC learned by the bridge.
   */
  async create(names: string[], announceGuests = true): Promise<BenchVm[]> {
    const out: BenchVm[] = [];
    for (let i = 0; i < names.length; i += BUILD_BATCH) out.push(...(await this.createBatch(names.slice(i, i + BUILD_BATCH), announceGuests)));
    return out;
  }

  private async createBatch(names: string[], announceGuests: boolean): Promise<BenchVm[]> {
    const node = this.lab.node.ns;
    const plans = names.map((name) => {
      const index = this.seq++;
      const mac = randomMac(0x0a);
      return {
        name,
        index,
        podNs: netnsRef(name),
        guestNs: netnsRef(`${this.lab.name}-g${index}`),
        podIp: benchPodIp(index),
        mac,
        nicMac: randomMac(0x06),
        cali: caliName(),
      };
    });
    // adopted first: whatever happens from here, the lab deletes them
    for (const p of plans) {
      this.lab.adopt(p.podNs);
      this.lab.adopt(p.guestNs);
    }
    // the CNI: namespaces, veths (each end created in its netns), then the node side
    await ipBatch(
      plans.flatMap((p) => [
        `netns add ${p.podNs.name}`,
        `netns add ${p.guestNs.name}`,
        `link add ${p.cali} netns ${node.name} address ${CALICO_HOST_MAC} type veth peer name ${VM_NIC} netns ${p.podNs.name} address ${p.nicMac}`,
        `link add ${VM_TAP} netns ${p.podNs.name} address ${randomMac(0x0e)} type veth peer name ${POD_IF} netns ${p.guestNs.name} address ${p.mac}`,
      ]),
    );
    await ipBatch(
      plans.flatMap((p) => [`link set ${p.cali} up`, `route replace ${p.podIp}/32 dev ${p.cali} scope link`]),
      node.name,
    );
    await sysctls(
      node.path,
      plans.flatMap((p) => [
        [`net.ipv4.conf.${p.cali}.proxy_arp`, 1],
        [`net.ipv4.neigh.${p.cali}.proxy_delay`, 0],
      ]) as Array<[string, number]>,
    );
    // virt-launcher (dummy, bridge, tap) and the guests
    const dummy = await dummyKind(plans[0]!.podNs.name);
    await pool(plans, CONCURRENCY, async (p) => {
      await Promise.all([
        sysctls(p.podNs.path, [
          ['net.ipv6.conf.all.disable_ipv6', 1],
          ['net.ipv6.conf.default.disable_ipv6', 1],
          ['net.ipv4.conf.all.arp_ignore', 1],
        ]).then(() =>
          ipBatch(
            [
              'link set lo up',
              `link add ${POD_IF} address ${p.mac} type ${dummy}`,
              `addr add ${p.podIp}/32 dev ${POD_IF}`,
              // a guest that talks keeps its FDB entry; the bench's guests talk once, so the entry must not age out (default 300 s) mid-run
              `link add ${VM_BRIDGE} address ${p.nicMac} type bridge ageing_time 360000`,
              `addr add ${BRIDGE_IP}/32 dev ${VM_BRIDGE}`,
              `link set ${VM_NIC} master ${VM_BRIDGE}`,
              `link set ${VM_NIC} type bridge_slave learning off`,
              `link set ${VM_TAP} master ${VM_BRIDGE}`,
              `link set ${VM_BRIDGE} up`,
              `link set ${VM_NIC} up`,
              `link set ${VM_TAP} up`,
            ],
            p.podNs.name,
          ),
        ),
        sysctls(p.guestNs.path, [
          ['net.ipv6.conf.all.disable_ipv6', 1],
          ['net.ipv6.conf.default.disable_ipv6', 1],
        ]).then(() =>
          ipBatch(
            [
              'link set lo up',
              `link set ${POD_IF} up`,
              `addr add ${p.podIp}/32 dev ${POD_IF}`,
              `route add ${GATEWAY_IP} dev ${POD_IF} scope link`,
              `route add default via ${GATEWAY_IP} dev ${POD_IF}`,
            ],
            p.guestNs.name,
          ),
        ),
      ]);
    });
    const nodeLinks = new Map(
      (JSON.parse((await run('ip', ['-j', '-n', node.name, 'link', 'show'])).stdout) as Array<{ ifname: string; ifindex: number; link_index?: number }>).map((l) => [l.ifname, l]),
    );
    return pool(plans, CONCURRENCY, async (p) => {
      const cali = nodeLinks.get(p.cali);
      if (!cali) throw new Error(`bench: ${p.cali} is missing in the node`);
      await forwarding(p.podNs.path);
      const vm: BenchVm = {
        name: p.name,
        inode: fs.statSync(p.podNs.path).ino,
        index: p.index,
        podNs: p.podNs,
        podIp: p.podIp,
        guestMac: p.mac,
        dummyMac: p.mac,
        dummyKind: dummy,
        bridgeTxChecksumOff: false,
        nic: { name: VM_NIC, ifindex: cali.link_index ?? 0, mac: p.nicMac },
        bridge: VM_BRIDGE,
        tap: VM_TAP,
        hostVeth: { name: p.cali, ifindex: cali.ifindex, mac: CALICO_HOST_MAC },
        guest: { label: `g${p.index}`, ns: p.guestNs, ip: p.podIp },
        guestNs: p.guestNs,
        readyAt: Date.now(),
        announcedAt: 0,
      };
      this.live.set(p.name, vm);
      if (announceGuests) await announceLearned(vm);
      return vm;
    });
  }

  /** Deletes pods the way a runtime does (their netns files go). */
  async remove(vms: BenchVm[]): Promise<void> {
    for (const vm of vms) this.live.delete(vm.name);
    await ipBatch(vms.flatMap((vm) => [`netns delete ${vm.podNs.name}`, `netns delete ${vm.guestNs!.name}`]));
    for (const vm of vms) {
      this.lab.disown(vm.podNs);
      this.lab.disown(vm.guestNs!);
    }
  }
}

let dummyType: 'dummy' | 'bridge' | undefined;

/** The kind of the pod's `eth0`: a dummy, or (no dummy driver in this kernel) a DOWN bridge, as the lab does. */
async function dummyKind(nsName: string): Promise<'dummy' | 'bridge'> {
  if (!dummyType) {
    const probe = await run('ip', ['-n', nsName, 'link', 'add', 'vptprobe', 'type', 'dummy'], { allowFail: true });
    dummyType = probe.code === 0 ? 'dummy' : 'bridge';
    if (probe.code === 0) await run('ip', ['-n', nsName, 'link', 'delete', 'vptprobe']);
  }
  return dummyType;
}

/** Waits until the pod's bridge ports forward (the kernel's linkwatch may take up to a second). */
async function forwarding(nsPath: string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const { stdout } = await runIn(nsPath, 'bridge', ['-j', 'link', 'show']);
    const state = new Map((JSON.parse(stdout || '[]') as Array<{ ifname: string; state?: string; flags?: string[] }>).map((p) => [p.ifname, p]));
    if ([VM_NIC, VM_TAP].every((p) => state.get(p)?.state === 'forwarding' && state.get(p)?.flags?.includes('LOWER_UP'))) return;
    if (Date.now() > deadline) throw new Error(`bench: bridge ports in ${nsPath} do not forward: ${stdout}`);
    await sleep(10);
  }
}

/** The guest announces itself (ARP for its gateway); again until the bridge has learned its MAC on the tap. */
async function announceLearned(vm: BenchVm): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    await announce(vm);
    const { stdout } = await runIn(vm.podNs.path, 'bridge', ['-j', 'fdb', 'show', 'br', VM_BRIDGE]);
    const fdb = JSON.parse(stdout || '[]') as Array<{ mac: string; ifname: string; state?: string; flags?: string[] }>;
    if (fdb.some((e) => e.ifname === VM_TAP && e.mac.toLowerCase() === vm.guestMac && e.state !== 'permanent' && !e.flags?.includes('self'))) {
      vm.announcedAt = Date.now();
      return;
    }
    await sleep(100);
  }
  throw new Error(`bench: the bridge of ${vm.podNs.name} never learned the guest MAC ${vm.guestMac}`);
}

// ------------------------------------------------------------------ the daemon

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

class Prober {
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

export function startDaemon(lab: Lab, root: string, prefix: string, args: string[] = []): Running {
  const options = { nodeNs: lab.node.ns.path, root, prefix, args: ['--cleanup-on-exit', ...args], nodeArgs: imageNodeFlags() };
  const argv = daemonArgv(options);
  const spawnAt = Date.now();
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  child.on('error', () => undefined);
  return { d: new DaemonProcess(options, child), root, spawnAt };
}

/** SIGTERM (the daemon removes everything it attached: --cleanup-on-exit), SIGKILL if it hangs; then the pins go. */
export async function stopDaemon(r: Running): Promise<void> {
  if (r.d.alive) await r.d.kill('SIGTERM', 30_000);
  fs.rmSync(path.dirname(r.root), { recursive: true, force: true });
}

/** What the daemon has in place, read from its pins: is this pod covered? */
class Coverage {
  constructor(private readonly dp: Dataplane) {}

  covered(vms: BenchVm[]): BenchVm[] {
    const attached = new Set(
      this.dp
        .attachments()
        .filter((r) => r.program === 'fixup')
        .map((r) => `${r.netnsInode}/${r.ifname}`),
    );
    return vms.filter((vm) => {
      if (!attached.has(`${vm.inode}/${VM_NIC}`)) return false;
      const ep = this.dp.endpoint(vm.podIp);
      return ep !== null && ep.podNetns === vm.inode && ep.guestMac === vm.guestMac && ep.hostIfindex === vm.hostVeth.ifindex;
    });
  }

  gone(vm: BenchVm): boolean {
    return !this.dp.attachments().some((r) => r.netnsInode === vm.inode) && this.dp.endpoint(vm.podIp)?.podNetns !== vm.inode;
  }
}

/** Polls until `fn` is true; returns Date.now() at that moment, or null after `timeoutMs`. */
async function until(fn: () => boolean, timeoutMs: number, everyMs = POLL_MS): Promise<number | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (fn()) return Date.now();
    if (Date.now() > deadline) return null;
    await sleep(everyMs);
  }
}

// ------------------------------------------------------------------ phases

async function coldStart(
  lab: Lab,
  vms: BenchVm[],
  prefix: string,
  keep: boolean,
  mode: ColdStart['mode'] = 'auto',
): Promise<{ result: ColdStart; running: Running; dp: Dataplane }> {
  const root = `/sys/fs/bpf/${lab.name}-cp${randomTag(2)}/vmpeer`;
  fs.mkdirSync(root, { recursive: true });
  // the maps are created here, before the clock starts, so that reading them costs the daemon nothing
  Dataplane.open({ root }).close(); // the daemon takes the node lock: this process only reads
  const dp = Dataplane.view({ root })!;
  const cov = new Coverage(dp);
  const prober = new Prober(lab.node.ns.path);
  let running: Running | null = null;
  try {
    await prober.started();
    const loads = loadavg();
    running = startDaemon(lab, root, prefix, mode === 'auto' ? [] : ['--mode', mode]);
    const r = running;
    let pending = vms;
    const coveredAt = await until(() => {
      if (!r.d.alive) throw new Error(`bench: the daemon exited: ${r.d.stderr}`);
      const now = cov.covered(pending);
      if (now.length > 0) pending = pending.filter((vm) => !now.includes(vm));
      return pending.length === 0;
    }, 120_000);
    const cpu = treeCpuMs(r.d.pid).total;
    const rss = statusKb(r.d.pid, 'VmRSS');
    const children = descendants(r.d.pid).length;
    const readyzAt = (await until(() => prober.readyAt() !== null, 30_000)) && prober.readyAt();
    // the daemon's log times are ISO strings (ms)
    const logAt = (pred: (l: { msg: string; change?: string }) => boolean) => {
      const hits = r.d.logs.filter((l) => pred(l));
      return hits.length > 0 ? Date.parse(String(hits.at(-1)!.time)) : null;
    };
    const readyLog = logAt((l) => l.msg === 'ready: first full reconcile done');
    const lastChange = logAt((l) => l.change === 'attach' || l.change === 'endpoint_add');
    const s = (t: number | null) => (t === null ? null : round((t - r.spawnAt) / 1000));
    const result: ColdStart = {
      pods: vms.length,
      mode,
      coveredS: s(coveredAt),
      readyzS: s(readyzAt),
      readyLogS: s(readyLog),
      lastChangeLogS: s(lastChange),
      covered: vms.length - pending.length,
      cpuS: round(cpu / 1000, 2),
      rssMb: mb(rss),
      children,
      loadavg: loads,
    };
    if (!keep) {
      await stopDaemon(r);
      dp.close();
    }
    return { result, running: r, dp };
  } catch (e) {
    if (running) await stopDaemon(running).catch(() => undefined);
    dp.close();
    fs.rmSync(path.dirname(root), { recursive: true, force: true });
    throw e;
  } finally {
    await prober.stop();
  }
}

/** CPU of the daemon tree over `seconds`, sampled each second; RSS samples go to `rss`. */
async function cpuWindow(pid: number, seconds: number, rss: number[], busy?: Promise<unknown>): Promise<CpuWindow> {
  const loads = loadavg();
  const start = treeCpuMs(pid);
  const t0 = performance.now();
  const perSecond: number[] = [];
  let last = start.total;
  let lastT = t0;
  let stop = false;
  void busy?.finally(() => (stop = true));
  while (performance.now() - t0 < seconds * 1000 - 5 && !stop) {
    await sleep(Math.min(1000, seconds * 1000 - (performance.now() - t0)));
    const now = treeCpuMs(pid).total;
    const t = performance.now();
    perSecond.push(((now - last) / (t - lastT)) * 100);
    rss.push(statusKb(pid, 'VmRSS'));
    last = now;
    lastT = t;
  }
  const end = treeCpuMs(pid);
  const elapsed = performance.now() - t0;
  const med = median(perSecond);
  const bursts = perSecond.filter((x) => x > med + 5);
  const calm = perSecond.filter((x) => x <= med + 5);
  return {
    windowS: round(elapsed / 1000, 1),
    pctOfCore: round(((end.total - start.total) / elapsed) * 100, 2),
    floorPct: round(calm.reduce((a, b) => a + b, 0) / Math.max(1, calm.length), 2),
    burstCpuS: round(bursts.reduce((a, x) => a + (x - med) / 100, 0), 2),
    perSecondMedianPct: round(med, 2),
    perSecondMaxPct: round(Math.max(...perSecond), 2),
    childrenPct: round(((end.children - start.children) / elapsed) * 100, 2),
    loadavg: loads,
  };
}

// ------------------------------------------------------------------ the benchmark

export async function controlPlane(options: { quick: boolean }): Promise<ControlPlaneResult> {
  const knobs = options.quick ? QUICK : FULL;
  const notes: string[] = [];
  const loadStart = loadavg();
  const maxPods = Math.max(...knobs.pods);
  const lab = await Lab.create({ prefix: 'vpt', vmPods: 0, plainPods: 0, emulator: false });
  const pods = new PodFactory(lab);
  let running: Running | null = null;
  let dp: Dataplane | null = null;
  // the daemons die with this process (pdeathsig); their pins must not outlive it either
  const rmPins = () => {
    for (const e of fs.readdirSync('/sys/fs/bpf')) if (e.startsWith(`${lab.name}-cp`)) fs.rmSync(`/sys/fs/bpf/${e}`, { recursive: true, force: true });
  };
  process.once('exit', rmPins);
  try {
    // ---- the node: maxPods VM pods, guests announced
    const tBuild = performance.now();
    const small = Math.min(...knobs.pods);
    const names = Array.from({ length: maxPods }, (_, i) => (i < small ? `${lab.name}-pa${i}` : `${lab.name}-pb${i}`));
    const built = await pods.create(names);
    const buildS = round((performance.now() - tBuild) / 1000, 1);
    // A bridge sends a link notification for its ports about 15 s after it came up (its
    // forward-delay timer, even without STP): each pod gets one more check then. On a node
    // the daemon (re)starts on, the bridges are older than that; so are they here.
    if (!options.quick) await sleep(Math.max(0, Math.max(...built.map((vm) => vm.readyAt)) + BRIDGE_SETTLED_MS - Date.now()));

    // ---- cold starts: the smaller set (prefix <lab>-pa), then all (prefix <lab>-p), each with a fresh
    // daemon and state; in full runs, all in tcx mode too (diagnostic), before the one that stays
    const runs: Array<{ n: number; mode: ColdStart['mode'] }> = knobs.pods.map((n) => ({ n, mode: 'auto' as const }));
    if (!options.quick && native().kernelFeatures().tcx) runs.splice(runs.length - 1, 0, { n: maxPods, mode: 'tcx' });
    const cold: ColdStart[] = [];
    for (const { n, mode } of runs) {
      const last = n === maxPods && mode === 'auto';
      const prefix = n === small && n !== maxPods ? `${lab.name}-pa` : `${lab.name}-p`;
      const r = await coldStart(lab, built.slice(0, n), prefix, last, mode);
      cold.push(r.result);
      if (last) {
        running = r.running;
        dp = r.dp;
      } else {
        await sleep(1000);
      }
    }
    const d = running!.d;
    const cov = new Coverage(dp!);

    // ---- idle: the pods settled, nothing changes; the window holds one periodic full resync
    await sleep(options.quick ? 500 : 3000);
    const idleRss: number[] = [];
    const idle = await cpuWindow(d.pid, knobs.idleS, idleRss);
    const kids = descendants(d.pid);
    const children = {
      count: kids.length,
      rssMb: mb(kids.reduce((s, p) => s + statusKb(p, 'VmRSS'), 0)),
      pssMb: mb(kids.reduce((s, p) => s + pssKb(p), 0)),
    };
    const idleMb = mb(statusKb(d.pid, 'VmRSS'));

    // ---- new pods, one at a time, with the others there
    const add: number[] = [];
    const sinceAnnounced: number[] = [];
    let added = 0;
    let deleted = 0;
    let seq = 0;
    const newName = () => `${lab.name}-pn${seq++}`;
    const tAdd = performance.now();
    for (let i = 0; i < knobs.additions; i++) {
      const [vm] = await pods.create([newName()]);
      const at = await until(() => cov.covered([vm!]).length === 1, 10_000, 5);
      added++;
      if (at === null) throw new Error(`bench: new pod ${vm!.name} not covered within 10 s`);
      add.push(at - vm!.readyAt);
      sinceAnnounced.push(at - vm!.announcedAt);
      await sleep(knobs.additionGapMs);
    }
    const spanS = round((performance.now() - tAdd) / 1000, 1);
    const failed = d.logs.filter((l) => l.msg === 'pod check failed' && String(l.netns ?? '').includes('-pn'));
    if (failed.length > 0) notes.push(`new pods: ${failed.length} check(s) of a pod being wired up failed and were retried (${[...new Set(failed.map((l) => String(l.err)))].join('; ')})`);
    // the added pods stay: the node has maxPods + additions VM pods from here on

    // ---- churn: pods created and deleted, several at a time, while measuring
    const churnCover: number[] = [];
    const churnRss: number[] = [];
    let cycles = 0;
    let churning = true;
    const worker = async () => {
      while (churning) {
        const [vm] = await pods.create([newName()]);
        added++;
        const at = await until(() => cov.covered([vm!]).length === 1, 10_000, 10);
        if (at === null) throw new Error(`bench: churn pod ${vm!.name} not covered within 10 s`);
        churnCover.push(at - vm!.readyAt);
        await pods.remove([vm!]);
        deleted++;
        if ((await until(() => cov.gone(vm!), 10_000, 10)) === null) throw new Error(`bench: churn pod ${vm!.name} not cleaned up within 10 s`);
        cycles++;
      }
    };
    const workers = Promise.all(Array.from({ length: knobs.churnParallel }, worker));
    const churnCpu = await cpuWindow(d.pid, knobs.churnS, churnRss, workers);
    churning = false;
    await workers;
    await sleep(options.quick ? 500 : 3000);
    const afterMb = mb(statusKb(d.pid, 'VmRSS'));

    const everyone = pods.pods;
    const coveredAtEnd = cov.covered(everyone).length;
    if (!d.alive) throw new Error(`bench: the daemon exited: ${d.stderr}`);

    const newPod = { ...latencies(add), basePods: maxPods, sinceAnnouncedP50: median(sinceAnnounced), spanS };
    const rss = { idleMb, churnMaxMb: mb(Math.max(...churnRss, 0)), afterMb, children };
    const big = cold.find((c) => c.pods === maxPods && c.mode === 'auto')!;
    const full = !options.quick;
    const targets: ControlPlaneResult['targets'] = [
      {
        name: `cold start, ${maxPods} VM pods covered`,
        target: '≤ 3 s (250 pods)',
        value: `${big.coveredS ?? 'not'} s`,
        met: full ? big.coveredS !== null && big.coveredS <= 3 : null,
      },
      { name: 'a new pod covered, p99', target: '≤ 1 s', value: `${newPod.p99} ms (p50 ${newPod.p50} ms)`, met: full ? newPod.p99 <= 1000 : null },
      {
        name: 'daemon RSS (idle / churn max / after)',
        target: '≤ 80 MB',
        value: `${rss.idleMb} / ${rss.churnMaxMb} / ${rss.afterMb} MiB`,
        met: full ? Math.max(rss.idleMb, rss.churnMaxMb, rss.afterMb) * 1.048576 <= 80 : null,
      },
      { name: 'idle CPU (daemon + children)', target: '≤ 1 % of a core', value: `${idle.pctOfCore} %`, met: full ? idle.pctOfCore <= 1 : null },
    ];
    if (options.quick) notes.push('quick run: a smoke test of the benchmark; its numbers are not compared with the targets');
    const loads = [loadStart, ...cold.map((c) => c.loadavg), idle.loadavg, churnCpu.loadavg].map((l) => l[0]!);
    if (loadStart[0]! > os.cpus().length * 0.5) {
      notes.push(`the machine was not idle when the run began (1-min load average ${loadStart[0]} on ${os.cpus().length} CPUs): times are inflated by other work; CPU seconds much less so`);
    }
    notes.push(`1-min load average over the run (this benchmark's own pod building included): ${Math.min(...loads)} to ${Math.max(...loads)}`);
    notes.push(
      `idle window: ${idle.windowS} s with the resync interval at ${RESYNC_S} s, so ${idle.windowS >= RESYNC_S ? 'it holds one periodic full resync (the per-second max)' : 'it may hold no resync'}`,
    );

    return {
      quick: options.quick,
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, kernel: os.release(), node: process.version, loadavgStart: loadStart, loadavgEnd: loadavg() },
      daemon: { nodeFlags: imageNodeFlags(), resyncIntervalS: RESYNC_S, logLevel: 'info', commit: commitOf() },
      build: { pods: maxPods, seconds: buildS },
      coldStart: cold,
      newPod,
      rss,
      cpu: { idle, churn: { ...churnCpu, cycles } },
      churnCover: latencies(churnCover),
      counts: { podsBuilt: built.length, podsAdded: added, podsDeleted: deleted, coveredAtEnd, pollMs: POLL_MS },
      targets,
      notes,
    };
  } finally {
    if (running) await stopDaemon(running).catch(() => undefined);
    dp?.close();
    await lab.destroy();
    rmPins();
    process.off('exit', rmPins);
  }
}

// ------------------------------------------------------------------ report

export function formatControlPlane(r: ControlPlaneResult): string {
  const mark = (m: boolean | null) => (m === null ? '–' : m ? 'met' : '**missed**');
  const lines: string[] = [];
  lines.push('## Control plane: `vmpeer daemon`');
  lines.push('');
  lines.push(
    `A lab node (network namespaces) with bridged VM pods whose guests are netns; the daemon runs as the image does (Node.js ${r.machine.node}, ${r.daemon.nodeFlags.join(' ') || 'no flags'}), ` +
      `resync every ${r.daemon.resyncIntervalS} s, log level ${r.daemon.logLevel}, commit ${r.daemon.commit ?? 'unknown'}. ${r.machine.cpus} CPUs, kernel ${r.machine.kernel}, load average ${r.machine.loadavgStart.join(' ')} at the start.` +
      ` CPU counts the daemon and every child process (it should have none: netlink is read in-process).`,
  );
  lines.push('');
  lines.push('| target | goal | measured | |');
  lines.push('|---|---|---|---|');
  for (const t of r.targets) lines.push(`| ${t.name} | ${t.target} | ${t.value} | ${mark(t.met)} |`);
  lines.push('');
  lines.push('**Cold start** (daemon spawned with the pods there, guest MACs learned; covered = fixup attached and the endpoint in the pinned map):');
  lines.push('');
  lines.push('| VM pods | --mode | all covered | /readyz 200 | last change logged | CPU used | RSS then | children | load avg |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---|');
  for (const c of r.coldStart) {
    lines.push(
      `| ${c.pods} | ${c.mode === 'auto' ? 'auto (clsact in pods)' : `${c.mode}, diagnostic`} | ${c.coveredS ?? `${c.covered}/${c.pods} only`} s | ${c.readyzS ?? '–'} s | ${c.lastChangeLogS ?? '–'} s | ${c.cpuS} s | ${c.rssMb} MiB | ${c.children} | ${c.loadavg.join(' ')} |`,
    );
  }
  const clsact = r.coldStart.find((c) => c.mode === 'auto' && c.pods === Math.max(...r.coldStart.map((x) => x.pods)));
  const tcx = r.coldStart.find((c) => c.mode === 'tcx');
  if (tcx?.coveredS && clsact?.coveredS) {
    lines.push('');
    lines.push(
      `Why clsact in pods: with \`--mode tcx\` the same ${tcx.pods} pods take ${tcx.coveredS} s against ${clsact.coveredS} s. tcx_link_attach() holds the rtnl lock across an RCU grace period, ` +
        'so tcx attaches queue one behind the other (about 13 ms each, however many run at once: the daemon attaches off the JS thread, 32 at a time); a clsact filter does not wait.',
    );
  }
  lines.push('');
  lines.push(
    `**A new pod** (${r.newPod.samples.length} added one at a time next to ${r.newPod.basePods}, over ${r.newPod.spanS} s${r.newPod.spanS >= r.daemon.resyncIntervalS ? ', so that some meet a periodic resync' : ''}; from its bridge and tap forwarding, the guest announcing itself right after, to covered): ` +
      `p50 ${r.newPod.p50} ms, p99 ${r.newPod.p99} ms, max ${r.newPod.max} ms (p50 ${r.newPod.sinceAnnouncedP50} ms after the bridge had learned the guest MAC).`,
  );
  lines.push('');
  lines.push('**Resources:**');
  lines.push('');
  lines.push('| | CPU, % of a core | per second: median / max | of it, children | RSS |');
  lines.push('|---|---:|---:|---:|---:|');
  lines.push(`| idle, ${r.cpu.idle.windowS} s | ${r.cpu.idle.pctOfCore} | ${r.cpu.idle.perSecondMedianPct} / ${r.cpu.idle.perSecondMaxPct} | ${r.cpu.idle.childrenPct} | ${r.rss.idleMb} MiB |`);
  lines.push(`| idle, without its bursts | ${r.cpu.idle.floorPct} | | | |`);
  lines.push(
    `| churn, ${r.cpu.churn.windowS} s, ${r.cpu.churn.cycles} create/delete cycles | ${r.cpu.churn.pctOfCore} | ${r.cpu.churn.perSecondMedianPct} / ${r.cpu.churn.perSecondMaxPct} | ${r.cpu.churn.childrenPct} | max ${r.rss.churnMaxMb} MiB |`,
  );
  lines.push(`| after churn | | | | ${r.rss.afterMb} MiB |`);
  lines.push('');
  if (r.cpu.idle.windowS >= r.daemon.resyncIntervalS) {
    lines.push(
      `Idle CPU is a floor (${r.cpu.idle.floorPct} % of a core: the netlink monitors wait in the kernel) plus the periodic full resync, ` +
        `≈ ${r.cpu.idle.burstCpuS} CPU-s every ${r.daemon.resyncIntervalS} s here, which looks into every pod again (a netlink read and an attachment check per VM pod).`,
    );
    lines.push('');
  }
  lines.push(
    `Children when idle: ${r.rss.children.count} processes, ${r.rss.children.rssMb} MiB RSS summed (${r.rss.children.pssMb} MiB PSS). ` +
      `Churn coverage: p50 ${r.churnCover.p50} ms, p99 ${r.churnCover.p99} ms. Pods: ${r.counts.podsBuilt} built in ${r.build.seconds} s, ${r.counts.podsAdded} added and ${r.counts.podsDeleted} deleted while the daemon ran, ${r.counts.coveredAtEnd} covered at the end.`,
  );
  if (r.notes.length > 0) {
    lines.push('');
    for (const n of r.notes) lines.push(`- ${n}`);
  }
  return lines.join('\n') + '\n';
}
