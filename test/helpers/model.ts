/**
 * What `fixup` and `redirect` must do to a frame, written independently of the
 * C code: the property tests run both on thousands of frames and compare.
 */
import type { StatName } from '../../lib/dataplane/layout.js';
import { internetChecksum } from '../../lib/testkit/packets.js';

export interface ModelEndpoint {
  guestMac: Buffer;
  gatewayMac: Buffer;
  hostIfindex: number;
  redirect: boolean;
  bypass?: { uplinkIfindex: number; guestIfindex: number } | null;
  /** The netns inode of the endpoint's pod: only that pod's instances take its bypass. */
  podNetns?: number;
}

/** Whether a program instance serving `pod` (0: the shared fixup) may take `ep`'s bypass. */
const inPod = (ep: ModelEndpoint, pod: number) => pod !== 0 && ep.podNetns === pod;

export interface Outcome {
  retval: number; // -1 TC_ACT_UNSPEC, 7 TC_ACT_REDIRECT
  frame: Buffer;
  stat: StatName;
}

const TC_ACT_UNSPEC = -1;
const TC_ACT_REDIRECT = 7;

interface Parsed {
  key: string; // hex of the 16-byte key
  l3: number;
  v4: boolean;
}

/** `by`: the key is the destination address (fixup, redirect) or the source address (from_guest). */
function parse(frame: Buffer, by: 'dest' | 'source' = 'dest'): Parsed | StatName {
  if (frame.length < 14) return 'passMalformed';
  if (frame[0]! & 1) return 'passNotUnicast';
  const type = frame.readUInt16BE(12);
  if (type === 0x0800) {
    if (frame.length < 34 || frame[14]! >> 4 !== 4 || (frame[14]! & 0xf) < 5) return 'passMalformed';
    const at = by === 'dest' ? 30 : 26;
    const key = Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff]), frame.subarray(at, at + 4)]);
    return { key: key.toString('hex'), l3: 14, v4: true };
  }
  if (type === 0x86dd) {
    if (frame.length < 54 || frame[14]! >> 4 !== 6) return 'passMalformed';
    const at = by === 'dest' ? 38 : 22;
    return { key: frame.subarray(at, at + 16).toString('hex'), l3: 14, v4: false };
  }
  return 'passNotIp';
}

const pass = (frame: Buffer, stat: StatName): Outcome => ({ retval: TC_ACT_UNSPEC, frame, stat });

function readdress(frame: Buffer, ep: ModelEndpoint): Buffer {
  const out = Buffer.from(frame);
  ep.guestMac.copy(out, 0);
  ep.gatewayMac.copy(out, 6);
  return out;
}

/** `ifindex`: the device the frame arrives on (BPF_PROG_TEST_RUN: loopback, 1); `pod`: the instance's constant (vmpeer_pod). */
export function modelFixup(frame: Buffer, endpoints: Map<string, ModelEndpoint>, ifindex = 1, pod = 0): Outcome {
  const p = parse(frame);
  if (typeof p === 'string') return pass(frame, p);
  const ep = endpoints.get(p.key);
  if (!ep) return pass(frame, 'passUnknown');
  const out = frame.subarray(0, 6).equals(ep.guestMac) ? pass(frame, 'passAddressed') : pass(readdress(frame, ep), 'fixed');
  // the bypass sends the frame, as fixup leaves it, to the guest port's egress
  return ep.bypass && inPod(ep, pod) && ep.bypass.uplinkIfindex === ifindex ? { ...out, retval: TC_ACT_REDIRECT } : out;
}

/** At the guest port: the guest's unicast IP frames to its gateway go into the host veth, unchanged. */
export function modelFromGuest(frame: Buffer, endpoints: Map<string, ModelEndpoint>, ifindex = 1, pod = 0): Outcome {
  const p = parse(frame, 'source');
  if (typeof p === 'string') return pass(frame, p);
  const ep = endpoints.get(p.key);
  if (!ep) return pass(frame, 'passUnknown');
  if (!ep.bypass || !inPod(ep, pod) || ep.bypass.guestIfindex !== ifindex) return pass(frame, 'passNoBypass');
  if (!frame.subarray(0, 6).equals(ep.gatewayMac) || !frame.subarray(6, 12).equals(ep.guestMac)) return pass(frame, 'passNotGateway');
  return { retval: TC_ACT_REDIRECT, frame, stat: 'bypassedOut' };
}

/** `hostMac`: the MAC of the device the frame arrives on (BPF_PROG_TEST_RUN: loopback, all zeros). */
export function modelRedirect(frame: Buffer, endpoints: Map<string, ModelEndpoint>, hostMac = Buffer.alloc(6)): Outcome {
  const p = parse(frame);
  if (typeof p === 'string') return pass(frame, p);
  if (!frame.subarray(0, 6).equals(hostMac)) return pass(frame, 'passNotHost');
  const ep = endpoints.get(p.key);
  if (!ep) return pass(frame, 'passUnknown');
  if (!ep.redirect || !ep.hostIfindex) return pass(frame, 'passNoRedirect');
  const out = readdress(frame, ep);
  if (p.v4) {
    if (frame.readUInt16BE(p.l3 + 6) & 0x3fff) return pass(frame, 'passFragment');
    if (frame[p.l3 + 8]! <= 1) return pass(frame, 'passTtl');
    if (newFlow(frame, p.l3 + (frame[p.l3]! & 0xf) * 4, frame[p.l3 + 9]!, true)) return pass(frame, 'passNewFlow');
    out[p.l3 + 8]!--;
    // the model recomputes the checksum over the header as it is: an incremental
    // update of a valid checksum must give the same value
    if (internetChecksum(frame.subarray(p.l3, p.l3 + 20 + ((frame[p.l3]! & 0xf) - 5) * 4)) === 0) {
      const ihl = (frame[p.l3]! & 0xf) * 4;
      out.writeUInt16BE(0, p.l3 + 10);
      out.writeUInt16BE(internetChecksum(out.subarray(p.l3, p.l3 + ihl)), p.l3 + 10);
    } else {
      out.writeUInt16BE(incrementalTtlChecksum(frame.readUInt16BE(p.l3 + 10)), p.l3 + 10);
    }
  } else {
    if (frame[p.l3 + 7]! <= 1) return pass(frame, 'passTtl');
    if (newFlow(frame, p.l3 + 40, frame[p.l3 + 6]!, false)) return pass(frame, 'passNewFlow');
    out[p.l3 + 7]!--;
  }
  return { retval: TC_ACT_REDIRECT, frame: out, stat: 'redirected' };
}

/** A TCP SYN, a TCP header too short to tell, or (IPv6) an extension header in front of the transport header. */
function newFlow(frame: Buffer, l4: number, proto: number, v4: boolean): boolean {
  if (proto !== 6) return !v4 && [0, 43, 44, 60, 51, 135].includes(proto);
  if (frame.length < l4 + 14) return true;
  return (frame[l4 + 13]! & 0x02) !== 0;
}

/** RFC 1624 for a header whose checksum was already wrong (the kernel keeps it wrong, by as much). */
function incrementalTtlChecksum(check: number): number {
  const sum = check + 0x0100;
  return (sum + (sum >= 0xffff ? 1 : 0)) & 0xffff;
}
