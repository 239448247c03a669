/**
 * The lab agent: a Node.js process started inside one of the lab's netns
 * (nsenter --net=...). It serves
 *   - TCP echo on ECHO_PORT (everything received is sent back),
 *   - a TCP sink on SINK_PORT: reads until the peer half-closes, then answers
 *     one line "<byte count> <sha256 hex>" and closes,
 * and runs client operations for the lab on request: newline-delimited JSON
 * on stdin, one JSON line per answer on stdout. It exits when stdin closes,
 * so it never outlives the lab process.
 *
 * The busybox guest of a QEMU VM serves the same two ports the same way.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import readline from 'node:readline';
import { pathToFileURL } from 'node:url';

export const ECHO_PORT = 7;
export const SINK_PORT = 9;

export interface EchoRequest {
  op: 'echo';
  host: string;
  port?: number;
  payload: string; // base64
  timeoutMs: number;
}

export interface EchoResult {
  connected: boolean;
  /** Milliseconds to establish the connection (from the client's side). */
  connectMs: number | null;
  received: string; // base64
  error: string | null;
}

export interface TransferRequest {
  op: 'transfer';
  host: string;
  port?: number;
  bytes: number;
  timeoutMs: number;
}

export interface TransferResult {
  connected: boolean;
  /** Bytes handed to the socket before the end or the timeout. */
  sent: number;
  /** The sink's answer; null when none arrived. */
  reply: { count: number; sha256: string } | null;
  sha256: string;
  durationMs: number;
  error: string | null;
}

export type AgentRequest = (EchoRequest | TransferRequest) & { id: number };
export type AgentResponse = { id: number } & ({ ok: true; result: unknown } | { ok: false; error: string });

function serve(): Promise<void> {
  const echo = net.createServer((s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  const sink = net.createServer((s) => {
    const hash = createHash('sha256');
    let count = 0;
    s.on('error', () => s.destroy());
    s.on('data', (b: Buffer) => {
      count += b.length;
      hash.update(b);
    });
    s.on('end', () => s.end(`${count} ${hash.digest('hex')}\n`));
  });
  const listen = (srv: net.Server, port: number) =>
    new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, '0.0.0.0', () => resolve());
    });
  return Promise.all([listen(echo, ECHO_PORT), listen(sink, SINK_PORT)]).then(() => undefined);
}

function echoClient(r: EchoRequest): Promise<EchoResult> {
  return new Promise((resolve) => {
    const payload = Buffer.from(r.payload, 'base64');
    const chunks: Buffer[] = [];
    let got = 0;
    const start = performance.now();
    let connectMs: number | null = null;
    let done = false;
    const s = net.connect({ host: r.host, port: r.port ?? ECHO_PORT });
    const finish = (error: string | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ connected: connectMs !== null, connectMs, received: Buffer.concat(chunks).toString('base64'), error });
    };
    const timer = setTimeout(() => finish(connectMs === null ? 'connect timeout' : 'timeout'), r.timeoutMs);
    s.on('connect', () => {
      connectMs = performance.now() - start;
      s.write(payload);
    });
    s.on('data', (b: Buffer) => {
      chunks.push(b);
      got += b.length;
      if (got >= payload.length) finish(null);
    });
    s.on('error', (e) => finish(e.message));
    s.on('close', () => finish(got >= payload.length ? null : 'closed'));
  });
}

/** A fixed pseudo-random pattern, so transfers cost no RNG time. */
const PATTERN = (() => {
  const b = Buffer.alloc(256 * 1024);
  let x = 0x9e3779b9;
  for (let i = 0; i < b.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
})();

function transferClient(r: TransferRequest): Promise<TransferResult> {
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    const start = performance.now();
    let connected = false;
    let sent = 0;
    let replyText = '';
    let done = false;
    const s = net.connect({ host: r.host, port: r.port ?? SINK_PORT });
    const finish = (error: string | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      const m = /^(\d+) ([0-9a-f]{64})/.exec(replyText);
      resolve({
        connected,
        sent,
        reply: m ? { count: Number(m[1]), sha256: m[2]! } : null,
        sha256: hash.digest('hex'),
        durationMs: performance.now() - start,
        error,
      });
    };
    const timer = setTimeout(() => finish(connected ? 'timeout' : 'connect timeout'), r.timeoutMs);
    const pump = () => {
      while (sent < r.bytes) {
        const n = Math.min(PATTERN.length, r.bytes - sent);
        const chunk = n === PATTERN.length ? PATTERN : PATTERN.subarray(0, n);
        hash.update(chunk);
        sent += n;
        if (!s.write(chunk)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    s.on('connect', () => {
      connected = true;
      pump();
    });
    s.on('data', (b: Buffer) => {
      replyText += b.toString('latin1');
      if (replyText.includes('\n')) finish(null);
    });
    s.on('error', (e) => finish(e.message));
    s.on('close', () => finish(replyText.includes('\n') ? null : 'closed'));
  });
}

async function handle(req: AgentRequest): Promise<unknown> {
  switch (req.op) {
    case 'echo':
      return echoClient(req);
    case 'transfer':
      return transferClient(req);
    default:
      throw new Error(`unknown op ${(req as { op: string }).op}`);
  }
}

async function main(): Promise<void> {
  const out = (msg: unknown) => process.stdout.write(JSON.stringify(msg) + '\n');
  try {
    await serve();
  } catch (e) {
    out({ ready: false, error: (e as Error).message });
    process.exit(1);
  }
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let req: AgentRequest;
    try {
      req = JSON.parse(line) as AgentRequest;
    } catch {
      return;
    }
    handle(req).then(
      (result) => out({ id: req.id, ok: true, result }),
      (e: Error) => out({ id: req.id, ok: false, error: e.message }),
    );
  });
  rl.on('close', () => process.exit(0));
  out({ ready: true });
}

// Run only as the agent's entry point, not when imported for its types and constants.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void main();
}
