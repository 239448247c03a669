/**
 * Applying a check of a pod: fixup attached at each VM uplink (and
 * from_guest at the guest port with the bridge bypass), one endpoint per
 * guest IP, the claims it was refused recorded; attachments and endpoints of
 * ports and addresses that are gone removed.
 */
import type { VmPort } from '../discovery/vm-pod.js';
import type { AttachmentSync } from './attachments.js';
import type { Changes } from './changes.js';
import type { Claims } from './claims.js';
import type { DaemonConfig } from './config.js';
import type { EndpointSync } from './endpoints.js';
import type { Logger } from './log.js';
import { AMBIGUOUS_MACS, AMBIGUOUS_POLL_MS, type CheckRequest, type Pod } from './pod.js';
import type { NodeView, PodLook } from './probe.js';
import type { PodLinks } from './tracking.js';
import { scopeFor } from '../dataplane/pod-instances.js';
import { bypassUnsafeBecause, guestHookMissingBecause } from '../dataplane/bridge-path.js';
import { guestHookMissing } from '../dataplane/guest-hooks.js';
import type { Native } from '../native.js';
import type { BypassWarmup } from './bypass-warmup.js';

export interface PodSyncDeps {
  cfg: DaemonConfig;
  native: Native;
  log: Logger;
  node: NodeView;
  changes: Changes;
  attach: AttachmentSync;
  endpoints: EndpointSync;
  claims: Claims;
  /** Loads pods' own programs for the bridge bypass ahead of their checks. */
  warmup: BypassWarmup;
  /** The live VM pod behind a host veth, or holding the endpoint of `ip`. */
  ownerOf: (hostVeth: string | null, ip: string) => Pod | null;
  /** Records what node events about the pod name: its veth peers, host veths and guest IPs (the tracker's indexes). */
  setLinks: (pod: Pod, links: PodLinks) => void;
  /** A VM pod is watched by a monitor. */
  startMonitor: (pod: Pod) => void;
  stopping: () => boolean;
}

export class PodSync {
  constructor(private readonly d: PodSyncDeps) {}

