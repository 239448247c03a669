/**
 * A minimal QMP client (QEMU's JSON machine protocol) over a unix socket:
 * the capabilities handshake, then one command at a time. Events are
 * skipped. Lab only: it drives live migrations (migration.ts).
 */
import net from 'node:net';

const CONNECT_TIMEOUT_MS = 10_000;
const COMMAND_TIMEOUT_MS = 30_000;

type Reply = { return?: unknown; error?: { class: string; desc: string } };

export class Qmp {
  private buffer = '';
  private readonly replies: Reply[] = [];
  private wake: (() => void) | null = null;
  private closed = false;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Reply & { QMP?: unknown; event?: string };
        if (msg.QMP !== undefined || msg.event !== undefined) continue;
        this.replies.push(msg);
      }
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => undefined);
  }

  /** Connects and negotiates capabilities. */
  static async connect(path: string): Promise<Qmp> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(path);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`QMP ${path}: no connection after ${CONNECT_TIMEOUT_MS} ms`));
      }, CONNECT_TIMEOUT_MS);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`QMP ${path}: ${e.message}`));
      });
    });
    const q = new Qmp(socket);
    await q.execute('qmp_capabilities');
    return q;
  }

  /** Runs a command; resolves with its `return`, rejects with QEMU's error. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    const deadline = Date.now() + COMMAND_TIMEOUT_MS;
    while (this.replies.length === 0) {
      if (this.closed) throw new Error(`QMP ${command}: QEMU closed the connection`);
      if (Date.now() > deadline) throw new Error(`QMP ${command}: no reply after ${COMMAND_TIMEOUT_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const r = this.replies.shift()!;
    if (r.error) throw new Error(`QMP ${command}: ${r.error.class}: ${r.error.desc}`);
    return r.return as T;
  }

  close(): void {
    this.socket.destroy();
  }
}
