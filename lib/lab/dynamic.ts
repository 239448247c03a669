/**
 * VM pods that come and go while a lab runs (the node daemon's tests): add a
 * KubeVirt bridge-binding VM pod with a netns guest, delete it, change its
 * guest's MAC. Built on the lab's pieces (addressing, exec, netns) and wired
 * like topology.ts wires the lab's own VM pods, in the order a node sees it
 * happen: the CNI's veth, pod IP and route first, then virt-launcher's
 * dummy, bridge and tap, then the guest boots and talks (the bridge learns
 * its MAC).
 *
 *   const pods = new DynamicPods(lab);
 *   const vm = await pods.add();        // bridge and tap exist when this returns
 *   await pods.remove(vm);              // `ip netns delete`, as the runtime does
 *   await pods.destroy();               // every pod still there (also on failure)
 *
 * Netns names: <lab name>-d<n> (pod) and <lab name>-d<n>g (guest), never reused;
 * the lab adopts them, so its destroy() deletes whatever is left.
 */
import { GATEWAY_IP, MAX_PODS_OF_A_KIND, POD_IF, VM_BRIDGE, VM_NIC, VM_TAP, caliName, normalizeMac, randomMac, vmPodIp } from './addressing.js';
import { ipBatch, runIn, sysctls } from './exec.js';
import type { Lab } from './lab.js';
import { deleteNetns, netnsRef } from './netns.js';
import type { VmPod } from './topology.js';
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
  iface,
  links,
  podInterfaceLines,
  portsForwarding,
} from './wiring.js';

export interface AddOptions {
  /** The guest's MAC (a VMI macAddress); default: the pod MAC. */
  guestMac?: string;
  /** Let the guest send a frame once it is up (a booted guest does: DHCP, ARP), so its MAC is learned. Default true. */
  announce?: boolean;
}

export interface DynamicVm extends VmPod {
  /** When the bridge and the tap both existed (Date.now()). */
  readonly readyAt: number;
}

export class DynamicPods {
  private seq = 0;
  private readonly live = new Map<string, DynamicVm>();
  private readonly usedIndexes = new Set<number>();

  constructor(private readonly lab: Lab) {
    for (const vm of lab.vms) this.usedIndexes.add(vm.index);
  }

  /** The dynamic pods that exist now. */
  get pods(): DynamicVm[] {
    return [...this.live.values()];
  }

  private freeIndex(): number {
    for (let i = 0; i < MAX_PODS_OF_A_KIND; i++) if (!this.usedIndexes.has(i)) return i;
    throw new RangeError(`lab: at most ${MAX_PODS_OF_A_KIND} VM pods at once`);
  }

