/**
 * Endpoint sync: one endpoint per guest IP of a VM pod, with the MAC the
 * guest uses, written only when the IP is not held by another live pod the
 * node still routes it to, and deleted only while it is still this pod's.
 */
import type { BridgeBypass } from '../dataplane/codec.js';
import type { Dataplane } from '../dataplane/dataplane.js';
import { EndpointTableFullError } from '../dataplane/endpoint-table.js';
import type { Route } from '../discovery/iproute.js';
import { routedDevice, type RefusedClaim } from '../discovery/ownership.js';
import type { VmPort } from '../discovery/vm-pod.js';
import type { Changes } from './changes.js';
import type { Logger } from './log.js';
import type { Pod } from './pod.js';

export interface EndpointSyncDeps {
  dp: Dataplane;
  log: Logger;
  changes: Changes;
  /** The tracked pod of a netns inode. */
  podOf: (inode: number) => Pod | undefined;
  /** Accelerate mode: whether `redirect` may skip the port's host veth egress. */
  mayRedirect: (pod: Pod, port: VmPort) => boolean;
}

export class EndpointSync {
  constructor(private readonly d: EndpointSyncDeps) {}

  /**
   * Writes the port's endpoint; returns the refusal instead when the IP is
   * held by another live pod whose route still points to it (discovery
   * already checked the route to this pod: this catches a race between two
   * readings of the routes, never lets a claim win over a route).
   */
  ensureEndpoint(pod: Pod, port: VmPort, reason: string, bypass: BridgeBypass | null, routes: Route[]): RefusedClaim | null {
    const { dp, log } = this.d;
    const current = dp.endpoint(port.guestIp);
    const holder = current && current.podNetns !== pod.inode ? this.d.podOf(current.podNetns ?? 0) : undefined;
    const held = holder && !holder.gone && holder.ports.find((p) => p.guestIp === port.guestIp);
    if (held && routedDevice(port.guestIp, routes) === held.hostVeth.ifname) {
      return { ip: port.guestIp, routedTo: held.hostVeth.ifname, claimedBy: 'pod address' };
    }
    if (port.guestMac === null) {
      // not known right now (nothing learned yet, or several MACs): keep what is there
      if ((!current || current.podNetns !== pod.inode) && !pod.waitingLogged) {
        pod.waitingLogged = true;
        log.info({ netns: pod.path, guestIp: port.guestIp, why: port.guestMacUnknown }, 'waiting for the guest MAC');
      }
      return null;
    }
    const redirect = this.d.mayRedirect(pod, port);
    let result: 'added' | 'updated' | 'unchanged';
    try {
      result = dp.setEndpoint({
        guestIp: port.guestIp,
        guestMac: port.guestMac,
        gatewayMac: port.hostVeth.mac,
        hostIfindex: port.hostVeth.ifindex,
        redirect,
        podNetns: pod.inode,
        bypass,
      });
    } catch (e) {
      if (!(e instanceof EndpointTableFullError)) throw e;
      // fixup stays attached: with no endpoint for the guest it passes every frame unchanged
      // (PASS_UNKNOWN); the endpoint is written when a check finds a slot (events, resync)
      if (!pod.uncovered.has(port.guestIp)) log.warn({ netns: pod.path, guestIp: port.guestIp, err: e.message }, 'VM pod uncovered: its endpoint cannot be written');
      pod.uncovered.set(port.guestIp, e.message);
      return null;
    }
    if (pod.uncovered.delete(port.guestIp)) log.info({ netns: pod.path, guestIp: port.guestIp }, 'VM pod covered again: its endpoint found a slot');
    if (result === 'unchanged') return null;
    pod.waitingLogged = false;
    let why: string;
    if (!current) why = `guest MAC known (from ${port.guestMacFrom})`;
    else if (current.podNetns !== pod.inode) why = `the node now routes the guest IP to this pod (was netns inode ${current.podNetns})`;
    else if (current.guestMac !== port.guestMac) why = `guest MAC changed from ${current.guestMac} (from ${port.guestMacFrom})`;
    else if (current.hostIfindex !== port.hostVeth.ifindex || current.gatewayMac !== port.hostVeth.mac) why = 'host veth changed';
    else if (JSON.stringify(current.bypass) !== JSON.stringify(bypass)) why = bypass ? 'bridge bypass on' : 'bridge bypass off';
    else why = reason;
    this.d.changes.change(
      result === 'added' ? 'endpoint_add' : 'endpoint_update',
      { netns: pod.path, guestIp: port.guestIp, guestMac: port.guestMac, gatewayMac: port.hostVeth.mac, hostVeth: port.hostVeth.ifname, hostIfindex: port.hostVeth.ifindex, bypass: bypass !== null },
      result === 'added' ? 'added endpoint' : 'updated endpoint',
      why,
    );
    return null;
  }

  /** Deletes the endpoint of `ip` if it (still) belongs to this pod: after IP reuse it may be another's. */
  deleteEndpointOf(pod: Pod, ip: string, reason: string): void {
    const ep = this.d.dp.endpoint(ip);
    if (!ep || ep.podNetns !== pod.inode) return;
    this.d.dp.deleteEndpoint(ip);
    this.d.changes.change('endpoint_delete', { netns: pod.path, guestIp: ip, guestMac: ep.guestMac }, 'removed endpoint', reason);
  }
}
