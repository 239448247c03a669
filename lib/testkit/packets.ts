/**
 * Building Ethernet frames byte by byte for BPF_PROG_TEST_RUN, with the
 * checksums computed from scratch (the reference the programs' incremental
 * updates are checked against).
 */
import { parseIp } from '../validate.js';

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_ARP = 0x0806;
export const ETH_P_8021Q = 0x8100;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

/** RFC 1071 Internet checksum of `data` (plus an initial sum), as a 16-bit value. */
export function internetChecksum(data: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < data.length; i += 2) sum += data.readUInt16BE(i);
  if (data.length % 2) sum += data[data.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ip4(text: string): Buffer {
  return parseIp(text).bytes.subarray(12);
}

function ip6(text: string): Buffer {
  return parseIp(text).bytes;
}

export function ether(dst: string, src: string, type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(14);
  macToBytesLoose(dst).copy(h, 0);
  macToBytesLoose(src).copy(h, 6);
  h.writeUInt16BE(type, 12);
  return Buffer.concat([h, payload]);
}

/** Unlike lib/validate's parseMac, frames may carry any MAC (broadcast, multicast, zero). */
function macToBytesLoose(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((b) => parseInt(b, 16)));
}

export function vlan(tag: number, innerType: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(tag & 0x0fff, 0);
  h.writeUInt16BE(innerType, 2);
  return Buffer.concat([h, payload]);
}

export interface Ipv4Options {
  src: string;
  dst: string;
  protocol: number;
  ttl?: number;
  id?: number;
  tos?: number;
  /** flags (DF 0x4000, MF 0x2000) | fragment offset in 8-byte units */
  fragOff?: number;
  options?: Buffer; // multiple of 4 bytes
}

export function ipv4(o: Ipv4Options, payload: Buffer): Buffer {
  const options = o.options ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + options.length);
  h[0] = 0x40 | ((20 + options.length) / 4);
  h[1] = o.tos ?? 0;
  h.writeUInt16BE(h.length + payload.length, 2);
  h.writeUInt16BE(o.id ?? 0x1234, 4);
  h.writeUInt16BE(o.fragOff ?? 0x4000, 6);
  h[8] = o.ttl ?? 64;
  h[9] = o.protocol;
  ip4(o.src).copy(h, 12);
  ip4(o.dst).copy(h, 16);
  options.copy(h, 20);
  h.writeUInt16BE(internetChecksum(h), 10);
  return Buffer.concat([h, payload]);
}

export interface Ipv6Options {
  src: string;
  dst: string;
  nextHeader: number;
  hopLimit?: number;
}

export function ipv6(o: Ipv6Options, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(payload.length, 4);
  h[6] = o.nextHeader;
  h[7] = o.hopLimit ?? 64;
  ip6(o.src).copy(h, 8);
  ip6(o.dst).copy(h, 24);
  return Buffer.concat([h, payload]);
}

/** The L4 checksum's pseudo-header sum for IPv4 or IPv6 addresses. */
function pseudoSum(src: string, dst: string, protocol: number, length: number): number {
  const v6 = src.includes(':');
  const addrs = Buffer.concat(v6 ? [ip6(src), ip6(dst)] : [ip4(src), ip4(dst)]);
  let sum = 0;
  for (let i = 0; i < addrs.length; i += 2) sum += addrs.readUInt16BE(i);
  return sum + protocol + length;
}

function withChecksum(segment: Buffer, at: number, initial: number): Buffer {
  segment.writeUInt16BE(internetChecksum(segment, initial), at);
  return segment;
}

export function udp(src: string, dst: string, sport: number, dport: number, data: Buffer): Buffer {
  const s = Buffer.concat([Buffer.alloc(8), data]);
  s.writeUInt16BE(sport, 0);
  s.writeUInt16BE(dport, 2);
  s.writeUInt16BE(s.length, 4);
  return withChecksum(s, 6, pseudoSum(src, dst, IPPROTO_UDP, s.length));
}

export function tcp(src: string, dst: string, sport: number, dport: number, flags: number, data: Buffer, seq = 1000): Buffer {
  const s = Buffer.concat([Buffer.alloc(20), data]);
  s.writeUInt16BE(sport, 0);
  s.writeUInt16BE(dport, 2);
  s.writeUInt32BE(seq, 4);
  s[12] = 5 << 4;
  s[13] = flags;
  s.writeUInt16BE(64240, 14);
  return withChecksum(s, 16, pseudoSum(src, dst, IPPROTO_TCP, s.length));
}

