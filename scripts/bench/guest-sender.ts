/**
 * A guest's frame on cue: a process started in the guest netns beforehand
 * (so that its start-up, hundreds of ms on a loaded machine, is not in what
 * is measured) writes one frame to the guest's interface (AF_PACKET) when
 * told, and says when it did (CLOCK_REALTIME, ms, taken right before send()).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { GATEWAY_IP, POD_IF } from '../../lib/lab/addressing.js';
import { inNetns, killAndWait } from '../../lib/lab/exec.js';
import { arpRequest } from '../../lib/testkit/packets.js';
import { sleep } from './util.js';

/** Says "ready", sends the frame (hex) it reads on stdin, then prints the time just before send(), in ms. */
const ON_CUE = `
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
print("ready", flush=True)
frame = bytes.fromhex(sys.stdin.readline().strip())
t0 = time.time_ns()
s.send(frame)
print(t0 / 1e6, flush=True)
`;

export class GuestSender {
  private readonly child: ChildProcess;
  private readonly readyP: Promise<void>;
  private readonly sentP: Promise<number>;

  constructor(guestNs: string) {
    const [cmd, args] = inNetns(guestNs, 'python3', ['-c', ON_CUE, POD_IF]);
    this.child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'ignore'] });
    this.child.on('error', () => undefined);
    let onReady: () => void = () => undefined;
    let onSent: (t: number) => void = () => undefined;
    this.readyP = new Promise<void>((resolve) => (onReady = resolve));
    this.sentP = new Promise<number>((resolve) => (onSent = resolve));
    readline.createInterface({ input: this.child.stdout! }).on('line', (l) => (l === 'ready' ? onReady() : onSent(Number(l))));
  }

  ready(): Promise<void> {
    return Promise.race([this.readyP, sleep(15_000).then(() => Promise.reject(new Error('bench: the guest sender did not start within 15 s')))]);
  }

  /** The guest's announcement: an ARP request for its gateway from its MAC. Resolves with T0. */
  announce(mac: string, ip: string): Promise<number> {
    this.child.stdin!.write(`${arpRequest(mac, ip, GATEWAY_IP).toString('hex')}\n`);
    return this.sentP;
  }

  stop(): Promise<void> {
    return killAndWait(this.child);
  }
}
