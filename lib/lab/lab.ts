/**
 * The lab: a throwaway node in network namespaces that reproduces the
 * bridged-VM peer-redirect fault (docs/design.md §1).
 *
 *   const lab = await Lab.create({ vmPods: 1, plainPods: 1 });
 *   try {
 *     const r = await lab.ping(lab.client, lab.vms[0]!.podIp, { count: 10 });
 *     // r.received === 1: only the first packet of the flow took the kernel path
 *   } finally {
 *     await lab.destroy();
 *   }
 *
 * Nothing is created in the caller's netns. destroy() removes every netns,
 * process and BPF attachment of the lab, and is safe to call twice; a lab the
 * process forgot to destroy has its namespaces deleted when the process exits.
 */
import type { ChildProcess } from 'node:child_process';
import type { AttachMode } from '../native.js';
import { Capture } from './capture.js';
import type { CniEmulator, EmulatorStats } from './emulator.js';
import { LabEmulator } from './lab-emulator.js';
import { describeLab } from './lab-describe.js';
import { bootQemuGuests, qemuIndexes, type GuestOptions, type LabVm } from './lab-guests.js';
import { DEFAULT_PREFIX, labName } from './lab-names.js';
import { LabTraffic, type EchoOutcome, type TrafficOptions, type TransferOutcome } from './lab-traffic.js';
import { killAndWait, runIn, spawnIn, type RunOptions, type RunResult } from './exec.js';
import { deleteNetns, deleteNetnsSync, type NetnsRef } from './netns.js';
import { ping, type PingOptions, type PingResult } from './ping.js';
import type { QemuGuest } from './qemu.js';
import { buildTopology, type ClientHost, type Endpoint, type NodeHost, type PlainPod } from './topology.js';

export interface LabOptions extends GuestOptions {
  /** Netns names start with this (tests: 'vpt'). Default 'vpl'. */
  prefix?: string;
  /** VM pods in KubeVirt bridge binding (default 1). */
  vmPods?: number;
  /** Plain (non-VM) pods, also usable as on-node clients (default 1). */
  plainPods?: number;
  /** Per VM pod, a VMI macAddress for the guest (default: the pod MAC). */
  guestMacs?: Array<string | undefined>;
  /** Attach the CNI fast-path emulator when the lab is built (default true). */
  emulator?: boolean;
  /** tcx (default where the kernel has it) or clsact. */
  emulatorMode?: AttachMode;
  /** A flow idle this long starts over with a kernel-path packet (default 15 s). */
  flowTimeoutMs?: number;
  /** A flow this old starts over, busy or not (default: never). */
  flowLifetimeMs?: number;
  /** Keep IPv6 enabled in the lab's namespaces (default off: quiet wires). */
  ipv6?: boolean;
}

const live = new Set<Lab>();
let exitHook = false;

export class Lab {
  readonly client: ClientHost;
  readonly node: NodeHost;
  readonly vms: LabVm[];
  readonly plain: PlainPod[];
  /** Every netns of the lab (its own, and the ones adopted later). */
  get namespaces(): NetnsRef[] {
    return [...this.netns];
  }
  private readonly netns: NetnsRef[];
  /** The netns names' common prefix (unique to this lab). */
  readonly name: string;

  private readonly emu: LabEmulator;
  private readonly traffic: LabTraffic;
  private readonly captures = new Set<Capture>();
  private readonly children = new Set<ChildProcess>();
  private destroying: Promise<void> | null = null;

  private constructor(
    name: string,
    topo: Awaited<ReturnType<typeof buildTopology>>,
    options: LabOptions,
  ) {
    this.name = name;
    this.client = topo.client;
    this.node = topo.node;
    this.vms = topo.vms.map((v) => ({ ...v, qemu: null }));
    this.plain = topo.plain;
    this.netns = [...topo.namespaces];
    this.emu = new LabEmulator({ mode: options.emulatorMode, flowTimeoutMs: options.flowTimeoutMs, flowLifetimeMs: options.flowLifetimeMs }, this.node, () => [
      ...this.plain,
      ...this.vms,
    ]);
    this.traffic = new LabTraffic(
      (ip) => this.endpointFor(ip),
      () => this.assertAlive(),
    );
  }

