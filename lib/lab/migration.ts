/**
 * Live migration of a real QEMU guest between two VM pods of a lab, the way
 * KubeVirt and Calico v3.32 do it for bridge-bound VMs (docs/design.md §3, §4):
 *
 *   - each virt-launcher pod has KubeVirt's bridge layout with its own tap;
 *     the target pod's dummy eth0 holds the guest IP and the target pod's own
 *     CNI MAC, while the guest keeps its MAC;
 *   - the source QEMU sends the guest's state to a QEMU started with
 *     `-incoming` on the target's tap (QMP `migrate` over a unix socket);
 *   - the emulated CNI activates the target when the guest's first frame
 *     (QEMU's announcement, or the guest's gratuitous ARP) arrives on the
 *     target's host veth: a route of elevated priority (lower metric) to the
 *     target veth, and the fast path's route with it; the source's route goes
 *     when the source pod goes, and the target's returns to normal priority.
 *
 *   const m = new Migrations(lab);
 *   const src = await m.addPod(ip, mac);  await m.boot(src);
 *   const dst = await m.addPod(ip, mac);
 *   const r = await m.migrate(src, dst);  // src is gone when this returns
 *
 * Pods are netns <lab name>-m<n> (<lab name>-n2m<n> on a second node), adopted by the lab (its destroy() deletes
 * what is left); destroy() here kills the QEMUs first.
 */
import { existsSync, rmSync } from 'node:fs';
import { CLIENT_IP, NODE_UPLINK_IP, VM_BRIDGE, VM_NIC, VM_TAP, caliName, normalizeMac, randomMac } from './addressing.js';
import { ipBatch, killAndWait, run, spawnIn, sysctls } from './exec.js';
import type { Lab } from './lab.js';
import type { CniEmulator } from './emulator.js';
import { type NetnsRef, deleteNetns, netnsRef } from './netns.js';
import { Qmp } from './qmp.js';
import { QemuGuest } from './qemu.js';
import type { VmPod } from './topology.js';
import { bridgeLines, caliSysctls, caliVethLine, dummyKind, dummyLines, iface, links, NO_IPV6, portsForwarding, VM_POD_SYSCTLS } from './wiring.js';

/** The emulated CNI's route priorities: a pod's route, and a migration target's once active. */
export const ROUTE_METRIC = 1024;
export const ELEVATED_METRIC = 512;
/** Guest RAM: small, so that a migration under software emulation takes about a second. */
export const MIGRATION_GUEST_MB = 128;
const MIGRATION_TIMEOUT_MS = 120_000;
/**
 * From the migration's end to the guest's first frame on the target: QEMU
 * asks a virtio-net guest to announce itself (VIRTIO_NET_F_GUEST_ANNOUNCE),
 * so the gratuitous ARP waits for the guest kernel to run under software
 * emulation, seconds on a loaded 2-CPU host.
 */
const FIRST_FRAME_TIMEOUT_MS = 30_000;

/** A node of the lab as migrations see it: its netns, its address for the other nodes, its CNI fast path. */
export interface MigrationNode {
  readonly ns: NetnsRef;
  /**
   * Names of this node's pod netns start with this. A real node's daemon
   * sees only its own node's pods; the lab's nodes share /var/run/netns, so
   * each node's daemon gets its own prefix (--netns-prefix).
   */
  readonly podPrefix: string;
  /** Where the client's network sends this node's pods (the node's uplink address). */
  readonly uplinkIp: string;
  /** Where this node sends pod IPs that live on another node (the client's address on its link). */
  readonly gatewayIp: string;
  readonly emulator: CniEmulator;
  readonly emulatorAttached: boolean;
}

const labNodes = new WeakMap<Lab, MigrationNode>();

/** The lab's own node (one object per lab: migrations compare nodes by identity). */
export function labNode(lab: Lab): MigrationNode {
  let node = labNodes.get(lab);
  if (!node) labNodes.set(lab, (node = ownNode(lab)));
  return node;
}

function ownNode(lab: Lab): MigrationNode {
  return {
    ns: lab.node.ns,
    podPrefix: `${lab.name}-m`,
    uplinkIp: NODE_UPLINK_IP,
    gatewayIp: CLIENT_IP,
    get emulator() {
      return lab.emulator;
    },
    get emulatorAttached() {
      return lab.emulatorAttached;
    },
  };
}

