/** Parsing and checking of user input: MAC addresses, IP addresses, interface names. */
import net from 'node:net';
import { UsageError } from './errors.js';

export type Mac = string; // canonical: lower-case, colon-separated

/** Parses aa:bb:cc:dd:ee:ff (or with dashes) into its canonical form. */
export function parseMac(text: string, what = 'MAC address'): Mac {
  const m = /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i.exec(text.trim());
  if (!m) throw new UsageError(`invalid ${what} '${text}': expected six hex bytes like 52:54:00:12:34:56`);
  const mac = m.slice(1).join(':').toLowerCase();
  if (parseInt(m[1]!, 16) & 1) throw new UsageError(`invalid ${what} '${text}': a multicast address cannot belong to a guest`);
  if (mac === '00:00:00:00:00:00') throw new UsageError(`invalid ${what} '${text}': the all-zero address cannot belong to a guest`);
  return mac;
}

export function macToBytes(mac: Mac): Buffer {
  return Buffer.from(mac.split(':').map((b) => parseInt(b, 16)));
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function macFromBytes(bytes: Uint8Array): Mac {
  // a /metrics scrape of 1000 endpoints decodes two MACs for each: no arrays made here
  return `${HEX[bytes[0]!]}:${HEX[bytes[1]!]}:${HEX[bytes[2]!]}:${HEX[bytes[3]!]}:${HEX[bytes[4]!]}:${HEX[bytes[5]!]}`;
}

export interface IpAddress {
  family: 4 | 6;
  text: string; // canonical text form
  bytes: Buffer; // 16 bytes: IPv6, or IPv4-mapped IPv6 (::ffff:a.b.c.d)
}

/** Parses a unicast IPv4 or IPv6 address. */
export function parseIp(text: string, what = 'IP address'): IpAddress {
  const trimmed = text.trim();
  const family = net.isIP(trimmed);
  if (family === 4) {
    const octets = trimmed.split('.').map(Number);
    if (octets[0] === 0 || octets[0]! >= 224) throw new UsageError(`invalid ${what} '${text}': not a unicast address`);
    const bytes = Buffer.alloc(16);
    bytes.writeUInt16BE(0xffff, 10);
    Buffer.from(octets).copy(bytes, 12);
    return { family: 4, text: octets.join('.'), bytes };
  }
  if (family === 6) {
    const bytes = ipv6Bytes(trimmed);
    if (bytes[0] === 0xff || bytes.every((b) => b === 0)) throw new UsageError(`invalid ${what} '${text}': not a unicast address`);
    if (bytes.subarray(0, 10).every((b) => b === 0) && bytes.readUInt16BE(10) === 0xffff) {
      return parseIp(Array.from(bytes.subarray(12)).join('.'), what);
    }
    return { family: 6, text: ipFromBytes(bytes), bytes };
  }
  throw new UsageError(`invalid ${what} '${text}': expected an IPv4 or IPv6 address`);
}

/** The text form of a 16-byte endpoint key. */
export function ipFromBytes(bytes: Uint8Array): string {
  let mapped = bytes[10] === 0xff && bytes[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) mapped = bytes[i] === 0;
  if (mapped) return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  const b = Buffer.from(bytes);
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16));
  // compress the longest run of zero groups, as RFC 5952 asks
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  if (best.len < 2) return groups.join(':');
  return `${groups.slice(0, best.at).join(':')}::${groups.slice(best.at + best.len).join(':')}`;
}

function ipv6Bytes(text: string): Buffer {
  // an embedded dotted IPv4 tail (::ffff:1.2.3.4) becomes two hex groups
  const t = text.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a, b, c, d) =>
    `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`);
  const groups = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const [head = '', tail] = t.split('::');
  const h = groups(head);
  const r = tail === undefined ? [] : groups(tail);
  const words = tail === undefined ? h : [...h, ...Array<number>(8 - h.length - r.length).fill(0), ...r];
  const bytes = Buffer.alloc(16);
  words.forEach((w, i) => bytes.writeUInt16BE(w, i * 2));
  return bytes;
}

/** Interface names: 1-15 bytes, no '/', ':' or whitespace (what the kernel accepts). */
export function parseIfname(text: string, what = 'interface name'): string {
  if (!/^[^\s/:]{1,15}$/.test(text) || text === '.' || text === '..') {
    throw new UsageError(`invalid ${what} '${text}': 1 to 15 characters, without '/', ':' or spaces`);
  }
  return text;
}
