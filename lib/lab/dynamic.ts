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
import {
  BRIDGE_IP,
  CALICO_HOST_MAC,
  GATEWAY_IP,
  MAX_PODS_OF_A_KIND,
  POD_IF,
  VM_BRIDGE,
  VM_NIC,
  VM_TAP,
  caliName,
  normalizeMac,
  randomMac,
  vmPodIp,
} from './addressing.js';
import { CommandError, ipBatch, run, runIn, sysctls } from './exec.js';
import type { Lab } from './lab.js';
import { deleteNetns, netnsRef } from './netns.js';
import type { Iface, VmPod } from './topology.js';

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

let dummyKind: 'dummy' | 'bridge' | undefined;

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
        `link add ${cali} netns ${nodeNs.name} address ${CALICO_HOST_MAC} type veth peer name ${VM_NIC} netns ${podNs.name} address ${nicMac}`,
        `link add ${VM_TAP} netns ${podNs.name} address ${randomMac(0x0e)} type veth peer name ${POD_IF} netns ${guestNs.name} address ${guestMac}`,
      ]);
      // the lab deletes them too (destroy(), process exit), whatever happens here
      this.lab.adopt(podNs);
      this.lab.adopt(guestNs);
      await Promise.all([
        ipBatch([`link set ${cali} up`, `route replace ${podIp}/32 dev ${cali} scope link`], nodeNs.name).then(() =>
          sysctls(nodeNs.path, [
            [`net.ipv4.conf.${cali}.proxy_arp`, 1],
            [`net.ipv4.neigh.${cali}.proxy_delay`, 0],
          ]),
        ),
        sysctls(podNs.path, [
          ['net.ipv6.conf.all.disable_ipv6', 1],
          ['net.ipv6.conf.default.disable_ipv6', 1],
          ['net.ipv4.conf.all.arp_ignore', 1],
        ]),
        sysctls(guestNs.path, [
          ['net.ipv6.conf.all.disable_ipv6', 1],
          ['net.ipv6.conf.default.disable_ipv6', 1],
        ]).then(() =>
          ipBatch(
            [
              'link set lo up',
              `link set ${POD_IF} up`,
              `addr add ${podIp}/32 dev ${POD_IF}`,
              `route add ${GATEWAY_IP} dev ${POD_IF} scope link`,
              `route add default via ${GATEWAY_IP} dev ${POD_IF}`,
            ],
            guestNs.name,
          ),
        ),
      ]);
      // virt-launcher: the dummy with the pod IP, then the bridge with the uplink and the tap
      const kind = await addDummy(podNs.name, dummyMac);
      await ipBatch(
        [
          'link set lo up',
          `addr add ${podIp}/32 dev ${POD_IF}`,
          `link add ${VM_BRIDGE} address ${nicMac} type bridge`,
          `addr add ${BRIDGE_IP}/32 dev ${VM_BRIDGE}`,
          `link set ${VM_NIC} master ${VM_BRIDGE}`,
          `link set ${VM_NIC} type bridge_slave learning off`,
          `link set ${VM_TAP} master ${VM_BRIDGE}`,
          `link set ${VM_BRIDGE} up`,
          `link set ${VM_NIC} up`,
          `link set ${VM_TAP} up`,
        ],
        podNs.name,
      );
      // the ports forward once the kernel has seen their carrier (linkwatch, up to a second late under load)
      await portsForwarding(podNs.path, [VM_NIC, VM_TAP]);
      const readyAt = Date.now();
      const [nodeLinks, podLinks] = await Promise.all([links(nodeNs.name), links(podNs.name)]);
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

/** Waits until these bridge ports forward (at most 3 s). */
async function portsForwarding(nsPath: string, ports: string[]): Promise<void> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const { stdout } = await runIn(nsPath, 'bridge', ['-j', 'link', 'show']);
    const state = new Map((JSON.parse(stdout || '[]') as Array<{ ifname: string; state?: string; flags?: string[] }>).map((p) => [p.ifname, p]));
    if (ports.every((p) => state.get(p)?.state === 'forwarding' && state.get(p)?.flags?.includes('LOWER_UP'))) return;
    if (Date.now() > deadline) throw new Error(`lab: bridge ports ${ports.join(', ')} in ${nsPath} do not forward: ${stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function addDummy(podNs: string, mac: string): Promise<'dummy' | 'bridge'> {
  if (dummyKind !== 'bridge') {
    try {
      await run('ip', ['-n', podNs, 'link', 'add', POD_IF, 'address', mac, 'type', 'dummy']);
      dummyKind = 'dummy';
      return 'dummy';
    } catch (e) {
      if (!(e instanceof CommandError) || dummyKind === 'dummy') throw e;
      dummyKind = 'bridge';
    }
  }
  // no dummy driver on this kernel: a DOWN bridge stands in for it
  await run('ip', ['-n', podNs, 'link', 'add', POD_IF, 'address', mac, 'type', 'bridge']);
  return 'bridge';
}

async function links(nsName: string): Promise<Map<string, { ifindex: number; address: string }>> {
  const { stdout } = await run('ip', ['-j', '-n', nsName, 'link', 'show']);
  return new Map((JSON.parse(stdout) as Array<{ ifname: string; ifindex: number; address: string }>).map((l) => [l.ifname, l]));
}

function iface(map: Map<string, { ifindex: number; address: string }>, name: string): Iface {
  const l = map.get(name);
  if (!l) throw new Error(`lab: ${name} is missing`);
  return { name, ifindex: l.ifindex, mac: l.address };
}
