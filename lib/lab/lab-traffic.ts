/**
 * Traffic between the lab's endpoints: TCP echo and bulk transfers through
 * an agent per netns (started on first use, servers and clients alike).
 */
import { randomBytes } from 'node:crypto';
import { Agent } from './agent.js';
import { QemuGuest } from './qemu.js';
import type { Endpoint } from './topology.js';

export interface EchoOutcome {
  /** The TCP handshake completed (seen from the client). */
  connected: boolean;
  /** Every byte came back, in order. */
  echoed: boolean;
  received: Buffer;
  connectMs: number | null;
  error: string | null;
}

export interface TransferOutcome {
  connected: boolean;
  sent: number;
  /** Bytes the sink counted (0 when it never answered). */
  received: number;
  /** Bytes that arrived intact: `bytes` when count and sha256 match, else 0. */
  intact: number;
  durationMs: number;
  error: string | null;
}

export interface TrafficOptions {
  timeoutMs?: number;
  port?: number;
}

export class LabTraffic {
  private readonly agents = new Map<string, Promise<Agent>>();

  constructor(
    /** The lab endpoint or QEMU guest at an address (null: not the lab's). */
    private readonly endpointFor: (ip: string) => Endpoint | QemuGuest | null,
    /** Throws once the lab is destroyed. */
    private readonly assertAlive: () => void,
  ) {}

  private agent(ep: Endpoint): Promise<Agent> {
    this.assertAlive();
    let a = this.agents.get(ep.ns.path);
    if (!a) {
      a = Agent.start(ep.ns);
      this.agents.set(ep.ns.path, a);
      a.catch(() => this.agents.delete(ep.ns.path));
    }
    return a;
  }

  /** Makes sure the echo and sink servers run at `ip` (a lab endpoint; a QEMU guest runs its own). */
  private async serverAt(ip: string): Promise<void> {
    const target = this.endpointFor(ip);
    if (!target) throw new Error(`lab: ${ip} is not an address of this lab`);
    if (!(target instanceof QemuGuest)) await this.agent(target);
  }

  /** Sends `payload` to the echo server at `toIp` and waits for it to come back. */
  async tcpEcho(from: Endpoint, toIp: string, payload?: Buffer | string, options: TrafficOptions = {}): Promise<EchoOutcome> {
    const data = typeof payload === 'string' ? Buffer.from(payload) : (payload ?? randomBytes(64));
    if (data.length === 0) throw new RangeError('lab: empty echo payload');
    await this.serverAt(toIp);
    const r = await (await this.agent(from)).echo(toIp, data, options.timeoutMs ?? 2000, options.port);
    const received = Buffer.from(r.received, 'base64');
    return {
      connected: r.connected,
      echoed: received.equals(data),
      received,
      connectMs: r.connectMs,
      error: r.error,
    };
  }

  /** Sends `bytes` to the sink at `toIp`; reports what arrived intact (sha256 compared). */
  async transfer(from: Endpoint, toIp: string, bytes: number, options: TrafficOptions = {}): Promise<TransferOutcome> {
    await this.serverAt(toIp);
    const r = await (await this.agent(from)).transfer(toIp, bytes, options.timeoutMs ?? 10_000, options.port);
    const received = r.reply?.count ?? 0;
    const intact = r.reply && r.reply.count === bytes && r.reply.sha256 === r.sha256 ? bytes : 0;
    return { connected: r.connected, sent: r.sent, received, intact, durationMs: r.durationMs, error: r.error };
  }

  /** Pids of the agents still running. */
  async processIds(): Promise<Array<number | undefined>> {
    return Promise.all([...this.agents.values()].map((a) => a.then((x) => x.pid, () => undefined)));
  }

  /** Stops every agent; `attempt` collects what failed. */
  stops(attempt: (f: () => unknown) => Promise<void>): Array<Promise<void>> {
    return [...this.agents.values()].map((a) => attempt(async () => (await a.catch(() => null))?.stop()));
  }
}
