/**
 * The lab's CNI fast-path emulator: loaded on first use with the lab's flow
 * timeouts and a route per pod, attached where Calico attaches (the node's
 * uplink and every pod's host veth).
 */
import type { AttachMode } from '../native.js';
import { CniEmulator, type EmulatorStats } from './emulator.js';
import type { NodeHost, PlainPod, VmPod } from './topology.js';

export const DEFAULT_FLOW_TIMEOUT_MS = 15_000;

export interface LabEmulatorOptions {
  mode?: AttachMode;
  flowTimeoutMs?: number;
  flowLifetimeMs?: number;
}

export class LabEmulator {
  private obj: CniEmulator | null = null;
  private on = false;

  constructor(
    private readonly options: LabEmulatorOptions,
    private readonly node: NodeHost,
    /** The lab's pods (read when the emulator loads and attaches). */
    private readonly pods: () => Array<VmPod | PlainPod>,
  ) {}

  /** The CNI emulator (loaded on first use). */
  get emulator(): CniEmulator {
    if (!this.obj) {
      const emu = CniEmulator.load({ mode: this.options.mode });
      try {
        emu.configure({
          idleTimeoutMs: this.options.flowTimeoutMs ?? DEFAULT_FLOW_TIMEOUT_MS,
          lifetimeMs: this.options.flowLifetimeMs ?? 0,
        });
        for (const p of this.pods()) emu.setRoute(p.podIp, p.hostVeth.ifindex);
      } catch (e) {
        emu.close();
        throw e;
      }
      this.obj = emu;
    }
    return this.obj;
  }

  /** Where the emulator attaches: the node's uplink and every pod's host veth (Calico's hooks). */
  hooks(): Array<{ netns: string; ifname: string }> {
    const node = this.node.ns.path;
    return [{ netns: node, ifname: this.node.uplink.name }, ...this.pods().map((p) => ({ netns: node, ifname: p.hostVeth.name }))];
  }

  /** Attaches (true) or detaches (false) the emulator at every hook; flows are forgotten either way. */
  set(on: boolean): void {
    if (on === this.on) return;
    const emu = this.emulator;
    if (on) {
      try {
        for (const h of this.hooks()) emu.attach(h);
      } catch (e) {
        emu.detachAll();
        throw e;
      }
    } else {
      emu.detachAll();
    }
    emu.flushFlows();
    this.on = on;
  }

  get attached(): boolean {
    return this.on;
  }

  /** The attach mode, once loaded. */
  get mode(): AttachMode | undefined {
    return this.obj?.mode;
  }

  stats(): EmulatorStats {
    return this.obj ? this.obj.stats() : { first: 0, expired: 0, redirected: 0, optedOut: 0, other: 0 };
  }

  close(): void {
    this.obj?.close();
  }
}
