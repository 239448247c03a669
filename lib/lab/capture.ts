/**
 * Frame capture on an interface inside a netns (tcpdump writing pcap to a
 * pipe, parsed here). Not promiscuous: a packet socket still sees frames
 * the device received for another host (PACKET_OTHERHOST), which is exactly
 * what the fast-path fault delivers to a guest.
 */
import type { ChildProcess } from 'node:child_process';
import { killAndWait, spawnIn } from './exec.js';

export interface CapturedFrame {
  /** Seconds since the epoch, fractional. */
  time: number;
  dst: string;
  src: string;
  ethertype: number;
  /** The frame as captured (up to the snap length), from the Ethernet header. */
  data: Buffer;
  /** IPv4 source/destination/TTL/protocol when the frame is IPv4. */
  ipv4?: { src: string; dst: string; ttl: number; protocol: number };
}

const START_TIMEOUT_MS = 10_000;

function mac(b: Buffer, at: number): string {
  return [...b.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Parses a pcap stream (Ethernet link type) into frames. */
export function parsePcap(buf: Buffer): CapturedFrame[] {
  if (buf.length < 24) return [];
  const magic = buf.readUInt32LE(0);
  let le: boolean;
  let nano: boolean;
  if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) {
    le = true;
    nano = magic === 0xa1b23c4d;
  } else {
    const be = buf.readUInt32BE(0);
    if (be !== 0xa1b2c3d4 && be !== 0xa1b23c4d) throw new Error('capture: not a pcap stream');
    le = false;
    nano = be === 0xa1b23c4d;
  }
  const u32 = (at: number) => (le ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
  const frames: CapturedFrame[] = [];
  let off = 24;
  while (off + 16 <= buf.length) {
    const sec = u32(off);
    const frac = u32(off + 4);
    const incl = u32(off + 8);
    if (off + 16 + incl > buf.length) break;
    const data = Buffer.from(buf.subarray(off + 16, off + 16 + incl));
    off += 16 + incl;
    if (data.length < 14) continue;
    const f: CapturedFrame = {
      time: sec + frac / (nano ? 1e9 : 1e6),
      dst: mac(data, 0),
      src: mac(data, 6),
      ethertype: data.readUInt16BE(12),
      data,
    };
    if (f.ethertype === 0x0800 && data.length >= 34) {
      f.ipv4 = {
        ttl: data[22]!,
        protocol: data[23]!,
        src: [...data.subarray(26, 30)].join('.'),
        dst: [...data.subarray(30, 34)].join('.'),
      };
    }
    frames.push(f);
  }
  return frames;
}

export class Capture {
  private readonly chunks: Buffer[] = [];

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.on('data', (b: Buffer) => this.chunks.push(b));
  }

  /**
   * Starts capturing on `ifname` in the netns at `nsPath`; resolves once
   * tcpdump listens. `filter` is a pcap filter expression (default: all).
   * `promiscuous`: on a bridge device, what it forwards between its ports
   * too (a promiscuous bridge passes a copy of each frame up,
   * net/bridge/br_input.c br_handle_frame_finish()); otherwise only frames
   * for the bridge itself.
   */
  static start(nsPath: string, ifname: string, filter = '', snapLen = 256, promiscuous = false): Promise<Capture> {
    const args = ['-i', ifname, ...(promiscuous ? [] : ['-p']), '-U', '--immediate-mode', '-n', '-s', String(snapLen), '-w', '-'];
    if (filter) args.push(filter);
    const child = spawnIn(nsPath, 'tcpdump', args);
    const cap = new Capture(child);
    return new Promise((resolve, reject) => {
      let err = '';
      const timer = setTimeout(() => {
        void killAndWait(child);
        reject(new Error(`capture on ${ifname}: tcpdump did not start: ${err}`));
      }, START_TIMEOUT_MS);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`capture on ${ifname}: tcpdump exited (${code}): ${err}`));
      });
      child.stderr!.on('data', (b: Buffer) => {
        err += b.toString();
        if (err.includes('listening on')) {
          clearTimeout(timer);
          resolve(cap);
        }
      });
    });
  }

  /** Stops the capture and returns what it saw. Safe to call twice. */
  async stop(): Promise<CapturedFrame[]> {
    await killAndWait(this.child, 'SIGINT');
    return parsePcap(Buffer.concat(this.chunks));
  }
}