  static async create(options: LabOptions = {}): Promise<Lab> {
    const vmCount = options.vmPods ?? 1;
    const qemuSet = qemuIndexes(options, vmCount);
    const name = labName(options.prefix ?? DEFAULT_PREFIX);
    const topo = await buildTopology({
      namePrefix: name,
      vmPods: Array.from({ length: vmCount }, (_, i) => ({
        guestMac: options.guestMacs?.[i],
        guest: qemuSet.has(i) ? ('tap' as const) : ('netns' as const),
        multiQueue: options.multiQueue,
      })),
      plainPods: options.plainPods ?? 1,
      ipv6: options.ipv6,
    });
    const lab = new Lab(name, topo, options);
    live.add(lab);
    if (!exitHook) {
      exitHook = true;
      process.on('exit', () => {
        for (const l of live) deleteNetnsSync(l.netns.map((n) => n.name));
      });
    }
    try {
      if (options.emulator !== false) lab.setEmulator(true);
      await bootQemuGuests(lab, qemuSet, options);
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  // ---------------------------------------------------------------- emulator

  /** The CNI emulator (loaded on first use). */
  get emulator(): CniEmulator {
    return this.emu.emulator;
  }

  /** Where the emulator attaches: the node's uplink and every pod's host veth (Calico's hooks). */
  emulatorHooks(): Array<{ netns: string; ifname: string }> {
    return this.emu.hooks();
  }

  /** Attaches (true) or detaches (false) the emulator at every hook; flows are forgotten either way. */
  setEmulator(on: boolean): void {
    this.assertAlive();
    this.emu.set(on);
  }

  get emulatorAttached(): boolean {
    return this.emu.attached;
  }

  /** Changes the flow timeouts at run time. */
  setFlowTimeout(idleTimeoutMs: number, lifetimeMs = 0): void {
    this.emulator.configure({ idleTimeoutMs, lifetimeMs });
  }

  emulatorStats(): EmulatorStats {
    return this.emu.stats();
  }

  // ----------------------------------------------------------------- traffic

  /**
   * Pings `ip` from the node itself until it answers: the node's own
   * traffic leaves through the host veth's egress, never through the
   * emulator, and it settles ARP (node ↔ guest, guest → gateway) and the
   * bridge's FDB. A slow (emulated) guest is ready after this.
   */
  async waitReachable(ip: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await ping(this.node.ns.path, ip, { count: 1, waitS: 2 });
      if (r.received > 0) return;
      if (Date.now() > deadline) throw new Error(`lab: ${ip} does not answer the node after ${timeoutMs} ms`);
    }
  }

  /** Every endpoint that can originate traffic (QEMU guests cannot). */
  endpoints(): Endpoint[] {
    return [
      this.client,
      this.node,
      ...this.vms.flatMap((v) => (v.guest ? [v.guest] : [])),
      ...this.plain,
    ];
  }

  private endpointFor(ip: string): Endpoint | QemuGuest | null {
    const vm = this.vms.find((v) => v.podIp === ip);
    if (vm) return vm.qemu ?? vm.guest;
    return this.endpoints().find((e) => e.ip === ip) ?? null;
  }

  async ping(from: Endpoint, toIp: string, options: PingOptions = {}): Promise<PingResult> {
    this.assertAlive();
    return ping(from.ns.path, toIp, options);
  }

  /** Sends `payload` to the echo server at `toIp` and waits for it to come back. */
  tcpEcho(from: Endpoint, toIp: string, payload?: Buffer | string, options: TrafficOptions = {}): Promise<EchoOutcome> {
    return this.traffic.tcpEcho(from, toIp, payload, options);
  }

  /** Sends `bytes` to the sink at `toIp`; reports what arrived intact (sha256 compared). */
  transfer(from: Endpoint, toIp: string, bytes: number, options: TrafficOptions = {}): Promise<TransferOutcome> {
    return this.traffic.transfer(from, toIp, bytes, options);
  }

  /**
   * Starts a capture on `ifname` in `ns` (e.g. a netns guest's eth0, or the
   * VM pod's tap0); stop() returns the frames. Stopped by destroy() too.
   * `promiscuous` (a bridge device): also the frames it forwards.
   */
  async capture(ns: NetnsRef, ifname: string, filter = '', options: { promiscuous?: boolean } = {}): Promise<Capture> {
    this.assertAlive();
    const cap = await Capture.start(ns.path, ifname, filter, undefined, options.promiscuous);
    this.captures.add(cap);
    const stop = cap.stop.bind(cap);
    cap.stop = async () => {
      this.captures.delete(cap);
      return stop();
    };
    return cap;
  }

  /**
   * Makes a netns created outside the lab (a pod added while the lab runs)
   * part of it: destroy() and the process-exit hook delete it, run() and
   * spawn() accept it. Adopting twice is a no-op.
   */
  adopt(ns: NetnsRef): void {
    this.assertAlive();
    if (!this.netns.some((n) => n.path === ns.path)) this.netns.push(ns);
  }

  /** Forgets an adopted netns (its owner deleted it). False when the lab did not know it. */
  disown(ns: NetnsRef): boolean {
    const i = this.netns.findIndex((n) => n.path === ns.path);
    if (i < 0) return false;
    this.netns.splice(i, 1);
    return true;
  }

  /** Runs a command to completion inside one of the lab's namespaces (nsenter). */
  async run(ns: NetnsRef, cmd: string, args: string[], options?: RunOptions): Promise<RunResult> {
    this.assertNs(ns);
    return runIn(ns.path, cmd, args, options);
  }

  /**
   * Starts a long-lived command (a benchmark server, say) inside one of the
   * lab's namespaces; destroy() kills it if it still runs. It also dies
   * with the calling process.
   */
  spawn(ns: NetnsRef, cmd: string, args: string[]): ChildProcess {
    this.assertNs(ns);
    const child = spawnIn(ns.path, cmd, args);
    child.on('error', () => undefined);
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  private assertNs(ns: NetnsRef): void {
    this.assertAlive();
    if (!this.namespaces.some((n) => n.path === ns.path)) throw new Error(`lab: ${ns.path} is not a namespace of this lab`);
  }

  /** Pids of the lab's processes still running: agents, QEMU guests, spawned commands. */
  async processIds(): Promise<number[]> {
    const agents = await this.traffic.processIds();
    return [...agents, ...this.vms.map((v) => v.qemu?.pid), ...[...this.children].map((c) => c.pid)].filter(
      (p): p is number => p !== undefined && p > 0,
    );
  }

  /** A human-readable summary of the lab (for `vmpeer demo` and test logs). */
  describe(): string {
    return describeLab(this, this.emu.attached ? `attached (${this.emu.mode})` : 'detached');
  }

  // ---------------------------------------------------------------- teardown

  private assertAlive(): void {
    if (this.destroying) throw new Error(`lab ${this.name} is destroyed`);
  }

  get destroyed(): boolean {
    return this.destroying !== null;
  }

  /** Removes everything the lab created. Safe to call twice (and concurrently). */
  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      const errors: unknown[] = [];
      const attempt = async (f: () => unknown) => {
        try {
          await f();
        } catch (e) {
          errors.push(e);
        }
      };
      await Promise.all([
        ...[...this.captures].map((c) => attempt(() => c.stop())),
        ...this.traffic.stops(attempt),
        ...this.vms.map((v) => attempt(() => v.qemu?.kill())),
        ...[...this.children].map((c) => attempt(() => killAndWait(c))),
      ]);
      await attempt(() => this.emu.close());
      await attempt(() => deleteNetns(this.netns.map((n) => n.name)));
      live.delete(this);
      if (errors.length > 0) throw errors[0];
    })();
    return this.destroying;
  }
}