export interface MigratablePod extends VmPod {
  readonly name: string;
  readonly node: MigrationNode;
  /** QEMU's QMP socket for this pod's guest. */
  readonly qmpSocket: string;
  qemu: QemuGuest | null;
}

export interface MigrationReport {
  /** When QMP `migrate` was sent (Date.now()). */
  startedAt: number;
  /** When query-migrate said completed. */
  completedAt: number;
  /** The guest's downtime QEMU measured (ms). */
  downtimeMs: number | null;
  /** Capture time of the guest's first frame on the target's host veth (epoch ms, µs resolution). */
  firstFrameAt: number;
  /** What that frame was (ethertype). */
  firstFrameType: number;
  /** When the CNI had the elevated route and the fast path's route in place. */
  activatedAt: number;
}

export class Migrations {
  private seq = 0;
  private readonly live = new Map<string, MigratablePod>();

  constructor(private readonly lab: Lab) {}

  get pods(): MigratablePod[] {
    return [...this.live.values()];
  }

  /**
   * A virt-launcher pod for a guest with `ip` and `guestMac`: veth, bridge,
   * tap (no QEMU on it yet), dummy with the pod's own CNI MAC and the IP. The
   * node has no route to it yet: boot() or migrate() writes it.
   */
  async addPod(ip: string, guestMac: string, node: MigrationNode = labNode(this.lab)): Promise<MigratablePod> {
    const name = `${node.podPrefix}${this.seq++}`;
    const podNs = netnsRef(name);
    const nodeNs = node.ns;
    const cali = caliName();
    const nicMac = randomMac(0x06);
    const dummyMac = randomMac(0x0a);
    await ipBatch([`netns add ${name}`, caliVethLine(cali, nodeNs, podNs, VM_NIC, nicMac)]);
    this.lab.adopt(podNs);
    const qmpSocket = `/tmp/${name}.qmp`;
    try {
      await ipBatch([`link set ${cali} up`], nodeNs.name);
      await sysctls(nodeNs.path, caliSysctls(cali));
      await sysctls(podNs.path, [...NO_IPV6, ...VM_POD_SYSCTLS]);
      const kind = await dummyKind(podNs);
      await ipBatch([...dummyLines(dummyMac, ip, kind), 'link set lo up', `tuntap add dev ${VM_TAP} mode tap`, ...bridgeLines(nicMac)], name);
      const [podLinks, nodeLinks] = await Promise.all([links(podNs), links(nodeNs)]);
      const pod: MigratablePod = {
        name,
        node,
        index: -1,
        podNs,
        podIp: ip,
        guestMac: normalizeMac(guestMac),
        dummyMac,
        dummyKind: kind,
        bridgeTxChecksumOff: false,
        nic: iface(podLinks, VM_NIC),
        bridge: VM_BRIDGE,
        tap: VM_TAP,
        hostVeth: iface(nodeLinks, cali),
        guest: null,
        guestNs: null,
        qmpSocket,
        qemu: null,
      };
      this.live.set(name, pod);
      if (node.emulatorAttached) node.emulator.attach({ netns: nodeNs.path, ifname: cali });
      return pod;
    } catch (e) {
      await deleteNetns([name]);
      this.lab.disown(podNs);
      throw e;
    }
  }

  /** The CNI's route to a pod (replacing one of the same metric). */
  async route(pod: MigratablePod, metric: number): Promise<void> {
    await ipBatch([`route replace ${pod.podIp}/32 dev ${pod.hostVeth.name} scope link metric ${metric}`], pod.node.ns.name);
  }

  /** The CNI routes the IP to the pod, then the guest boots in it (software emulation: ~10 s). */
  async boot(pod: MigratablePod, options: { kernel?: string } = {}): Promise<QemuGuest> {
    await this.route(pod, ROUTE_METRIC);
    pod.node.emulator.setRoute(pod.podIp, pod.hostVeth.ifindex);
    pod.qemu = await QemuGuest.boot({
      podNs: pod.podNs.path,
      tap: pod.tap,
      mac: pod.guestMac,
      ip: pod.podIp,
      kernel: options.kernel,
      memoryMb: MIGRATION_GUEST_MB,
      qmpSocket: pod.qmpSocket,
    });
    // the guest announces itself after a migration (NETDEV_NOTIFY_PEERS) only with arp_notify
    await pod.qemu.exec('echo 1 > /proc/sys/net/ipv4/conf/all/arp_notify; echo 1 > /proc/sys/net/ipv4/conf/eth0/arp_notify');
    return pod.qemu;
  }

