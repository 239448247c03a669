/**
 * Prometheus metrics (prom-client), in a registry of their own, and the
 * per-endpoint counters written directly (endpoint-metrics.ts). Counters the
 * BPF programs keep (per endpoint, per verdict) are read from the pinned maps
 * when scraped, so they survive daemon restarts like the data path does.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Stats } from '../dataplane/codec.js';
import { replaceOpenFds } from './open-fds.js';
import { EndpointMetrics, type EndpointReading, type EndpointText } from './endpoint-metrics.js';

export type { EndpointReading } from './endpoint-metrics.js';

/** A scrape reads the endpoint table once, and scrapes within this reuse its text. */
export const ENDPOINT_CACHE_MS = 250;

export interface MetricsSource {
  endpoints(): EndpointReading;
  stats(): Stats;
  attachments(): Array<{ program: string; mode: string; count: number }>;
  pods(): { vm: number; waiting: number; uncovered: number; plain: number };
}

export interface BuildInfo {
  version: string;
  node: string;
  kernel: string;
  fixupTag: string;
  redirectTag: string;
}

export class DaemonMetrics {
  readonly registry = new Registry();
  readonly reconciles: Counter<'kind'>;
  readonly reconcileErrors: Counter<'kind'>;
  readonly reconcileDuration: Histogram<'kind'>;
  readonly changes: Counter<'action'>;
  readonly ready: Gauge;
  readonly conflicts: Counter;
  private readonly endpoints: () => EndpointText;

  constructor(source: MetricsSource, build: BuildInfo) {
    const registers = [this.registry];
    const writer = new EndpointMetrics();
    let cached: { at: number; text: EndpointText } | null = null;
    const endpoints = (): EndpointText => {
      const now = Date.now();
      if (!cached || now - cached.at >= ENDPOINT_CACHE_MS) cached = { at: now, text: writer.text(source.endpoints()) };
      return cached.text;
    };
    this.endpoints = endpoints;
    new Counter({
      name: 'vmpeer_frames_total',
      help: 'Frames the BPF programs handled, by verdict (the stats map)',
      labelNames: ['verdict'],
      registers,
      collect() {
        this.reset();
        for (const [verdict, n] of Object.entries(source.stats())) this.inc({ verdict }, Number(n));
      },
    });
    new Gauge({
      name: 'vmpeer_attachments',
      help: "vmpeer's attachments on this node, by program and mode",
      labelNames: ['program', 'mode'],
      registers,
      collect() {
        this.reset();
        for (const a of source.attachments()) this.inc({ program: a.program, mode: a.mode }, a.count);
      },
    });
    new Gauge({
      name: 'vmpeer_endpoints',
      help: 'Guests in the endpoint table',
      registers,
      collect() {
        this.set(endpoints().endpoints);
      },
    });
    new Gauge({
      name: 'vmpeer_endpoints_not_accelerated',
      help: "Guests accelerate mode leaves to the kernel path: their host veth has programs at its tc egress (a CNI's policy) that redirect would skip",
      registers,
      collect() {
        this.set(endpoints().notAccelerated);
      },
    });
    new Gauge({
      name: 'vmpeer_pods',
      help: 'Pod network namespaces the daemon watches: covered VM pods, VM pods waiting for the guest MAC or (a migration target) for the node route, VM pods whose endpoint cannot be written (uncovered), plain pods',
      labelNames: ['state'],
      registers,
      collect() {
        const p = source.pods();
        this.set({ state: 'vm' }, p.vm);
        this.set({ state: 'waiting_for_guest_mac' }, p.waiting);
        this.set({ state: 'uncovered' }, p.uncovered);
        this.set({ state: 'plain' }, p.plain);
      },
    });
    this.reconciles = new Counter({ name: 'vmpeer_reconciles_total', help: 'Reconcile runs: one pod, or a full resync', labelNames: ['kind'], registers });
    this.reconcileErrors = new Counter({ name: 'vmpeer_reconcile_errors_total', help: 'Reconcile runs that failed', labelNames: ['kind'], registers });
    this.reconcileDuration = new Histogram({
      name: 'vmpeer_reconcile_duration_seconds',
      help: 'Duration of reconcile runs',
      labelNames: ['kind'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.changes = new Counter({ name: 'vmpeer_changes_total', help: 'Changes made to the dataplane, by action', labelNames: ['action'], registers });
    this.conflicts = new Counter({
      name: 'vmpeer_endpoint_conflicts_total',
      help: 'Guest IPs refused to a pod: it claimed an address the node routes to another pod (or nowhere)',
      registers,
    });
    this.ready = new Gauge({ name: 'vmpeer_ready', help: '1 once the first full reconcile is done', registers });
    const info = new Gauge({
      name: 'vmpeer_build_info',
      help: 'vmpeer version, node, kernel and the tags of the loaded programs',
      labelNames: ['version', 'node', 'kernel', 'fixup_tag', 'redirect_tag'],
      registers,
    });
    info.set({ version: build.version, node: build.node, kernel: build.kernel, fixup_tag: build.fixupTag, redirect_tag: build.redirectTag }, 1);
    // the event-loop lag histogram samples with a timer: prom-client's default (every 10 ms)
    // wakes an idle daemon 100 times a second, about 0.2 % of a core; every 100 ms is plenty
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    replaceOpenFds(this.registry);
  }

  /** The registry's metrics, then the per-endpoint counters (endpoint-metrics.ts). */
  async text(): Promise<Buffer> {
    const registry = await this.registry.metrics();
    const head = Buffer.from(`${registry}${registry.endsWith('\n\n') || registry === '' ? '' : '\n'}`);
    return Buffer.concat([head, this.endpoints().body]);
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
