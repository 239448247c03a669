/**
 * Names and addresses of a lab. Everything lives in the benchmarking range
 * 198.18.0.0/15 (RFC 2544) and inside the lab's own network namespaces.
 */
import { randomBytes } from 'node:crypto';

/** The client-node link ("the network between nodes"). */
export const UPLINK_PREFIX_LEN = 24;
export const NODE_UPLINK_IP = '198.18.0.1';
export const CLIENT_IP = '198.18.0.2';
/** Pods of the lab's node. */
export const POD_CIDR = '198.18.1.0/24';
/** Calico's gateway, answered by proxy ARP on the host veth. */
export const GATEWAY_IP = '169.254.1.1';
/** The address KubeVirt puts on the bridge of a bridge-binding pod. */
export const BRIDGE_IP = '169.254.75.10';
/** Calico's MAC for every host-side veth. */
export const CALICO_HOST_MAC = 'ee:ee:ee:ee:ee:ee';

export const VM_BRIDGE = 'k6t-eth0';
export const VM_NIC = 'eth0-nic';
export const VM_TAP = 'tap0';
export const POD_IF = 'eth0';
export const NODE_UPLINK_IF = 'eth0';
export const CLIENT_IF = 'eth0';

/** IP of the i-th VM pod and of the j-th plain pod. */
export function vmPodIp(i: number): string {
  return `198.18.1.${10 + i}`;
}
export function plainPodIp(j: number): string {
  return `198.18.1.${130 + j}`;
}
export const MAX_PODS_OF_A_KIND = 100;

/** A random locally administered unicast MAC whose first byte is `first` (bit 1 set, bit 0 clear). */
export function randomMac(first = 0x0a): string {
  const b = randomBytes(6);
  b[0] = (first | 0x02) & 0xfe;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Calico's host veth name: "cali" and 11 hex digits. */
export function caliName(): string {
  return `cali${randomBytes(6).toString('hex').slice(0, 11)}`;
}

export function randomTag(bytes = 3): string {
  return randomBytes(bytes).toString('hex');
}

export function normalizeMac(mac: string): string {
  const parts = mac.toLowerCase().split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-f]{1,2}$/.test(p))) {
    throw new TypeError(`not a MAC address: ${mac}`);
  }
  const norm = parts.map((p) => p.padStart(2, '0'));
  if (parseInt(norm[0]!, 16) & 1) throw new TypeError(`not a unicast MAC address: ${mac}`);
  return norm.join(':');
}

export function ipv4Bytes(ip: string): Buffer {
  const parts = ip.split('.').map((p) => Number(p));
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new TypeError(`not an IPv4 address: ${ip}`);
  }
  return Buffer.from(parts);
}
