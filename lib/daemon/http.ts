/**
 * The daemon's one HTTP address: /metrics (Prometheus text), /healthz (the
 * process answers), /readyz (the first full reconcile is done).
 */
import http from 'node:http';
import { UsageError } from '../errors.js';

export interface HttpHandlers {
  metrics(): Promise<{ contentType: string; body: Buffer }>;
  ready(): boolean;
}

export class HttpServer {
  private constructor(private readonly server: http.Server) {}

  /** Listens; a bad or busy address is a UsageError (exit 2), raised before anything else changes. */
  static async listen(address: { host: string; port: number; text: string }, handlers: HttpHandlers): Promise<HttpServer> {
    const server = http.createServer((req, res) => {
      const url = (req.url ?? '/').split('?')[0];
      const send = (code: number, body: string | Buffer, type = 'text/plain; charset=utf-8') => {
        res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      };
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
      if (url === '/healthz') return send(200, 'ok\n');
      if (url === '/readyz') return handlers.ready() ? send(200, 'ready\n') : send(503, 'not ready: the first full reconcile is not done\n');
      if (url === '/metrics') {
        handlers.metrics().then(
          (m) => send(200, m.body, m.contentType),
          (e: Error) => send(500, `metrics failed: ${e.message}\n`),
        );
        return;
      }
      send(404, 'not found: try /metrics, /healthz or /readyz\n');
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(new UsageError(`cannot listen on --metrics-address ${address.text}: ${e.code ?? e.message}${e.code === 'EADDRINUSE' ? ' (the port is taken)' : e.code === 'EADDRNOTAVAIL' ? ' (no such local address)' : ''}`)),
      );
      server.listen({ host: address.host === '' ? undefined : address.host, port: address.port }, () => resolve());
    });
    return new HttpServer(server);
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
