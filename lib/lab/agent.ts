/**
 * The host side of a lab agent (agent-main.ts): one Node.js process per
 * netns that serves TCP echo and sink and runs TCP clients on request.
 */
import type { ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { AgentResponse, EchoRequest, EchoResult, TransferRequest, TransferResult } from './agent-main.js';
import { killAndWait, spawnIn } from './exec.js';
import type { NetnsRef } from './netns.js';

const AGENT_MAIN = fileURLToPath(new URL('./agent-main.js', import.meta.url));
// generous: a loaded machine or an emulated VM starts many Node.js processes at once
const START_TIMEOUT_MS = 60_000;

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export class Agent {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private exited = false;
  private readonly stderr: string[] = [];

  private constructor(
    readonly ns: NetnsRef,
    private readonly child: ChildProcess,
  ) {}

  /** Starts an agent in `ns`; resolves once its servers listen. */
  static start(ns: NetnsRef): Promise<Agent> {
    const child = spawnIn(ns.path, process.execPath, [AGENT_MAIN]);
    const agent = new Agent(ns, child);
    return new Promise((resolve, reject) => {
      const rl = readline.createInterface({ input: child.stdout! });
      let ready = false;
      const timer = setTimeout(() => {
        void killAndWait(child);
        reject(new Error(`lab agent in ${ns.name} did not start: ${agent.stderr.join('')}`));
      }, START_TIMEOUT_MS);
      child.stderr!.on('data', (b: Buffer) => {
        if (agent.stderr.length < 50) agent.stderr.push(b.toString());
      });
      child.on('exit', (code, signal) => {
        agent.exited = true;
        const err = new Error(`lab agent in ${ns.name} exited (${signal ?? code}): ${agent.stderr.join('')}`);
        for (const p of agent.pending.values()) p.reject(err);
        agent.pending.clear();
        if (!ready) {
          clearTimeout(timer);
          reject(err);
        }
      });
      rl.on('line', (line) => {
        let msg: AgentResponse | { ready: boolean; error?: string };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          return;
        }
        if ('ready' in msg) {
          clearTimeout(timer);
          if (msg.ready) {
            ready = true;
            resolve(agent);
          } else {
            reject(new Error(`lab agent in ${ns.name}: ${msg.error}`));
          }
          return;
        }
        const p = agent.pending.get(msg.id);
        if (!p) return;
        agent.pending.delete(msg.id);
        if (msg.ok) p.resolve(msg.result);
        else p.reject(new Error(`lab agent in ${ns.name}: ${msg.error}`));
      });
    });
  }

  private request<T>(req: Omit<EchoRequest, 'id'> | Omit<TransferRequest, 'id'>): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`lab agent in ${this.ns.name} is gone`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.stdin!.write(JSON.stringify({ ...req, id }) + '\n');
    });
  }

  echo(host: string, payload: Buffer, timeoutMs: number, port?: number): Promise<EchoResult> {
    return this.request<EchoResult>({ op: 'echo', host, payload: payload.toString('base64'), timeoutMs, port });
  }

  transfer(host: string, bytes: number, timeoutMs: number, port?: number): Promise<TransferResult> {
    return this.request<TransferResult>({ op: 'transfer', host, bytes, timeoutMs, port });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  async stop(): Promise<void> {
    this.child.stdin?.end();
    await killAndWait(this.child, 'SIGKILL');
  }
}
