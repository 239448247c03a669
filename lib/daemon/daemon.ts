/**
 * The node daemon: configuration checked, HTTP up, dataplane opened (adopting
 * what an earlier daemon left), watchers started, first full reconcile, then
 * event-driven work until stop().
 */
import os from 'node:os';
import { Dataplane } from '../dataplane/dataplane.js';
import { native as loadNative, type Native } from '../native.js';
import { ACCELERATE_WARNING } from '../accelerate.js';
import { version } from '../version.js';
import type { DaemonConfig } from './config.js';
import { HttpServer } from './http.js';
import { createLogger, type Logger } from './log.js';
import { DaemonMetrics } from './metrics.js';
import { Reconciler } from './reconciler.js';
import { NetnsSources } from './sources.js';
import { resolveMode } from '../bpf/link.js';

/**
 * Opens the dataplane once no other vmpeer process holds the node lock, and
 * keeps it (and the lock) for the daemon's life: while the daemon runs it is
 * the only writer of vmpeer's state on this node, and a CLI change is refused
 * (README: the CLI and the daemon). A daemon replacing another waits here
 * until the other has stopped.
 */
async function openWhenFree(config: DaemonConfig, n: Native, log: Logger): Promise<Dataplane> {
  let waiting = false;
  for (;;) {
    const dp = Dataplane.tryOpen({ root: config.bpffsRoot, object: config.object, native: n, netnsDirs: config.netnsDirs });
    if (dp) {
      if (waiting) log.info({ root: config.bpffsRoot }, 'took the node lock');
      if (dp.migration) log.info({ root: config.bpffsRoot, ...dp.migration }, `migrated the pinned state from layout ${dp.migration.from} to ${dp.migration.to}`);
      return dp;
    }
    if (!waiting) log.warn({ root: config.bpffsRoot, holder: Dataplane.lockedMessage(config.bpffsRoot) }, 'waiting for the node lock: another vmpeer process holds it');
    waiting = true;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export interface DaemonOptions {
  log?: Logger;
  warnings?: string[];
  native?: Native;
}

export class Daemon {
  private stopped: Promise<void> | null = null;

  private constructor(
    readonly config: DaemonConfig,
    readonly log: Logger,
    private readonly http: HttpServer,
    readonly reconciler: Reconciler,
  ) {}

  /** Starts the daemon; resolves once it is ready (first full reconcile done). */
  static async start(config: DaemonConfig, options: DaemonOptions = {}): Promise<Daemon> {
    const log = options.log ?? createLogger(config.logLevel, { node: config.nodeName || undefined });
    const n = options.native ?? loadNative();
    resolveMode(n, config.mode); // a mode this kernel lacks is a usage error, before anything changes

    let reconciler: Reconciler | null = null;
    let metrics: DaemonMetrics | null = null;
    const http = await HttpServer.listen(config.metrics, {
      ready: () => reconciler?.ready ?? false,
      metrics: async () => ({ contentType: metrics?.contentType ?? 'text/plain', body: metrics ? await metrics.text() : Buffer.alloc(0) }),
    });
    let dp: Dataplane;
    try {
      dp = await openWhenFree(config, n, log);
    } catch (e) {
      await http.close();
      throw e;
    }
    try {
      const sources = new NetnsSources({ dirs: config.netnsDirs, prefix: config.netnsPrefix, proc: config.proc, procRoot: config.procRoot });
      reconciler = new Reconciler({ config, dp, native: n, log, sources });
      const r = reconciler;
      metrics = new DaemonMetrics(
        {
          endpoints: () => r.endpointReading(),
          stats: () => dp.stats(),
          attachments: () => r.attachmentCounts(),
          pods: () => r.podCounts(),
        },
        { version: version(), node: config.nodeName, kernel: os.release(), fixupTag: r.programTags.fixup, redirectTag: r.programTags.redirect },
      );
      r.setMetrics(metrics);
      log.info(
        {
          version: version(),
          kernel: os.release(),
          root: config.bpffsRoot,
          netnsDirs: config.netnsDirs,
          netnsPrefix: config.netnsPrefix || undefined,
          proc: config.proc,
          resyncMs: config.resyncIntervalMs,
          metrics: `${config.metrics.text} (port ${http.port})`,
          accelerate: config.accelerate ? config.hostDevs : false,
          mode: config.mode,
          object: config.object,
          tags: r.programTags,
          cleanupOnExit: config.cleanupOnExit,
        },
        'vmpeer daemon starting',
      );
      // after the start-up checks that can still refuse (metrics address, node lock): a refused start prints one line
      for (const w of options.warnings ?? []) log.warn(w);
      if (config.accelerate) log.warn({ hostDevs: config.hostDevs }, ACCELERATE_WARNING.replace(/^warning: /, ''));
      await r.start();
    } catch (e) {
      await reconciler?.stop(false).catch(() => undefined);
      if (!reconciler) dp.close();
      await http.close();
      throw e;
    }
    return new Daemon(config, log, http, reconciler);
  }

  get port(): number {
    return this.http.port;
  }

  /** Stops watching; removes everything first with --cleanup-on-exit. Safe to call twice. */
  stop(reason: string): Promise<void> {
    this.stopped ??= (async () => {
      this.log.info({ reason, cleanup: this.config.cleanupOnExit }, 'stopping');
      await this.reconciler.stop(this.config.cleanupOnExit);
      await this.http.close();
      this.log.info(this.config.cleanupOnExit ? 'stopped; everything removed' : 'stopped; the dataplane stays as it is');
    })();
    return this.stopped;
  }
}