  /** After setEmulator(true): the fast path at this module's pods too. */
  followEmulator(): void {
    for (const p of this.live.values()) {
      if (!p.node.emulatorAttached) continue;
      const have = p.node.emulator.attachments.some((a) => a.netns === p.node.ns.path && a.ifname === p.hostVeth.name);
      if (!have) p.node.emulator.attach({ netns: p.node.ns.path, ifname: p.hostVeth.name });
    }
  }

  /**
   * Migrates the guest of `from` into `to` and then deletes `from`, as
   * KubeVirt does once the target runs. Resolves with the timeline.
   */
  async migrate(from: MigratablePod, to: MigratablePod): Promise<MigrationReport> {
    return (await this.prepare(from, to))();
  }

  /**
   * Everything before the migration proper: the target QEMU listening, the
   * CNI watching the target's veth. Resolves with the function that sends
   * the guest over (measurements start their clock between the two).
   */
  async prepare(from: MigratablePod, to: MigratablePod): Promise<() => Promise<MigrationReport>> {
    const source = from.qemu;
    if (!source) throw new Error(`lab: no guest runs in ${from.name}`);
    if (to.podIp !== from.podIp || to.guestMac !== from.guestMac) throw new Error('lab: a migration target has the guest IP and MAC of the source');
    const sock = `/tmp/${to.name}.migrate`;
    to.qemu = await QemuGuest.boot({
      podNs: to.podNs.path,
      tap: to.tap,
      mac: to.guestMac,
      ip: to.podIp,
      memoryMb: MIGRATION_GUEST_MB,
      qmpSocket: to.qmpSocket,
      incoming: `unix:${sock}`,
      accel: source.accel,
    });
    // QEMU opens the QMP socket before it listens on the incoming one
    for (const deadline = Date.now() + 20_000; !existsSync(sock); ) {
      if (Date.now() > deadline) throw new Error(`lab: the target QEMU does not listen on ${sock}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await portsForwarding(to.podNs, [VM_NIC, VM_TAP], 5000);
    const watch = await firstFrame(to.node.ns.path, to.hostVeth.name, to.guestMac);
    const activation = watch.frame.then(async (f) => {
      // the CNI sees the guest on the target's veth: the target's route takes priority
      await this.route(to, ELEVATED_METRIC);
      to.node.emulator.setRoute(to.podIp, to.hostVeth.ifindex);
      if (to.node !== from.node) await this.steerToNode(to.podIp, from.node, to.node);
      return { ...f, activatedAt: Date.now() };
    });
    activation.catch(() => undefined);
    return () => this.run(from, to, source, sock, watch, activation);
  }

  private async run(
    from: MigratablePod,
    to: MigratablePod,
    source: QemuGuest,
    sock: string,
    watch: { stop: () => Promise<void> },
    activation: Promise<{ time: number; ethertype: number; activatedAt: number }>,
  ): Promise<MigrationReport> {
    const qmp = await Qmp.connect(from.qmpSocket);
    let startedAt!: number;
    let done!: { status: string; downtime?: number; 'error-desc'?: string };
    try {
      // no bandwidth cap (the default is 128 MiB/s): the guest's RAM goes over a local socket
      await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 10 * 1024 ** 3 });
      startedAt = Date.now();
      await qmp.execute('migrate', { uri: `unix:${sock}` });
      const deadline = startedAt + MIGRATION_TIMEOUT_MS;
      for (;;) {
        done = await qmp.execute('query-migrate');
        if (done.status === 'completed' || done.status === 'failed' || done.status === 'cancelled') break;
        if (Date.now() > deadline) throw new Error(`lab: migration not done after ${MIGRATION_TIMEOUT_MS} ms (${done.status})`);
        await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      qmp.close();
    }
    const completedAt = Date.now();
    if (done.status !== 'completed') {
      await watch.stop();
      throw new Error(`lab: migration ${done.status}: ${done['error-desc'] ?? ''}`);
    }
    let timer: NodeJS.Timeout | undefined;
    const active = await Promise.race([
      activation,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          void runState(to.qmpSocket).then((state) => reject(new Error(`lab: the guest sent nothing on the target within ${FIRST_FRAME_TIMEOUT_MS / 1000} s of the migration (target QEMU: ${state})`)));
        }, FIRST_FRAME_TIMEOUT_MS);
      }),
    ]).finally(() => {
      clearTimeout(timer);
      return watch.stop();
    });
    rmSync(sock, { force: true });
    // KubeVirt deletes the source pod; its veth, and the CNI's route with it, go
    await source.kill();
    await this.removePod(from);
    await this.route(to, ROUTE_METRIC);
    await run('ip', ['-n', to.node.ns.name, 'route', 'del', `${to.podIp}/32`, 'dev', to.hostVeth.name, 'metric', String(ELEVATED_METRIC)]);
    return {
      startedAt,
      completedAt,
      downtimeMs: done.downtime ?? null,
      firstFrameAt: active.time,
      firstFrameType: active.ethertype,
      activatedAt: active.activatedAt,
    };
  }

  /**
   * The guest moved to another node: the network (BGP, with the target's
   * elevated priority) sends its IP to that node, from the client's network
   * and from the source node, whose fast path forgets it.
   */
  private async steerToNode(ip: string, from: MigrationNode, to: MigrationNode): Promise<void> {
    await Promise.all([
      ipBatch([`route replace ${ip}/32 via ${to.uplinkIp}`], this.lab.client.ns.name),
      ipBatch([`route replace ${ip}/32 via ${from.gatewayIp} metric ${ELEVATED_METRIC}`], from.ns.name),
    ]);
    from.emulator.deleteRoute(ip);
  }

  /** Deletes a pod as the container runtime does (QEMU killed first). */
  async removePod(pod: MigratablePod): Promise<void> {
    if (!this.live.delete(pod.name)) return;
    await pod.qemu?.kill();
    if (pod.node.emulatorAttached) pod.node.emulator.detach({ netns: pod.node.ns.path, ifname: pod.hostVeth.name });
    await deleteNetns([pod.name]);
    this.lab.disown(pod.podNs);
    rmSync(pod.qmpSocket, { force: true });
  }

  /** Kills every guest and deletes every pod still there. */
  async destroy(): Promise<void> {
    for (const p of [...this.live.values()]) {
      await p.qemu?.kill();
      if (existsSync(p.qmpSocket)) rmSync(p.qmpSocket, { force: true });
    }
    const all = [...this.live.values()];
    this.live.clear();
    if (!this.lab.destroyed) {
      for (const p of all) if (p.node.emulatorAttached) p.node.emulator.detach({ netns: p.node.ns.path, ifname: p.hostVeth.name });
    }
    await deleteNetns(all.map((p) => p.name));
    for (const p of all) this.lab.disown(p.podNs);
  }
}

/**
 * Resolves `frame` with the first frame from `mac` that `ifname` receives
 * (tcpdump -c 1, packet-buffered): what the CNI reacts to.
 */
/** The target QEMU's run state, for an error message. */
async function runState(qmpSocket: string): Promise<string> {
  try {
    const qmp = await Qmp.connect(qmpSocket);
    try {
      const r = (await qmp.execute('query-status')) as { status?: string; running?: boolean };
      return `${r.status ?? 'unknown'}${r.running ? ', running' : ', not running'}`;
    } finally {
      qmp.close();
    }
  } catch (e) {
    return `no answer on QMP (${(e as Error).message})`;
  }
}

async function firstFrame(
  nsPath: string,
  ifname: string,
  mac: string,
): Promise<{ frame: Promise<{ time: number; ethertype: number }>; stop: () => Promise<void> }> {
  const child = spawnIn(nsPath, 'tcpdump', ['-i', ifname, '-p', '-U', '--immediate-mode', '-n', '-c', '1', '-s', '64', '-w', '-', 'ether', 'src', mac]);
  let out = Buffer.alloc(0);
  let err = '';
  const frame = new Promise<{ time: number; ethertype: number }>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out = Buffer.concat([out, b]);
      // pcap: 24-byte file header, 16-byte record header, then the frame (ethertype at 12)
      if (out.length >= 24 + 16 + 14) {
        const time = out.readUInt32LE(24) * 1000 + out.readUInt32LE(28) / 1000;
        resolve({ time, ethertype: out.readUInt16BE(40 + 12) });
      }
    });
    child.on('exit', (code) => reject(new Error(`tcpdump on ${ifname} exited (${code}) before a frame: ${err}`)));
  });
  frame.catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump on ${ifname} did not start: ${err}`)), 10_000);
    child.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      if (err.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { frame, stop: () => killAndWait(child, 'SIGINT') };
}