  /** Creates a VM pod; resolves when its bridge and tap exist (and, by default, its guest has announced itself). */
  async add(options: AddOptions = {}): Promise<DynamicVm> {
    const index = this.freeIndex();
    this.usedIndexes.add(index);
    const name = `${this.lab.name}-d${this.seq++}`;
    const podNs = netnsRef(name);
    const guestNs = netnsRef(`${name}g`);
    const nodeNs = this.lab.node.ns;
    const podIp = vmPodIp(index);
    const dummyMac = randomMac(0x0a);
    const guestMac = options.guestMac ? normalizeMac(options.guestMac) : dummyMac;
    const nicMac = randomMac(0x06);
    const cali = caliName();
    try {
      // the CNI: netns, veth into the node, pod IP route and proxy ARP on the host side
      await ipBatch([
        `netns add ${podNs.name}`,
        `netns add ${guestNs.name}`,
        caliVethLine(cali, nodeNs, podNs, VM_NIC, nicMac),
        guestVethLine(podNs, guestNs, randomMac(0x0e), guestMac),
      ]);
      // the lab deletes them too (destroy(), process exit), whatever happens here
      this.lab.adopt(podNs);
      this.lab.adopt(guestNs);
      await Promise.all([
        ipBatch(caliNodeLines(cali, podIp, 'replace'), nodeNs.name).then(() => sysctls(nodeNs.path, caliSysctls(cali))),
        sysctls(podNs.path, [...NO_IPV6, ...VM_POD_SYSCTLS]),
        sysctls(guestNs.path, NO_IPV6).then(() => ipBatch(podInterfaceLines(podIp), guestNs.name)),
      ]);
      // virt-launcher: the dummy with the pod IP, then the bridge with the uplink and the tap
      const kind = await dummyKind(podNs);
      await ipBatch(['link set lo up', ...dummyLines(dummyMac, podIp, kind), ...bridgeLines(nicMac)], podNs.name);
      // the ports forward once the kernel has seen their carrier (linkwatch, up to a second late under load)
      await portsForwarding(podNs, [VM_NIC, VM_TAP], 3000);
      const readyAt = Date.now();
      const [nodeLinks, podLinks] = await Promise.all([links(nodeNs), links(podNs)]);
      const vm: DynamicVm = {
        index,
        podNs,
        podIp,
        guestMac,
        dummyMac,
        dummyKind: kind,
        bridgeTxChecksumOff: false,
        nic: iface(podLinks, VM_NIC),
        bridge: VM_BRIDGE,
        tap: VM_TAP,
        hostVeth: iface(nodeLinks, cali),
        guest: { label: `vm${index}`, ns: guestNs, ip: podIp },
        guestNs,
        readyAt,
      };
      this.live.set(name, vm);
      if (this.lab.emulatorAttached) {
        this.lab.emulator.setRoute(podIp, vm.hostVeth.ifindex);
        this.lab.emulator.attach({ netns: nodeNs.path, ifname: cali });
      }
      if (options.announce !== false) await announce(vm);
      return vm;
    } catch (e) {
      this.usedIndexes.delete(index);
      this.live.delete(name);
      await deleteNetns([podNs.name, guestNs.name]);
      this.lab.disown(podNs);
      this.lab.disown(guestNs);
      throw e;
    }
  }

  /** Deletes a VM pod the way a container runtime does (its netns files go; the kernel frees them). */
  async remove(vm: VmPod): Promise<void> {
    const name = vm.podNs.name;
    if (!this.live.delete(name)) return;
    if (this.lab.emulatorAttached) {
      this.lab.emulator.detach({ netns: this.lab.node.ns.path, ifname: vm.hostVeth.name });
      this.lab.emulator.deleteRoute(vm.podIp);
    }
    await deleteNetns([name, vm.guestNs!.name]);
    this.lab.disown(vm.podNs);
    this.lab.disown(vm.guestNs!);
    this.usedIndexes.delete(vm.index);
  }

  /** Removes every dynamic pod still there. */
  async destroy(): Promise<void> {
    const all = [...this.live.values()];
    this.live.clear();
    if (this.lab.emulatorAttached && !this.lab.destroyed) {
      for (const vm of all) {
        try {
          this.lab.emulator.detach({ netns: this.lab.node.ns.path, ifname: vm.hostVeth.name });
        } catch {
          // the lab is going away too
        }
      }
    }
    await deleteNetns(all.flatMap((vm) => [vm.podNs.name, vm.guestNs!.name]));
    for (const vm of all) {
      this.lab.disown(vm.podNs);
      this.lab.disown(vm.guestNs!);
    }
  }
}

/** The guest reconfigured: a new MAC on its interface, then it talks (and the bridge and the node learn the MAC). */
export async function setGuestMac<T extends VmPod>(vm: T, mac: string): Promise<T> {
  if (!vm.guestNs) throw new Error('lab: setGuestMac needs a netns guest');
  const guestMac = normalizeMac(mac);
  await ipBatch([`link set ${POD_IF} address ${guestMac}`], vm.guestNs.name);
  const changed = { ...vm, guestMac };
  await announce(changed);
  return changed;
}

/** The guest sends a frame: ARP for its gateway (answered by the node's proxy ARP), again each second until answered, 3 tries. */
export async function announce(vm: VmPod): Promise<void> {
  if (!vm.guestNs) throw new Error('lab: announce needs a netns guest');
  await runIn(vm.guestNs.path, 'busybox', ['arping', '-f', '-c', '3', '-w', '3', '-I', POD_IF, GATEWAY_IP], { allowFail: true });
}