  async apply(pod: Pod, look: PodLook, request: CheckRequest): Promise<void> {
    const { log, claims } = this.d;
    const wasVm = pod.kind === 'vm';
    const oldIps = pod.ports.map((p) => p.guestIp);
    pod.ports = look.ports;
    this.d.setLinks(pod, { peers: look.peers, hostVeths: look.ports.map((p) => p.hostVeth.ifname), guestIps: look.ports.map((p) => p.guestIp) });
    const refused = [...look.refused];
    const ambiguous = look.ports.some((p) => (p.learnedMacs ?? 0) > AMBIGUOUS_MACS);
    if (ambiguous !== pod.ambiguous) {
      pod.ambiguous = ambiguous;
      if (ambiguous) log.warn({ netns: pod.path, macs: Math.max(...look.ports.map((p) => p.learnedMacs ?? 0)) }, `the pod's bridge learned more than ${AMBIGUOUS_MACS} MACs on a guest port: polled every ${AMBIGUOUS_POLL_MS / 1000} s, its FDB events ignored`);
      else log.info({ netns: pod.path }, "the pod's bridge is down to a few MACs on its guest ports: its FDB events count again");
    }
    for (const ip of pod.uncovered.keys()) if (!look.ports.some((p) => p.guestIp === ip)) pod.uncovered.delete(ip);

    if (look.ports.length === 0) {
      claims.update(pod, refused, this.d.ownerOf);
      pod.kind = 'plain';
      if (wasVm) {
        pod.ports = oldIps.map((guestIp) => ({ guestIp }) as VmPort); // what forget() removes
        this.forget(pod, `no longer a VM pod: ${look.why ?? 'no bridge with a guest port leads to this node'}`);
        pod.ports = [];
        log.info({ netns: pod.path, why: look.why }, 'pod is no longer a VM pod');
      }
      return;
    }

    if (!wasVm) {
      pod.kind = 'vm';
      pod.vmAt ??= Date.now();
      log.info(
        { netns: pod.path, ports: look.ports.map((p) => ({ uplink: p.uplink.ifname, guestIp: p.guestIp, guestMac: p.guestMac, hostVeth: p.hostVeth.ifname })), reason: request.reason },
        'found VM pod',
      );
    }
    this.d.startMonitor(pod);

    // ports that are no longer VM uplinks, or guest ports behind them
    this.forget(pod, 'the port is no longer a VM uplink or guest port', look.ports.flatMap((p) => [p.uplink.ifname, ...p.guestPorts]));
    const records = this.d.changes.recordsOf(pod.inode);
    const routes = await this.d.node.nodeRoutes();
    let ownInstance = false;
    for (const port of look.ports) {
      const fromGuestBefore = (ifname: string) => records.some((r) => r.program === 'from_guest' && r.ifname === ifname);
      // fixup not attached yet: this check attaches it, and makes the guest ports' hooks with it (attachments.ts)
      const coveredBefore = records.some((r) => r.program === 'fixup' && r.ifname === port.uplink.ifname);
      const wanted = await this.bypassFor(pod, port, (ifname) => coveredBefore && !fromGuestBefore(ifname));
      if (pod.gone || this.d.stopping()) return;
      // the pod's own programs not loaded (nor attached before): covered through its bridge now, past it once they are
      const attachedBefore = wanted !== null && fromGuestBefore(wanted.ifname);
      const bypass = wanted !== null && (attachedBefore || this.d.warmup.ready(pod)) ? wanted : null;
      if (wanted && !bypass) this.d.warmup.want(pod);
      ownInstance ||= bypass !== null;
      await this.d.attach.ensureAttached('fixup', pod, port, port.uplink.ifname, records, request, scopeFor('fixup', pod.inode, bypass !== null));
      if (pod.gone || this.d.stopping()) return;
      if (bypass) {
        await this.d.attach.ensureAttached('from_guest', pod, port, bypass.ifname, records, request, scopeFor('from_guest', pod.inode, true));
        if (pod.gone || this.d.stopping()) return;
      } else {
        const stale = records.filter((r) => r.program === 'from_guest' && port.guestPorts.includes(r.ifname));
        for (const r of stale) this.d.attach.dropPodRecord(pod, r, 'the bridge bypass is off');
      }
      // a port on standby (routed elsewhere) has fixup in place and no endpoint until the route moves here
      if (port.standby) this.d.endpoints.deleteEndpointOf(pod, port.guestIp, `the node routes the guest IP to ${port.standby.routedTo}`);
      const conflict = port.standby ?? this.d.endpoints.ensureEndpoint(pod, port, request.reason, bypass ? { uplinkIfindex: port.uplink.ifindex, guestIfindex: bypass.ifindex } : null, routes);
      if (conflict && !refused.includes(conflict)) refused.push(conflict);
    }
    claims.update(pod, refused, this.d.ownerOf);
    if (ownInstance) this.d.warmup.done(pod);

    for (const ip of oldIps) {
      if (!look.ports.some((p) => p.guestIp === ip)) this.d.endpoints.deleteEndpointOf(pod, ip, 'the pod no longer has this guest IP');
    }
  }

  /** Removes the attachments and endpoints that belong to a pod (but the attachments on `keepPorts`). */
  forget(pod: Pod, reason: string, keepPorts: string[] = []): void {
    this.d.attach.forget(pod, reason, keepPorts);
    if (keepPorts.length === 0) {
      // the guest IPs this pod had; anything else of it is found by the full resync
      for (const ip of new Set(pod.ports.map((p) => p.guestIp))) this.d.endpoints.deleteEndpointOf(pod, ip, reason);
    }
  }

  /**
   * The guest port to bypass the bridge to: the default, but where the bypass
   * is unsafe for the pod (bridge-path.ts), or where from_guest would make
   * the guest port's tc hook while the guest's traffic runs (guest-hooks.ts):
   * a pod covered before (`liveWithoutBypass`) whose guest port has none.
   */
  private async bypassFor(pod: Pod, port: VmPort, liveWithoutBypass: (ifname: string) => boolean): Promise<VmPort['guestPort']> {
    if (!this.d.cfg.bypassBridge) return null;
    let kept = bypassUnsafeBecause(port);
    if (kept === null && port.guestPort && liveWithoutBypass(port.guestPort.ifname) && (await guestHookMissing(this.d.native, pod.path, port.guestPort.ifname, this.d.cfg.mode))) {
      kept = guestHookMissingBecause(port.guestPort.ifname);
    }
    if (kept !== pod.bridgeKeptLogged) {
      pod.bridgeKeptLogged = kept;
      if (kept !== null) this.d.log.warn({ netns: pod.path, bridge: port.bridge, guestPorts: port.guestPorts, why: kept }, `keeping the bridge on the path of this pod's guest traffic: the bridge bypass is unsafe here, ${kept}`);
      else if (pod.kind === 'vm') this.d.log.info({ netns: pod.path, bridge: port.bridge }, 'the bridge bypass is safe for this pod again: its guest traffic skips the bridge');
    }
    return kept === null ? port.guestPort : null;
  }
}
