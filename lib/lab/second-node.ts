/**
 * A second node for a lab: its own node netns, linked to the lab's client
 * (which routes between the nodes, as the network between real nodes does),
 * with its own CNI fast-path emulator. Pods on it come from migration.ts.
 *
 *   client netns                         second node netns
 *   eth0 198.18.0.2 (to the lab's node)
 *   eth1 198.18.2.2/24 ================= eth0 198.18.2.1/24, default via 198.18.2.2
 *
 * Netns <lab name>-n2, adopted by the lab; destroy() unloads the emulator.
 */
import { randomMac } from './addressing.js';
import { CniEmulator } from './emulator.js';
import { ipBatch, sysctls } from './exec.js';
import { DEFAULT_FLOW_TIMEOUT_MS } from './lab-emulator.js';
import type { Lab } from './lab.js';
import type { MigrationNode } from './migration.js';
import { type NetnsRef, deleteNetns, netnsRef } from './netns.js';

export const SECOND_NODE_IP = '198.18.2.1';
export const SECOND_NODE_GATEWAY = '198.18.2.2';
const CLIENT_SECOND_IF = 'eth1';
const UPLINK = 'eth0';

export class SecondNode implements MigrationNode {
  readonly uplinkIp = SECOND_NODE_IP;
  readonly gatewayIp = SECOND_NODE_GATEWAY;
  readonly podPrefix: string;
  private emu: CniEmulator | null = null;
  private on = false;

  private constructor(
    private readonly lab: Lab,
    readonly ns: NetnsRef,
  ) {
    this.podPrefix = `${lab.name}-n2m`;
  }

  static async create(lab: Lab): Promise<SecondNode> {
    const ns = netnsRef(`${lab.name}-n2`);
    await ipBatch([
      `netns add ${ns.name}`,
      `link add ${UPLINK} netns ${ns.name} address ${randomMac(0x02)} type veth peer name ${CLIENT_SECOND_IF} netns ${lab.client.ns.name} address ${randomMac(0x02)}`,
    ]);
    lab.adopt(ns);
    const node = new SecondNode(lab, ns);
    try {
      await ipBatch([`addr add ${SECOND_NODE_GATEWAY}/24 dev ${CLIENT_SECOND_IF}`, `link set ${CLIENT_SECOND_IF} up`], lab.client.ns.name);
      await ipBatch(['link set lo up', `addr add ${SECOND_NODE_IP}/24 dev ${UPLINK}`, `link set ${UPLINK} up`, `route add default via ${SECOND_NODE_GATEWAY} dev ${UPLINK}`], ns.name);
      // the client's netns is the network between the nodes: it forwards
      await sysctls(lab.client.ns.path, [['net.ipv4.ip_forward', 1]]);
      await sysctls(ns.path, [
        ['net.ipv4.ip_forward', 1],
        ['net.ipv6.conf.all.disable_ipv6', 1],
        ['net.ipv6.conf.default.disable_ipv6', 1],
      ]);
      return node;
    } catch (e) {
      await node.destroy();
      throw e;
    }
  }

  get emulator(): CniEmulator {
    if (!this.emu) {
      this.emu = CniEmulator.load({});
      this.emu.configure({ idleTimeoutMs: DEFAULT_FLOW_TIMEOUT_MS });
    }
    return this.emu;
  }

  get emulatorAttached(): boolean {
    return this.on;
  }

  /** The fast path at this node's uplink (Migrations.followEmulator() adds its pods' veths). */
  setEmulator(on: boolean): void {
    if (on === this.on) return;
    if (on) this.emulator.attach({ netns: this.ns.path, ifname: UPLINK });
    else this.emulator.detachAll();
    this.emulator.flushFlows();
    this.on = on;
  }

  async destroy(): Promise<void> {
    this.emu?.close();
    this.emu = null;
    this.on = false;
    await deleteNetns([this.ns.name]);
    this.lab.disown(this.ns);
  }
}
