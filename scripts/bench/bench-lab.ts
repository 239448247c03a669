/**
 * The benchmark's lab: the lab (lib/lab) with a VM pod and a plain pod, the
 * servers, and the configuration state machine that puts it on a path (CNI
 * emulator, `vmpeer attach`/`detach` with the CLI, sysctls, benchmark-only
 * BPF); the counters that show which path a measurement took.
 */
import { type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { decodeStats, encodeStatKey, type EndpointCounters } from '../../lib/dataplane/codec.js';
import { Dataplane, netnsInode } from '../../lib/dataplane/dataplane.js';
import { EndpointTable } from '../../lib/dataplane/endpoint-table.js';
import { STAT_NAMES } from '../../lib/dataplane/layout.js';
import { openPinnedMaps } from '../../lib/dataplane/pinned-maps.js';
import { killAndWait } from '../../lib/lab/exec.js';
import { Lab } from '../../lib/lab/lab.js';
import { native } from '../../lib/native.js';
import { cpuShare, otherCpusBusy, readCpuSnapshot, type CpuShare, type CpuSnapshot } from './cpu.js';
import { emptyCounters, PATHS, type PathId, type PathSpec, type VmpeerCounters } from './paths.js';
import { buildPrototypes, type Prototypes } from './prototypes.js';
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
import type { E2eOptions } from './e2e-result.js';
import { sleep } from './util.js';

/** An iperf3 server at the default priority, on no particular CPU. */
const UNPINNED_IPERF3_PORT = IPERF3_PORT + 1;

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
  const maps = openPinnedMaps(n, root);
  if (!maps) return emptyCounters();
  try {
    const stats = maps.get('stats')!;
    const totals = decodeStats(STAT_NAMES.map((_, slot) => stats.lookup(encodeStatKey(slot)) ?? []));
    return toCounters(EndpointTable.of(maps).get(guestIp)?.counters, totals);
  } finally {
    for (const m of maps.values()) n.closeFd(m.fd);
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
    // attach is declarative: attaching again without or with --keep-bridge adds or removes the bypass
    if (spec.fixup && (!this.state.fixup || this.state.bypass !== spec.bypass)) {
      const out = await this.cli(['attach', '--netns', this.vm.podNs.name, ...(spec.bypass ? [] : ['--keep-bridge'])]);
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
      dp.attach('fixup', target, { inode: netnsInode(pod), cookie: null }); // a root of its own, for this run: no cookie needed
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
