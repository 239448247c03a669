/**
 * End-to-end paths on the lab (lib/lab): one lab with a VM pod (netns guest)
 * and a plain pod, the client on "another node". The lab is reconfigured
 * between measurements (CNI emulator on/off, `vmpeer attach`/`detach` with
 * the CLI, a sysctl, benchmark-only BPF), paths are shuffled in every round,
 * and every measurement records the counters that prove which path it took.
 *
 * Servers (sockperf, iperf3) run in the destination netns, clients in the
 * client netns; all of them are pinned to one CPU at a high priority, so a
 * measurement is the cost of the whole round trip (client stack, node,
 * pod, guest stack) on one core, and other work on the machine is pushed to
 * the other CPUs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BPF_MAP_TYPE_PERCPU_ARRAY, BpfMap } from '../../lib/bpf/map.js';
import { decodeStats, encodeStatKey, type EndpointCounters } from '../../lib/dataplane/codec.js';
import { Dataplane, netnsInode } from '../../lib/dataplane/dataplane.js';
import { EndpointTable } from '../../lib/dataplane/endpoint-table.js';
import { ENDPOINT, STAT_NAMES } from '../../lib/dataplane/layout.js';
import { killAndWait } from '../../lib/lab/exec.js';
import { Lab } from '../../lib/lab/lab.js';
import { native } from '../../lib/native.js';
import { cpuShare, otherCpusBusy, readCpuSnapshot, type CpuShare, type CpuSnapshot } from './cpu.js';
import { COUNTER_NAMES, counterDelta, emptyCounters, emulatorDelta, PATHS, verify, type EndpointCounts, type Evidence, type PathId, type PathSpec, type VmpeerCounters } from './paths.js';
import { perfAvailable, perfSelfTest, recordCpu, summarizeProfile, type Profile, type ProfileSample } from './profile.js';
import { buildPrototypes, type Prototypes } from './prototypes.js';
import { shuffle } from './stats.js';
import { vmpeer as runCli } from '../../lib/testkit/cli.js';
import {
  iperf3ClientArgs,
  iperf3ServerArgs,
  IPERF3_PORT,
  parseIperf3,
  parseSockperf,
  sockperfClientArgs,
  sockperfServerArgs,
  SOCKPERF_PORT,
  ToolOutputError,
  type RrResult,
  type ThroughputResult,
} from './tools.js';

/** An iperf3 server at the default priority, on no particular CPU. */
const UNPINNED_IPERF3_PORT = IPERF3_PORT + 1;

export interface E2eOptions {
  rounds: number;
  /** sockperf -t (it spends ~0.45 s of it on its own warm-up). */
  rrSeconds: number;
  /** iperf3 -t and -O. */
  tputSeconds: number;
  omitSeconds: number;
  paths: PathId[];
  /** Paths profiled with perf after the rounds (skipped when perf does not work). */
  profilePaths: PathId[];
  profileMetrics: Array<'throughput' | 'rr'>;
  profileSeconds: number;
  /**
   * After each round, bulk runs of these paths as an unpinned client and
   * servers at the default priority would see them (the prototype run's way):
   * what scheduling alone does to a single run.
   */
  unpinnedPaths: PathId[];
  unpinnedSeconds: number;
  /** The CPU every benchmark process is pinned to. */
  cpu: number;
  nice: number;
  labPrefix: string;
  log: (line: string) => void;
}

export interface Measurement {
  path: PathId;
  round: number;
  /** Position in the round's shuffled order. */
  slot: number;
  rr: RrResult;
  tput: ThroughputResult;
  cpuRr: CpuShare;
  cpuTput: CpuShare;
  /** Busy share of the other CPUs during each measurement: the machine's other work. */
  otherBusyRr: number;
  otherBusyTput: number;
  /** Counter deltas over both measurements of the path in this round. */
  evidence: Evidence;
}

export interface UnpinnedRun {
  path: PathId;
  round: number;
  gbps: number;
  /** The counters moved as the path requires. */
  verified: boolean;
}

