/** Sending and capturing raw frames in a netns (through test/helpers/packet_io.py). */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { sh, type Netns } from './netns.js';

const script = path.join(packageRoot, 'test', 'helpers', 'packet_io.py');

export function sendFrames(ns: Netns, ifname: string, frames: Buffer[]): void {
  sh('nsenter', [`--net=${ns.path}`, 'python3', script, 'send', ifname, ...frames.map((f) => f.toString('hex'))]);
}

/** Captures what arrives on `ifname` while `during` runs, and for `graceMs` after it. */
export async function capture(ns: Netns, ifname: string, graceMs: number, during: () => void | Promise<void>): Promise<Buffer[]> {
  const child = spawn('nsenter', [`--net=${ns.path}`, 'python3', script, 'recv', ifname, '120'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('ready\n')) resolve();
    });
    child.on('exit', () => reject(new Error('capture ended before it was ready')));
  });
  const done = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await ready;
  try {
    await during();
    await new Promise((r) => setTimeout(r, graceMs));
  } finally {
    child.kill('SIGTERM');
  }
  await done;
  return out.split('\n').slice(1).filter((l) => l).map((l) => Buffer.from(l, 'hex'));
}