export function icmpEcho(id: number, seq: number, data: Buffer): Buffer {
  const s = Buffer.concat([Buffer.from([8, 0, 0, 0, id >> 8, id & 0xff, seq >> 8, seq & 0xff]), data]);
  return withChecksum(s, 2, 0);
}

export function icmpv6Echo(src: string, dst: string, id: number, seq: number, data: Buffer): Buffer {
  const s = Buffer.concat([Buffer.from([128, 0, 0, 0, id >> 8, id & 0xff, seq >> 8, seq & 0xff]), data]);
  return withChecksum(s, 2, pseudoSum(src, dst, IPPROTO_ICMPV6, s.length));
}

export function arpRequest(senderMac: string, senderIp: string, targetIp: string): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0); // Ethernet
  a.writeUInt16BE(ETH_P_IP, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(1, 6); // request
  macToBytesLoose(senderMac).copy(a, 8);
  ip4(senderIp).copy(a, 14);
  ip4(targetIp).copy(a, 24);
  return ether('ff:ff:ff:ff:ff:ff', senderMac, ETH_P_ARP, a);
}

/** Common frames to or from a guest, addressed by `dstMac`. */
export function frames(dstMac: string, srcMac: string, src: string, dst: string, ttl = 64): Record<string, Buffer> {
  const data = Buffer.from('vmpeer test payload 0123456789');
  if (dst.includes(':')) {
    return {
      icmp: ether(dstMac, srcMac, ETH_P_IPV6, ipv6({ src, dst, nextHeader: IPPROTO_ICMPV6, hopLimit: ttl }, icmpv6Echo(src, dst, 7, 1, data))),
      tcp: ether(dstMac, srcMac, ETH_P_IPV6, ipv6({ src, dst, nextHeader: IPPROTO_TCP, hopLimit: ttl }, tcp(src, dst, 40000, 80, 0x18, data))),
      udp: ether(dstMac, srcMac, ETH_P_IPV6, ipv6({ src, dst, nextHeader: IPPROTO_UDP, hopLimit: ttl }, udp(src, dst, 40000, 53, data))),
    };
  }
  return {
    icmp: ether(dstMac, srcMac, ETH_P_IP, ipv4({ src, dst, protocol: IPPROTO_ICMP, ttl }, icmpEcho(7, 1, data))),
    tcp: ether(dstMac, srcMac, ETH_P_IP, ipv4({ src, dst, protocol: IPPROTO_TCP, ttl }, tcp(src, dst, 40000, 80, 0x18, data))),
    udp: ether(dstMac, srcMac, ETH_P_IP, ipv4({ src, dst, protocol: IPPROTO_UDP, ttl }, udp(src, dst, 40000, 53, data))),
  };
}

/** Verifies the IPv4 header checksum of a frame from scratch (0 when valid). */
export function ipv4HeaderChecksumOk(frame: Buffer, l3 = 14): boolean {
  const ihl = (frame[l3]! & 0x0f) * 4;
  return internetChecksum(frame.subarray(l3, l3 + ihl)) === 0;
}

/** Verifies the L4 checksum of an IPv4 or IPv6 frame (TCP, UDP, ICMP, ICMPv6). */
export function l4ChecksumOk(frame: Buffer, l3 = 14): boolean {
  const version = frame[l3]! >> 4;
  if (version === 4) {
    const ihl = (frame[l3]! & 0x0f) * 4;
    const proto = frame[l3 + 9]!;
    const seg = frame.subarray(l3 + ihl, l3 + frame.readUInt16BE(l3 + 2));
    if (proto === IPPROTO_ICMP) return internetChecksum(seg) === 0;
    const src = Array.from(frame.subarray(l3 + 12, l3 + 16)).join('.');
    const dst = Array.from(frame.subarray(l3 + 16, l3 + 20)).join('.');
    return internetChecksum(seg, pseudoSum(src, dst, proto, seg.length)) === 0;
  }
  const seg = frame.subarray(l3 + 40, l3 + 40 + frame.readUInt16BE(l3 + 4));
  let sum = 0;
  for (let i = l3 + 8; i < l3 + 40; i += 2) sum += frame.readUInt16BE(i);
  return internetChecksum(seg, sum + frame[l3 + 6]! + seg.length) === 0;
}