export interface PathProfile {
  path: PathId;
  metric: 'throughput' | 'rr';
  /** Rate during the profile: bits/s or round trips/s. */
  rate: number;
  profile: Profile;
}

/** The counters the benchmark reads from vmpeer's pinned maps, and `vmpeer status --json` at the same moment, on one path. */
export interface StatusCheck {
  path: PathId;
  pinned: EndpointCounts;
  status: EndpointCounts | null;
  equal: boolean;
}

export interface E2eResult {
  paths: PathSpec[];
  skipped: Array<{ path: PathId; why: string }>;
  orders: PathId[][];
  measurements: Measurement[];
  unpinned: UnpinnedRun[];
  statusCheck: StatusCheck | null;
  profiles: PathProfile[];
  profileSkipped: string | null;
  lab: { name: string; emulatorMode: string; fixupMode: string | null; vmGuest: string; describe: string };
  prototypes: { noPktTypeDiffers: boolean; errors: string[] };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `vmpeer ...args --bpffs root` in the node netns, as the tests and an operator run it. */
const vmpeer = (nodeNs: string, root: string, args: string[]) => runCli(nodeNs, [...args, '--bpffs', root]);

async function vmpeerOk(nodeNs: string, root: string, args: string[]): Promise<string> {
  const r = await vmpeer(nodeNs, root, args);
  if (r.code !== 0) throw new Error(`vmpeer ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** An endpoint's counters (none: zero) and the per-outcome totals, as numbers. */
function toCounters(c: EndpointCounters | undefined, totals: Record<string, bigint>): VmpeerCounters {
  return {
    fixed: Number(c?.fixed ?? 0n),
    redirected: Number(c?.redirected ?? 0n),
    passed: Number(c?.passed ?? 0n),
    bypassedIn: Number(c?.bypassedIn ?? 0n),
    bypassedOut: Number(c?.bypassedOut ?? 0n),
    stats: Object.fromEntries(Object.entries(totals).map(([k, v]) => [k, Number(v)])),
  };
}

/**
 * The guest's counters and the per-outcome totals, read from the maps vmpeer
 * pinned under `root` (what `vmpeer status` reads). Reading the pins loads no
 * program: a `vmpeer status` process would load and free the whole object
 * next to the measurements.
 */
export function pinnedCounters(root: string, guestIp: string): VmpeerCounters {
  const n = native();
  const pin = (name: string) => path.join(root, 'maps', name);
  if (!fs.existsSync(pin('endpoints')) || !fs.existsSync(pin('stats'))) return emptyCounters();
  const fds: number[] = [];
  try {
    const map = (name: string, valueSize: number, maxEntries: number) => {
      const fd = n.objGet(pin(name));
      fds.push(fd);
      return new BpfMap(n, { name, fd, id: 0, type: BPF_MAP_TYPE_PERCPU_ARRAY, keySize: 4, valueSize, maxEntries, pinPath: pin(name) });
    };
    const endpoints = map('endpoints', ENDPOINT.size, 1024);
    const stats = map('stats', 8, STAT_NAMES.length);
    const totals = decodeStats(STAT_NAMES.map((_, slot) => stats.lookup(encodeStatKey(slot)) ?? []));
    return toCounters(new EndpointTable(endpoints).get(guestIp)?.counters, totals);
  } finally {
    for (const fd of fds) n.closeFd(fd);
  }
}

/**
 * The lab and everything the benchmark adds to it, with the configuration
 * state machine. close() undoes everything, also after a failure.
 */
export class BenchLab {
  readonly root: string;
  private readonly servers: ChildProcess[] = [];
  private state = { fixup: false, bypass: false, accelerate: false, bridgeNf: true };
  private extra: { id: string; close(): void; counters?(): VmpeerCounters } | null = null;
  private prototypes: Prototypes | null = null;
  fixupMode: string | null = null;

  private constructor(
    readonly lab: Lab,
    private readonly o: E2eOptions,
  ) {
    this.root = `/sys/fs/bpf/${lab.name}-vmpeer`;
  }

  static async create(o: E2eOptions): Promise<BenchLab> {
    // flows never time out during a run: every packet after the first of a flow is redirected
    const lab = await Lab.create({ prefix: o.labPrefix, vmPods: 1, plainPods: 1, emulator: false, flowTimeoutMs: 3_600_000 });
    const b = new BenchLab(lab, o);
    try {
      // the guest answers the node once: the pod bridge learns its MAC, which `vmpeer attach` discovers
      await lab.waitReachable(b.vm.podIp, 10_000);
      await b.startServers();
    } catch (e) {
      await b.close();
      throw e;
    }
    return b;
  }

  get vm() {
    return this.lab.vms[0]!;
  }

  get plain() {
    return this.lab.plain[0]!;
  }

  private pinned(args: string[]): [string, string[]] {
    return ['nice', ['-n', String(this.o.nice), 'taskset', '-c', String(this.o.cpu), ...args]];
  }

  private async startServers(): Promise<void> {
    const guest = this.vm.guestNs;
    if (!guest) throw new Error('bench: the VM pod needs a netns guest');
    for (const ns of [guest, this.plain.ns]) {
      const servers: Array<[string, string[]]> = [this.pinned(sockperfServerArgs()), this.pinned(iperf3ServerArgs()), ['iperf3', iperf3ServerArgs(UNPINNED_IPERF3_PORT).slice(1)]];
      for (const [cmd, argv] of servers) {
        const child = this.lab.spawn(ns, cmd, argv);
        child.stdout?.resume();
        child.stderr?.resume();
        this.servers.push(child);
      }
      // listening?
      const deadline = Date.now() + 10_000;
      for (;;) {
        const r = await this.lab.run(ns, 'ss', ['-Htln'], { allowFail: true });
        if ([SOCKPERF_PORT, IPERF3_PORT, UNPINNED_IPERF3_PORT].every((p) => new RegExp(`:${p}\\b`).test(r.stdout))) break;
        if (Date.now() > deadline) throw new Error(`bench: servers not listening in ${ns.name}: ${r.stdout}`);
        await sleep(50);
      }
    }
  }

  prototypesFor(ids: PathId[]): { skipped: Array<{ path: PathId; why: string }> } {
    const skipped: Array<{ path: PathId; why: string }> = [];
    const needs = ids.filter((id) => PATHS[id].extra !== null);
    if (needs.length > 0) this.prototypes = buildPrototypes();
    for (const id of needs) {
      if (PATHS[id].extra === 'fixup-no-pkt-type' && !this.prototypes!.noPktTypeObject) skipped.push({ path: id, why: this.prototypes!.errors.join('; ') });
    }
    return { skipped };
  }

  get prototypeInfo() {
    return { noPktTypeDiffers: this.prototypes?.noPktTypeDiffers ?? false, errors: this.prototypes?.errors ?? [] };
  }

  /** Whether net.bridge.bridge-nf-call-iptables exists in the VM pod (br_netfilter built in or loaded). */
  async hasBridgeNf(): Promise<boolean> {
    const r = await this.lab.run(this.vm.podNs, 'sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables'], { allowFail: true });
    return r.code === 0;
  }

  private cli(args: string[]): Promise<string> {
    return vmpeerOk(this.lab.node.ns.path, this.root, args);
  }

  /** Puts the lab in the configuration of `spec` (changing only what differs). */
  async apply(spec: PathSpec): Promise<void> {
    const node = this.lab.node.uplink.name;
    if (this.extra && this.extra.id !== spec.extra) {
      this.extra.close();
      this.extra = null;
    }
    if (this.state.accelerate && !spec.accelerate) {
      await this.cli(['detach', '--accelerate', '--host-dev', node]);
      this.state.accelerate = false;
    }
    if (this.state.fixup && spec.fixup === false) {
      await this.cli(['detach', '--netns', this.vm.podNs.name]);
      this.state.fixup = false;
      this.state.bypass = false;
    }
    this.lab.setEmulator(spec.emulator);
    if (this.state.bridgeNf !== spec.bridgeNf) {
      await this.lab.run(this.vm.podNs, 'sysctl', ['-q', '-w', `net.bridge.bridge-nf-call-iptables=${spec.bridgeNf ? 1 : 0}`]);
      this.state.bridgeNf = spec.bridgeNf;
    }
    // attach is declarative: attaching again with or without --bypass-bridge adds or removes the bypass
    if (spec.fixup && (!this.state.fixup || this.state.bypass !== spec.bypass)) {
      const out = await this.cli(['attach', '--netns', this.vm.podNs.name, ...(spec.bypass ? ['--bypass-bridge'] : [])]);
      this.fixupMode ??= /\((tcx|clsact)\)/.exec(out)?.[1] ?? null;
      this.state.fixup = true;
      this.state.bypass = spec.bypass;
    }
    if (spec.accelerate && !this.state.accelerate) {
      await this.cli(['attach', '--accelerate', '--host-dev', node]);
      this.state.accelerate = true;
    }
    if (spec.extra && !this.extra) this.extra = this.startExtra(spec.extra);
  }

  /** A diagnostic path's fixup: vmpeer's own loader in this process, with the variant (or the shipped) object and a state root of its own. */
  private startExtra(extra: NonNullable<PathSpec['extra']>): NonNullable<BenchLab['extra']> {
    const vm = this.vm;
    const pod = vm.podNs.path;
    const root = `${this.root}-variant`;
    const dp = Dataplane.open({ root, ...(extra === 'fixup-no-pkt-type' ? { object: this.prototypes!.noPktTypeObject! } : {}) });
    const target = { netns: pod, ifname: vm.nic.name, hook: 'ingress' as const };
    try {
      dp.setEndpoint({ guestIp: vm.podIp, guestMac: vm.guestMac, gatewayMac: vm.hostVeth.mac, hostIfindex: vm.hostVeth.ifindex, redirect: true, podNetns: netnsInode(pod) });
      dp.attach('fixup', target);
    } catch (e) {
      dp.close();
      fs.rmSync(root, { recursive: true, force: true });
      throw e;
    }
    return {
      id: extra,
      counters: () => toCounters(dp.endpoint(vm.podIp)?.counters, dp.stats()),
      close: () => {
        try {
          dp.detach('fixup', target);
          dp.deleteEndpoint(vm.podIp);
        } finally {
          dp.close();
          fs.rmSync(root, { recursive: true, force: true });
        }
      },
    };
  }

  async vmpeerCounters(): Promise<VmpeerCounters> {
    if (this.extra?.counters) return this.extra.counters();
    if (!this.state.fixup && !this.state.accelerate) return emptyCounters();
    return pinnedCounters(this.root, this.vm.podIp);
  }

  /** `vmpeer status --json`, as an operator sees it (read once per run, outside the measurements, as a cross-check of the pinned-map reader). */
  async status(): Promise<unknown> {
    return JSON.parse(await this.cli(['status', '--json']));
  }

  targetIp(spec: PathSpec): string {
    return spec.target === 'vm' ? this.vm.podIp : this.plain.podIp;
  }

  /** A few pings: neighbours, the bridge's FDB and the emulator's flow for ICMP settle on the new path. */
  async warmUp(ip: string, id: string): Promise<void> {
    const r = await this.lab.ping(this.lab.client, ip, { count: 3, intervalMs: 10, waitS: 1 });
    if (r.received < r.transmitted) throw new Error(`bench: path ${id}: ${r.received} of ${r.transmitted} warm-up pings to ${ip} answered`);
  }

  /**
   * Runs a client in the client netns, handing every output line to `onLine`
   * as it arrives (sockperf says when its measured window starts and ends).
   */
  stream(args: string[], timeoutMs: number, onLine: (line: string) => void = () => undefined, pinned = true): Promise<{ code: number | null; out: string }> {
    const [cmd, argv] = pinned ? this.pinned(args) : [args[0]!, args.slice(1)];
    const child = this.lab.spawn(this.lab.client.ns, cmd, argv);
    return new Promise((resolve, reject) => {
      let out = '';
      let partial = '';
      const take = (d: Buffer) => {
        const s = d.toString();
        out += s;
        const lines = (partial + s).split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) onLine(l);
      };
      child.stdout?.on('data', take);
      child.stderr?.on('data', take);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        if (partial) onLine(partial);
        resolve({ code, out });
      });
    });
  }

  /**
   * Request/response with sockperf. CPU time is taken over sockperf's own
   * measured window ("Starting test" to "Test end"), not its 2-second warm-up.
   */
  async rr(ip: string, seconds = this.o.rrSeconds, onStart?: () => void): Promise<{ rr: RrResult; cpu: CpuShare; otherBusy: number }> {
    let s0: CpuSnapshot | null = null;
    let s1: CpuSnapshot | null = null;
    const r = await this.stream(sockperfClientArgs(ip, Math.ceil(seconds)), (seconds + 30) * 1000, (line) => {
      if (!s0 && /Starting test/.test(line)) {
        s0 = readCpuSnapshot();
        onStart?.();
      } else if (s0 && !s1 && /Test end/.test(line)) s1 = readCpuSnapshot();
    });
    const rr = parseSockperf(r.out);
    if (!s0 || !s1) throw new ToolOutputError('sockperf', 'no "Starting test" / "Test end" lines', r.out);
    return { rr, cpu: cpuShare(s0, s1, this.o.cpu), otherBusy: otherCpusBusy(s0, s1, this.o.cpu) };
  }

  /** Bulk TCP with iperf3 (saturates the CPU for its whole run). */
  async tput(ip: string, options: { seconds?: number; omit?: number; pinned?: boolean } = {}): Promise<{ tput: ThroughputResult; cpu: CpuShare; otherBusy: number }> {
    const seconds = options.seconds ?? this.o.tputSeconds;
    const omit = options.omit ?? this.o.omitSeconds;
    const pinned = options.pinned ?? true;
    const s0 = readCpuSnapshot();
    const r = await this.stream(iperf3ClientArgs(ip, seconds, omit, pinned ? IPERF3_PORT : UNPINNED_IPERF3_PORT), (seconds + omit + 30) * 1000, undefined, pinned);
    const s1 = readCpuSnapshot();
    return { tput: parseIperf3(r.out), cpu: cpuShare(s0, s1, this.o.cpu), otherBusy: otherCpusBusy(s0, s1, this.o.cpu) };
  }

  /** Undoes everything: the benchmark's BPF, vmpeer's attachments and state, servers, the lab. Never throws. */
  async close(): Promise<void> {
    try {
      this.extra?.close();
    } catch {
      // gone with the netns below
    }
    this.extra = null;
    if (!this.lab.destroyed) {
      const node = this.lab.node.ns.path;
      if (this.state.accelerate) await vmpeer(node, this.root, ['detach', '--accelerate', '--host-dev', this.lab.node.uplink.name]).catch(() => undefined);
      if (this.state.fixup) await vmpeer(node, this.root, ['detach', '--netns', this.vm.podNs.name]).catch(() => undefined);
    }
    await Promise.all(this.servers.map((c) => killAndWait(c).catch(() => undefined)));
    await this.lab.destroy().catch(() => undefined);
    for (const dir of [this.root, `${this.root}-variant`]) fs.rmSync(dir, { recursive: true, force: true });
    this.prototypes?.remove();
    this.prototypes = null;
  }
}

/** Puts the lab on `spec`'s path and warms it up, runs `work`, and checks with the counters that the traffic took that path. */
async function onPath<T>(b: BenchLab, spec: PathSpec, work: (ip: string) => Promise<T>): Promise<{ result: T; evidence: Evidence }> {
  await b.apply(spec);
  const ip = b.targetIp(spec);
  await b.warmUp(ip, spec.id);
  const emu0 = b.lab.emulatorStats();
  const vp0 = await b.vmpeerCounters();
  const result = await work(ip);
  const emu = emulatorDelta(emu0, b.lab.emulatorStats());
  const vp = counterDelta(vp0, await b.vmpeerCounters());
  return { result, evidence: verify(spec.expect, emu, vp) };
}

/** One path in one round: configure, warm up, request/response, then bulk, with counters around both. */
async function measure(b: BenchLab, spec: PathSpec, round: number, slot: number): Promise<Measurement> {
  const { result: [rr, tput], evidence } = await onPath(b, spec, async (ip) => [await b.rr(ip), await b.tput(ip)] as const);
  return {
    path: spec.id,
    round,
    slot,
    rr: rr.rr,
    tput: tput.tput,
    cpuRr: rr.cpu,
    cpuTput: tput.cpu,
    otherBusyRr: rr.otherBusy,
    otherBusyTput: tput.otherBusy,
    evidence,
  };
}

/** A bulk run with client and server where the scheduler puts them, at the default priority. */
async function unpinned(b: BenchLab, spec: PathSpec, round: number, seconds: number): Promise<UnpinnedRun> {
  const { result: r, evidence } = await onPath(b, spec, (ip) => b.tput(ip, { seconds, omit: 1, pinned: false }));
  return { path: spec.id, round, gbps: r.tput.bitsPerSecond / 1e9, verified: evidence.verified };
}

/** Profiles a path: perf on the benchmark CPU in the middle of a bulk run, and over a request/response window. */
async function profilePath(b: BenchLab, spec: PathSpec, o: E2eOptions): Promise<PathProfile[]> {
  await b.apply(spec);
  const ip = b.targetIp(spec);
  await b.warmUp(ip, spec.id);
  const out: PathProfile[] = [];
  for (const metric of o.profileMetrics) {
    if (metric === 'throughput') {
      const lead = 0.5;
      const run = b.tput(ip, { seconds: Math.ceil(o.profileSeconds + 2 * lead), omit: 0 });
      await sleep(lead * 1000);
      const samples = await recordCpu(o.cpu, o.profileSeconds);
      out.push({ path: spec.id, metric, rate: (await run).tput.bitsPerSecond, profile: summarizeProfile(samples, o.cpu) });
    } else {
      let recording: Promise<ProfileSample[]> | null = null;
      // perf starts with sockperf's measured window and stops before it ends
      const r = await b.rr(ip, Math.ceil(o.profileSeconds) + 1, () => (recording = recordCpu(o.cpu, o.profileSeconds)));
      if (!recording) throw new Error('bench: sockperf never started its test');
      out.push({ path: spec.id, metric, rate: r.rr.rate, profile: summarizeProfile(await recording, o.cpu) });
    }
  }
  return out;
}

/** Runs every round. The BenchLab is closed before this returns or throws. */
export async function endToEnd(o: E2eOptions, onLab?: (b: BenchLab) => void): Promise<E2eResult> {
  const b = await BenchLab.create(o);
  onLab?.(b);
  try {
    const skipped = b.prototypesFor(o.paths).skipped;
    if (o.paths.some((id) => !PATHS[id].bridgeNf) && !(await b.hasBridgeNf())) {
      for (const id of o.paths.filter((x) => !PATHS[x].bridgeNf)) skipped.push({ path: id, why: 'this kernel has no bridge netfilter (net.bridge.bridge-nf-call-iptables absent)' });
    }
    const ids = o.paths.filter((id) => !skipped.some((s) => s.path === id));
    o.log(b.lab.describe());
    const measurements: Measurement[] = [];
    const unpinnedRuns: UnpinnedRun[] = [];
    const orders: PathId[][] = [];
    for (let round = 0; round < o.rounds; round++) {
      const order = shuffle([...ids]);
      orders.push(order);
      const line: string[] = [];
      for (const [slot, id] of order.entries()) {
        const m = await measure(b, PATHS[id], round, slot);
        measurements.push(m);
        line.push(`${id} ${(m.rr.rate / 1000).toFixed(1)}k rt/s ${m.rr.p50Us.toFixed(2)} µs ${(m.tput.bitsPerSecond / 1e9).toFixed(2)} Gb/s${m.evidence.verified ? '' : ' (UNVERIFIED)'}`);
      }
      o.log(`round ${round + 1}/${o.rounds}: ${line.join(' | ')}`);
      const probes: string[] = [];
      for (const id of shuffle(o.unpinnedPaths.filter((x) => ids.includes(x)))) {
        const run = await unpinned(b, PATHS[id], round, o.unpinnedSeconds);
        unpinnedRuns.push(run);
        probes.push(`${id} ${run.gbps.toFixed(2)} Gb/s`);
      }
      if (probes.length > 0) o.log(`  unpinned, default priority: ${probes.join(' | ')}`);
    }

    // the pinned-map reader against `vmpeer status --json`, with the fixup attached (and the bypass, when measured) and no traffic
    let statusCheck: StatusCheck | null = null;
    const check = (['Cb', 'C'] as const).find((id) => ids.includes(id));
    if (check) {
      await b.apply(PATHS[check]);
      await b.warmUp(b.targetIp(PATHS[check]), check);
      const { stats: _, ...pinned } = await b.vmpeerCounters();
      const st = (await b.status()) as { endpoints: Array<{ guestIp: string; counters: EndpointCounts }> };
      const cli = st.endpoints.find((e) => e.guestIp === b.vm.podIp)?.counters ?? null;
      statusCheck = { path: check, pinned, status: cli, equal: !!cli && COUNTER_NAMES.every((k) => cli[k] === pinned[k]) };
    }

    const profiles: PathProfile[] = [];
    let profileSkipped: string | null = null;
    const toProfile = o.profilePaths.filter((id) => ids.includes(id));
    if (toProfile.length > 0 && o.profileSeconds > 0) {
      const check = perfAvailable() ? await perfSelfTest(o.cpu, o.nice) : null;
      if (!check) profileSkipped = '`perf record -e cpu-clock` does not work here (perf missing or not allowed)';
      else if (!check.ok) {
        profileSkipped = `perf's cpu-clock samples on CPU ${o.cpu} did not land on the process running there (a busy process pinned to it got ${(check.share * 100).toFixed(0)} % of them, \`${check.top}\` the most): sampling is unreliable on this machine right now, so no profile is shown`;
      } else {
        for (const id of toProfile) {
          const got = await profilePath(b, PATHS[id], o);
          // our processes saturate the CPU: a profile that hardly sees them is not one
          const bad = got.filter((p) => p.profile.benchShare < 0.5);
          if (bad.length > 0) {
            profileSkipped = `perf charged most samples of ${bad.map((p) => `${p.path} ${p.metric}`).join(', ')} to other processes; those profiles are left out`;
          }
          profiles.push(...got.filter((p) => p.profile.benchShare >= 0.5));
          o.log(`profiled ${id}`);
        }
      }
    } else profileSkipped = 'not requested';
    if (profileSkipped && profileSkipped !== 'not requested') o.log(`profiles: ${profileSkipped}`);

    return {
      paths: ids.map((id) => PATHS[id]),
      skipped,
      orders,
      measurements,
      unpinned: unpinnedRuns,
      statusCheck,
      profiles,
      profileSkipped,
      lab: {
        name: b.lab.name,
        emulatorMode: b.lab.emulator.mode,
        fixupMode: b.fixupMode,
        vmGuest: 'netns (a veth stands in for the tap)',
        describe: b.lab.describe(),
      },
      prototypes: b.prototypeInfo,
    };
  } finally {
    await b.close();
  }
}
