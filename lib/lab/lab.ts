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
import { randomBytes } from 'node:crypto';
import type { AttachMode } from '../native.js';
import { Agent } from './agent.js';
import { CLIENT_IP, NODE_UPLINK_IP, randomTag } from './addressing.js';
import { Capture } from './capture.js';
import { CniEmulator, type EmulatorStats } from './emulator.js';
import { killAndWait, runIn, spawnIn, type RunOptions, type RunResult } from './exec.js';
import { deleteNetns, deleteNetnsSync, type NetnsRef } from './netns.js';
import { ping, type PingOptions, type PingResult } from './ping.js';
import { QemuGuest } from './qemu.js';
import { buildTopology, type ClientHost, type Endpoint, type NodeHost, type PlainPod, type VmPod } from './topology.js';

export const DEFAULT_PREFIX = 'vpl';
export const DEFAULT_FLOW_TIMEOUT_MS = 15_000;
const QEMU_REACHABLE_TIMEOUT_MS = 30_000;

export interface LabOptions {
  /** Netns names start with this (tests: 'vpt'). Default 'vpl'. */
  prefix?: string;
  /** VM pods in KubeVirt bridge binding (default 1). */
  vmPods?: number;
  /** Plain (non-VM) pods, also usable as on-node clients (default 1). */
  plainPods?: number;
  /** Per VM pod, a VMI macAddress for the guest (default: the pod MAC). */
  guestMacs?: Array<string | undefined>;
  /** Real QEMU guests on taps: true for every VM pod, or the indexes of some. Default false. */
  qemu?: boolean | number[];
  /** Kernel series or Debian release of the QEMU guests (default "6.1"). */
  qemuKernel?: string;
  /** QEMU guests: a multi-queue tap (2 queues), as KubeVirt's networkInterfaceMultiqueue. */
  multiQueue?: boolean;
  qemuAccel?: 'auto' | 'kvm' | 'tcg';
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

/** A VM pod of the lab, with its guest. */
export interface LabVm extends VmPod {
  /** The QEMU guest, when the pod has one (then `guest` is null). */
  readonly qemu: QemuGuest | null;
}

export interface EchoOutcome {
  /** The TCP handshake completed (seen from the client). */
  connected: boolean;
  /** Every byte came back, in order. */
  echoed: boolean;
  received: Buffer;
  connectMs: number | null;
  error: string | null;
}

export interface TransferOutcome {
  connected: boolean;
  sent: number;
  /** Bytes the sink counted (0 when it never answered). */
  received: number;
  /** Bytes that arrived intact: `bytes` when count and sha256 match, else 0. */
  intact: number;
  durationMs: number;
  error: string | null;
}

export interface TrafficOptions {
  timeoutMs?: number;
  port?: number;
}

/**
 * A lab's name, the prefix of all its netns names: `<prefix><pid>-<6 hex>`,
 * e.g. vpt4242-1a2b3c-node. The pid of the process that owns the lab lets a
 * sweeper tell a leftover (owner gone) from a lab another run still uses.
 */
export function labName(prefix: string): string {
  if (!/^[a-z]+$/.test(prefix)) throw new TypeError(`lab: bad prefix ${JSON.stringify(prefix)}`);
  return `${prefix}${process.pid}-${randomTag(3)}`;
}

/** The pid that owns the lab a netns belongs to (null when the name is not a lab's). */
export function labOwnerPid(netnsName: string): number | null {
  const m = /^[a-z]+?(\d+)-[0-9a-f]{6}-/.exec(netnsName);
  return m ? Number(m[1]) : null;
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

  private emulatorObj: CniEmulator | null = null;
  private emulatorOn = false;
  private readonly agents = new Map<string, Promise<Agent>>();
  private readonly captures = new Set<Capture>();
  private readonly children = new Set<ChildProcess>();
  private destroying: Promise<void> | null = null;

  private constructor(
    name: string,
    topo: Awaited<ReturnType<typeof buildTopology>>,
    private readonly options: LabOptions,
  ) {
    this.name = name;
    this.client = topo.client;
    this.node = topo.node;
    this.vms = topo.vms.map((v) => ({ ...v, qemu: null }));
    this.plain = topo.plain;
    this.netns = [...topo.namespaces];
  }

  static async create(options: LabOptions = {}): Promise<Lab> {
    const vmCount = options.vmPods ?? 1;
    const qemuSet = new Set<number>(
      options.qemu === true ? [...Array(vmCount).keys()] : Array.isArray(options.qemu) ? options.qemu : [],
    );
    for (const i of qemuSet) {
      if (!Number.isInteger(i) || i < 0 || i >= vmCount) throw new RangeError(`lab: qemu index ${i} is not a VM pod`);
    }
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
      // allSettled: every boot has ended (and its QEMU is known) before a failure destroys the lab
      const boots = await Promise.allSettled(
        [...qemuSet].map(async (i) => {
          const vm = lab.vms[i]!;
          const q = await QemuGuest.boot({
            podNs: vm.podNs.path,
            tap: vm.tap,
            mac: vm.guestMac,
            ip: vm.podIp,
            kernel: options.qemuKernel,
            queues: options.multiQueue ? 2 : 1,
            accel: options.qemuAccel,
          });
          if (lab.destroying) {
            await q.kill();
            return;
          }
          lab.vms[i] = { ...vm, qemu: q };
          await lab.waitReachable(vm.podIp, QEMU_REACHABLE_TIMEOUT_MS);
        }),
      );
      const failed = boots.find((b): b is PromiseRejectedResult => b.status === 'rejected');
      if (failed) throw failed.reason;
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  // ---------------------------------------------------------------- emulator

  /** The CNI emulator (loaded on first use). */
  get emulator(): CniEmulator {
    if (!this.emulatorObj) {
      const emu = CniEmulator.load({ mode: this.options.emulatorMode });
      try {
        emu.configure({
          idleTimeoutMs: this.options.flowTimeoutMs ?? DEFAULT_FLOW_TIMEOUT_MS,
          lifetimeMs: this.options.flowLifetimeMs ?? 0,
        });
        for (const p of [...this.vms, ...this.plain]) emu.setRoute(p.podIp, p.hostVeth.ifindex);
      } catch (e) {
        emu.close();
        throw e;
      }
      this.emulatorObj = emu;
    }
    return this.emulatorObj;
  }

  /** Where the emulator attaches: the node's uplink and every pod's host veth (Calico's hooks). */
  emulatorHooks(): Array<{ netns: string; ifname: string }> {
    const node = this.node.ns.path;
    return [
      { netns: node, ifname: this.node.uplink.name },
      ...[...this.plain, ...this.vms].map((p) => ({ netns: node, ifname: p.hostVeth.name })),
    ];
  }

  /** Attaches (true) or detaches (false) the emulator at every hook; flows are forgotten either way. */
  setEmulator(on: boolean): void {
    this.assertAlive();
    if (on === this.emulatorOn) return;
    const emu = this.emulator;
    if (on) {
      try {
        for (const h of this.emulatorHooks()) emu.attach(h);
      } catch (e) {
        emu.detachAll();
        throw e;
      }
    } else {
      emu.detachAll();
    }
    emu.flushFlows();
    this.emulatorOn = on;
  }

  get emulatorAttached(): boolean {
    return this.emulatorOn;
  }

  /** Changes the flow timeouts at run time. */
  setFlowTimeout(idleTimeoutMs: number, lifetimeMs = 0): void {
    this.emulator.configure({ idleTimeoutMs, lifetimeMs });
  }

  emulatorStats(): EmulatorStats {
    return this.emulatorObj
      ? this.emulatorObj.stats()
      : { first: 0, expired: 0, redirected: 0, optedOut: 0, other: 0 };
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

  private agent(ep: Endpoint): Promise<Agent> {
    this.assertAlive();
    let a = this.agents.get(ep.ns.path);
    if (!a) {
      a = Agent.start(ep.ns);
      this.agents.set(ep.ns.path, a);
      a.catch(() => this.agents.delete(ep.ns.path));
    }
    return a;
  }

  /** Makes sure the echo and sink servers run at `ip` (a lab endpoint). */
  private async serverAt(ip: string): Promise<void> {
    const target = this.endpointFor(ip);
    if (!target) throw new Error(`lab: ${ip} is not an address of this lab`);
    if (!(target instanceof QemuGuest)) await this.agent(target);
  }

  async ping(from: Endpoint, toIp: string, options: PingOptions = {}): Promise<PingResult> {
    this.assertAlive();
    return ping(from.ns.path, toIp, options);
  }

  /** Sends `payload` to the echo server at `toIp` and waits for it to come back. */
  async tcpEcho(from: Endpoint, toIp: string, payload?: Buffer | string, options: TrafficOptions = {}): Promise<EchoOutcome> {
    const data = typeof payload === 'string' ? Buffer.from(payload) : (payload ?? randomBytes(64));
    if (data.length === 0) throw new RangeError('lab: empty echo payload');
    await this.serverAt(toIp);
    const r = await (await this.agent(from)).echo(toIp, data, options.timeoutMs ?? 2000, options.port);
    const received = Buffer.from(r.received, 'base64');
    return {
      connected: r.connected,
      echoed: received.equals(data),
      received,
      connectMs: r.connectMs,
      error: r.error,
    };
  }

  /** Sends `bytes` to the sink at `toIp`; reports what arrived intact (sha256 compared). */
  async transfer(from: Endpoint, toIp: string, bytes: number, options: TrafficOptions = {}): Promise<TransferOutcome> {
    await this.serverAt(toIp);
    const r = await (await this.agent(from)).transfer(toIp, bytes, options.timeoutMs ?? 10_000, options.port);
    const received = r.reply?.count ?? 0;
    const intact = r.reply && r.reply.count === bytes && r.reply.sha256 === r.sha256 ? bytes : 0;
    return { connected: r.connected, sent: r.sent, received, intact, durationMs: r.durationMs, error: r.error };
  }

  /**
   * Starts a capture on `ifname` in `ns` (e.g. a netns guest's eth0, or the
   * VM pod's tap0); stop() returns the frames. Stopped by destroy() too.
   */
  async capture(ns: NetnsRef, ifname: string, filter = ''): Promise<Capture> {
    this.assertAlive();
    const cap = await Capture.start(ns.path, ifname, filter);
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
    const agents = await Promise.all([...this.agents.values()].map((a) => a.then((x) => x.pid, () => undefined)));
    return [...agents, ...this.vms.map((v) => v.qemu?.pid), ...[...this.children].map((c) => c.pid)].filter(
      (p): p is number => p !== undefined && p > 0,
    );
  }

  /** A human-readable summary of the lab (for `vmpeer demo` and test logs). */
  describe(): string {
    const lines = [
      `lab ${this.name}: emulator ${this.emulatorOn ? `attached (${this.emulatorObj?.mode})` : 'detached'}`,
      `  client  ${this.client.ip.padEnd(15)} netns ${this.client.ns.name}`,
      `  node    ${this.node.ip.padEnd(15)} netns ${this.node.ns.name}  uplink ${this.node.uplink.name} ${this.node.uplink.mac}`,
    ];
    for (const v of this.vms) {
      const guest = v.qemu ? `QEMU ${v.qemu.release} (${v.qemu.accel})` : `netns ${v.guestNs?.name}`;
      lines.push(
        `  vm${v.index}     ${v.podIp.padEnd(15)} pod netns ${v.podNs.name}  ${v.nic.name} ${v.nic.mac}  dummy ${v.dummyMac}  guest ${v.guestMac} (${guest})  host veth ${v.hostVeth.name}@${v.hostVeth.ifindex}`,
      );
    }
    for (const p of this.plain) {
      lines.push(`  pod${p.index}    ${p.podIp.padEnd(15)} netns ${p.ns.name}  eth0 ${p.iface.mac}  host veth ${p.hostVeth.name}@${p.hostVeth.ifindex}`);
    }
    return lines.join('\n');
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
        ...[...this.agents.values()].map((a) => attempt(async () => (await a.catch(() => null))?.stop())),
        ...this.vms.map((v) => attempt(() => v.qemu?.kill())),
        ...[...this.children].map((c) => attempt(() => killAndWait(c))),
      ]);
      await attempt(() => this.emulatorObj?.close());
      await attempt(() => deleteNetns(this.netns.map((n) => n.name)));
      live.delete(this);
      if (errors.length > 0) throw errors[0];
    })();
    return this.destroying;
  }
}

export { CLIENT_IP, NODE_UPLINK_IP };
