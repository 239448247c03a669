/**
 * The control-plane benchmark's VM pods: hundreds of bridged VM pods with
 * netns guests on a lab's node, created and deleted in batches, wired from
 * the lab's parts (lib/lab/wiring.ts) like every other lab pod. Names and
 * addresses: see control-plane.ts.
 */
import fs from 'node:fs';
import { CALICO_HOST_MAC, VM_BRIDGE, VM_NIC, VM_TAP, caliName, randomMac } from '../../lib/lab/addressing.js';
import { announce } from '../../lib/lab/dynamic.js';
import { ipBatch, runIn, sysctls } from '../../lib/lab/exec.js';
import type { Lab } from '../../lib/lab/lab.js';
import { netnsRef } from '../../lib/lab/netns.js';
import type { VmPod } from '../../lib/lab/topology.js';
import {
  NO_IPV6,
  VM_POD_SYSCTLS,
  bridgeLines,
  caliNodeLines,
  caliSysctls,
  caliVethLine,
  dummyKind,
  dummyLines,
  guestVethLine,
  links,
  podInterfaceLines,
  portsForwarding,
} from '../../lib/lab/wiring.js';
import { GuestSender } from './guest-sender.js';
import { pool, sleep } from './util.js';

const BUILD_BATCH = 50;
const CONCURRENCY = 8;
/** A guest that talks keeps its FDB entry; the bench's guests talk once, so the entry must not age out (default 300 s) mid-run. */
const FDB_AGEING_CS = 360000;

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
   * forwarding and (announce) its guest MAC learned by the bridge. 'cue': its
   * guest announces itself right when its bridge and tap forward, from a
   * process started before (guest-sender.ts), and `announcedAt` is then.
   */
  async create(names: string[], announceGuests: boolean | 'cue' = true): Promise<BenchVm[]> {
    const out: BenchVm[] = [];
    for (let i = 0; i < names.length; i += BUILD_BATCH) out.push(...(await this.createBatch(names.slice(i, i + BUILD_BATCH), announceGuests)));
    return out;
  }

  private async createBatch(names: string[], announceGuests: boolean | 'cue'): Promise<BenchVm[]> {
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
        caliVethLine(p.cali, node, p.podNs, VM_NIC, p.nicMac),
        guestVethLine(p.podNs, p.guestNs, randomMac(0x0e), p.mac),
      ]),
    );
    await ipBatch(
      plans.flatMap((p) => caliNodeLines(p.cali, p.podIp, 'replace')),
      node.name,
    );
    await sysctls(
      node.path,
      plans.flatMap((p) => caliSysctls(p.cali)),
    );
    // virt-launcher (dummy, bridge, tap) and the guests
    const dummy = await dummyKind(plans[0]!.podNs);
    await pool(plans, CONCURRENCY, async (p) => {
      await Promise.all([
        sysctls(p.podNs.path, [...NO_IPV6, ...VM_POD_SYSCTLS]).then(() =>
          ipBatch(['link set lo up', ...dummyLines(p.mac, p.podIp, dummy), ...bridgeLines(p.nicMac, { ageingTimeCs: FDB_AGEING_CS })], p.podNs.name),
        ),
        sysctls(p.guestNs.path, NO_IPV6).then(() => ipBatch(podInterfaceLines(p.podIp), p.guestNs.name)),
      ]);
    });
    const nodeLinks = await links(node);
    return pool(plans, CONCURRENCY, async (p) => {
      const cali = nodeLinks.get(p.cali);
      if (!cali) throw new Error(`bench: ${p.cali} is missing in the node`);
      const sender = announceGuests === 'cue' ? new GuestSender(p.guestNs.path) : null;
      try {
        await sender?.ready();
        // the kernel's linkwatch may take up to a second
        await portsForwarding(p.podNs, [VM_NIC, VM_TAP], 5000);
        return await this.ready(p, cali, dummy, sender, announceGuests === true);
      } finally {
        await sender?.stop();
      }
    });
  }

  /** The pod's record once its ports forward; its guest announces itself. */
  private async ready(
    p: { name: string; index: number; podNs: BenchVm['podNs']; guestNs: BenchVm['podNs']; podIp: string; mac: string; nicMac: string; cali: string },
    cali: { ifindex: number; link_index?: number },
    dummy: BenchVm['dummyKind'],
    sender: GuestSender | null,
    announceGuests: boolean,
  ): Promise<BenchVm> {
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
    if (sender) vm.announcedAt = await sender.announce(vm.guestMac, vm.podIp);
    else if (announceGuests) await announceLearned(vm);
    return vm;
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
