/**
 * Control-plane benchmark of `vmpeer daemon` (the node daemon), on a lab node
 * in network namespaces with N bridged VM pods whose guests are netns:
 *
 *   - cold start: daemon spawned with N VM pods already there (guest MACs
 *     learned), time until every pod is covered (fixup attached at its uplink
 *     and the guest's endpoint in the pinned map, read from the pins by this
 *     process) and until /readyz answers 200;
 *   - a new pod: time from its bridge and tap existing (the guest announces
 *     itself right then, from a process started before) to covered, one pod
 *     at a time, with the N pods there;
 *   - idle: CPU of the daemon and of any child processes (it watches netlink
 *     in-process, so there should be none) over a window that holds one
 *     periodic full resync, and its RSS;
 *   - churn: pods created and deleted (4 at a time) while measuring CPU and RSS.
 *
 * The pods come from pods.ts rather than DynamicPods: the lab's addressing
 * has room for 100 VM pods (198.18.1.10+i), and DynamicPods names guests
 * `<lab>-d<n>g`, which a daemon with `--netns-prefix <lab>-` takes for 250
 * more (plain) pods. Both build from the same parts (lib/lab/wiring.ts: CNI
 * veth, pod IP route and proxy ARP on the node; dummy, bridge, tap in the
 * pod; netns guest), in batches here; the names are
 * `<lab>-pa<i>` (the first 50), `<lab>-pb<i>`, `<lab>-pn<i>` (added while the
 * daemon runs) and `<lab>-g<i>` (guests, outside every prefix the daemon is
 * given), the pod IPs 198.18.2.1 and up. The lab adopts every namespace, so
 * its destroy() (and its exit hook) deletes them whatever happens.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_RESYNC_INTERVAL, parseDuration } from '../../lib/daemon/config.js';
import { Dataplane } from '../../lib/dataplane/dataplane.js';
import { native, packageRoot } from '../../lib/native.js';
import { randomTag } from '../../lib/lab/addressing.js';
import { Lab } from '../../lib/lab/lab.js';
import { imageNodeFlags } from '../../lib/testkit/daemon-process.js';
import { Coverage, POLL_MS, Prober, type Running, startDaemon, stopDaemon, until } from './daemon-run.js';
import { type BenchVm, PodFactory } from './pods.js';
import { descendants, mb, pssKb, statusKb, treeCpuMs } from './proc.js';
import { loadavg, round, sleep } from './util.js';
import { median, percentile } from './stats.js';
import type { ColdStart, ControlPlaneResult, CpuWindow, Latencies } from './control-plane-result.js';
import { targets } from './control-plane-targets.js';
import { churn, leaks } from './churn.js';
import { firstFrame, type FirstFrameSample } from './first-frame.js';
import { scrapeCost } from './scrape.js';

export type { ColdStart, ControlPlaneResult, CpuWindow, Latencies } from './control-plane-result.js';
export { formatControlPlane } from './control-plane-report.js';

// ------------------------------------------------------------------ knobs

/** The daemon's default full resync interval: the idle window holds one. */
const RESYNC_S = parseDuration(DEFAULT_RESYNC_INTERVAL, 'resync interval', 0, Infinity) / 1000;
// additions are spaced so that they span more than one resync interval: some of them meet a periodic full resync
const FULL = {
  pods: [100, 1000],
  additions: 50,
  additionGapMs: Math.ceil((RESYNC_S * 1000) / 48),
  idleS: RESYNC_S + 2,
  scrapes: 20,
  firstFrames: 40,
  churnCycles: 200,
  churnParallel: 4,
};
const QUICK = { pods: [100], additions: 5, additionGapMs: 200, idleS: 3, scrapes: 5, firstFrames: 5, churnCycles: 10, churnParallel: 2 };
const BRIDGE_SETTLED_MS = 20_000;

function latencies(samples: number[]): Latencies {
  if (samples.length === 0) return { samples, p50: NaN, p99: NaN, max: NaN };
  return { samples, p50: percentile(samples, 50), p99: percentile(samples, 99), max: Math.max(...samples) };
}

/** The commit of the daemon under test, "+" when lib/ has uncommitted changes; null outside a git checkout. */
function commitOf(): string | null {
  const git = (args: string[]) => spawnSync('git', ['-C', packageRoot, ...args], { encoding: 'utf8' });
  const head = git(['rev-parse', '--short', 'HEAD']);
  if (head.status !== 0) return null;
  const dirty = git(['status', '--porcelain', '--', 'lib']).stdout.trim() !== '';
  return `${head.stdout.trim()}${dirty ? '+' : ''}`;
}

// ------------------------------------------------------------------ phases

async function coldStart(
  lab: Lab,
  vms: BenchVm[],
  prefix: string,
  keep: boolean,
  mode: ColdStart['mode'] = 'auto',
): Promise<{ result: ColdStart; running: Running; dp: Dataplane }> {
  const root = `/sys/fs/bpf/${lab.name}-cp${randomTag(2)}/vmpeer`;
  fs.mkdirSync(root, { recursive: true });
  // the maps are created here, before the clock starts, so that reading them costs the daemon nothing
  Dataplane.open({ root }).close(); // the daemon takes the node lock: this process only reads
  const dp = Dataplane.view({ root })!;
  const cov = new Coverage(dp);
  const prober = new Prober(lab.node.ns.path);
  let running: Running | null = null;
  try {
    await prober.started();
    const loads = loadavg();
    running = startDaemon(lab, root, prefix, mode === 'auto' ? [] : ['--mode', mode]);
    const r = running;
    let pending = vms;
    const coveredAt = await until(() => {
      if (!r.d.alive) throw new Error(`bench: the daemon exited: ${r.d.stderr}`);
      const now = cov.covered(pending);
      if (now.length > 0) pending = pending.filter((vm) => !now.includes(vm));
      return pending.length === 0;
    }, 120_000);
    const cpu = treeCpuMs(r.d.pid).total;
    const rss = statusKb(r.d.pid, 'VmRSS');
    const children = descendants(r.d.pid).length;
    const readyzAt = (await until(() => prober.readyAt() !== null, 120_000)) && prober.readyAt();
    // the daemon's log times are ISO strings (ms)
    const logAt = (pred: (l: { msg: string; change?: string }) => boolean) => {
      const hits = r.d.logs.filter((l) => pred(l));
      return hits.length > 0 ? Date.parse(String(hits.at(-1)!.time)) : null;
    };
    const readyLog = logAt((l) => l.msg === 'ready: first full reconcile done');
    const lastChange = logAt((l) => l.change === 'attach' || l.change === 'endpoint_add');
    const s = (t: number | null) => (t === null ? null : round((t - r.spawnAt) / 1000));
    const result: ColdStart = {
      pods: vms.length,
      mode,
      coveredS: s(coveredAt),
      readyzS: s(readyzAt),
      readyLogS: s(readyLog),
      lastChangeLogS: s(lastChange),
      covered: vms.length - pending.length,
      cpuS: round(cpu / 1000, 2),
      rssMb: mb(rss),
      children,
      loadavg: loads,
    };
    if (!keep) {
      await stopDaemon(r);
      dp.close();
    }
    return { result, running: r, dp };
  } catch (e) {
    if (running) await stopDaemon(running).catch(() => undefined);
    dp.close();
    fs.rmSync(path.dirname(root), { recursive: true, force: true });
    throw e;
  } finally {
    await prober.stop();
  }
}

/** CPU of the daemon tree over `seconds`, sampled each second; RSS samples go to `rss`. */
async function cpuWindow(pid: number, seconds: number, rss: number[], busy?: Promise<unknown>): Promise<CpuWindow> {
  const loads = loadavg();
  const start = treeCpuMs(pid);
  const t0 = performance.now();
  const perSecond: number[] = [];
  let last = start.total;
  let lastT = t0;
  let stop = false;
  void busy?.finally(() => (stop = true));
  while (performance.now() - t0 < seconds * 1000 - 5 && !stop) {
    await sleep(Math.min(1000, seconds * 1000 - (performance.now() - t0)));
    const now = treeCpuMs(pid).total;
    const t = performance.now();
    perSecond.push(((now - last) / (t - lastT)) * 100);
    rss.push(statusKb(pid, 'VmRSS'));
    last = now;
    lastT = t;
  }
  const end = treeCpuMs(pid);
  const elapsed = performance.now() - t0;
  const med = median(perSecond);
  const bursts = perSecond.filter((x) => x > med + 5);
  const calm = perSecond.filter((x) => x <= med + 5);
  return {
    windowS: round(elapsed / 1000, 1),
    pctOfCore: round(((end.total - start.total) / elapsed) * 100, 2),
    floorPct: round(calm.reduce((a, b) => a + b, 0) / Math.max(1, calm.length), 2),
    burstCpuS: round(bursts.reduce((a, x) => a + (x - med) / 100, 0), 2),
    perSecondMedianPct: round(med, 2),
    perSecondMaxPct: round(Math.max(...perSecond), 2),
    childrenPct: round(((end.children - start.children) / elapsed) * 100, 2),
    loadavg: loads,
  };
}

// ------------------------------------------------------------------ the benchmark

export async function controlPlane(options: { quick: boolean; pods?: number[] }): Promise<ControlPlaneResult> {
  const knobs = { ...(options.quick ? QUICK : FULL), ...(options.pods ? { pods: options.pods } : {}) };
  const notes: string[] = [];
  const loadStart = loadavg();
  const maxPods = Math.max(...knobs.pods);
  const lab = await Lab.create({ prefix: 'vpt', vmPods: 0, plainPods: 0, emulator: false });
  const pods = new PodFactory(lab);
  let running: Running | null = null;
  let dp: Dataplane | null = null;
  // the daemons die with this process (pdeathsig); their pins must not outlive it either
  const rmPins = () => {
    for (const e of fs.readdirSync('/sys/fs/bpf')) if (e.startsWith(`${lab.name}-cp`)) fs.rmSync(`/sys/fs/bpf/${e}`, { recursive: true, force: true });
  };
  process.once('exit', rmPins);
  try {
    // ---- the node: maxPods VM pods, guests announced
    const tBuild = performance.now();
    const small = Math.min(...knobs.pods);
    const names = Array.from({ length: maxPods }, (_, i) => (i < small ? `${lab.name}-pa${i}` : `${lab.name}-pb${i}`));
    const built = await pods.create(names);
    const buildS = round((performance.now() - tBuild) / 1000, 1);
    // A bridge sends a link notification for its ports about 15 s after it came up (its
    // forward-delay timer, even without STP): each pod gets one more check then. On a node
    // the daemon (re)starts on, the bridges are older than that; so are they here.
    // (the quick form of 100 pods does not wait: CI time; a quick run of more does, or its pod additions meet a storm of checks)
    if (!options.quick || maxPods > 100) await sleep(Math.max(0, Math.max(...built.map((vm) => vm.readyAt)) + BRIDGE_SETTLED_MS - Date.now()));

    // ---- cold starts: the smaller set (prefix <lab>-pa), then all (prefix <lab>-p), each with a fresh
    // daemon and state; in full runs, the smaller set in tcx mode too (diagnostic: ~13 ms per attach)
    const runs: Array<{ n: number; mode: ColdStart['mode'] }> = knobs.pods.map((n) => ({ n, mode: 'auto' as const }));
    if (!options.quick && native().kernelFeatures().tcx) runs.splice(runs.length - 1, 0, { n: small, mode: 'tcx' });
    const cold: ColdStart[] = [];
    for (const { n, mode } of runs) {
      const last = n === maxPods && mode === 'auto';
      const prefix = n === small && n !== maxPods ? `${lab.name}-pa` : `${lab.name}-p`;
      const r = await coldStart(lab, built.slice(0, n), prefix, last, mode);
      cold.push(r.result);
      if (last) {
        running = r.running;
        dp = r.dp;
      } else {
        await sleep(1000);
      }
    }
    const d = running!.d;
    const cov = new Coverage(dp!);

    // ---- idle: the pods settled, nothing changes; the window holds one periodic full resync
    await sleep(options.quick ? 500 : 3000);
    const idleRss: number[] = [];
    const idle = await cpuWindow(d.pid, knobs.idleS, idleRss);
    const kids = descendants(d.pid);
    const children = {
      count: kids.length,
      rssMb: mb(kids.reduce((s, p) => s + statusKb(p, 'VmRSS'), 0)),
      pssMb: mb(kids.reduce((s, p) => s + pssKb(p), 0)),
    };
    const idleMb = mb(statusKb(d.pid, 'VmRSS'));

    // ---- new pods, one at a time, with the others there
    const add: number[] = [];
    const sinceAnnounced: number[] = [];
    let added = 0;
    let deleted = 0;
    let seq = 0;
    const newName = () => `${lab.name}-pn${seq++}`;
    const tAdd = performance.now();
    for (let i = 0; i < knobs.additions; i++) {
      const [vm] = await pods.create([newName()], 'cue');
      const at = await until(() => cov.covered([vm!]).length === 1, 10_000, 5);
      added++;
      if (at === null) throw new Error(`bench: new pod ${vm!.name} not covered within 10 s`);
      add.push(at - vm!.readyAt);
      sinceAnnounced.push(at - vm!.announcedAt);
      await sleep(knobs.additionGapMs);
    }
    const spanS = round((performance.now() - tAdd) / 1000, 1);
    const failed = d.logs.filter((l) => l.msg === 'pod check failed' && String(l.netns ?? '').includes('-pn'));
    if (failed.length > 0) notes.push(`new pods: ${failed.length} check(s) of a pod being wired up failed and were retried (${[...new Set(failed.map((l) => String(l.err)))].join('; ')})`);
    // the added pods stay: the node has maxPods + additions VM pods from here on

    // ---- one /metrics scrape's cost, every endpoint there, uncached
    const scrape = await scrapeCost(lab.node.ns.path, d.pid, knobs.scrapes, idle.floorPct);

    // ---- covered from the guest's first frame: new pods with silent guests
    const frames: FirstFrameSample[] = [];
    for (let i = 0; i < knobs.firstFrames; i++) {
      frames.push((await firstFrame(pods, cov, dp!, d, newName())).sample);
      added++;
    }
    const logMs = frames.flatMap((f) => (f.logMs === null ? [] : [f.logMs]));

    // ---- churn: pods created and deleted, several at a time, while measuring; then what it left
    const churnRss: number[] = [];
    await sleep(options.quick ? 500 : 3000);
    const beforeMb = mb(statusKb(d.pid, 'VmRSS'));
    const run = churn(pods, cov, knobs.churnCycles, knobs.churnParallel, newName);
    const churnCpu = await cpuWindow(d.pid, 3600, churnRss, run);
    const churned = await run;
    added += churned.added;
    deleted += churned.deleted;
    const leaked = await leaks(dp!, d.pid, beforeMb, pods.pods, churned.churned, options.quick ? 1000 : 5000, churned.cycles);
    const afterMb = leaked.rssAfterMb;

    const everyone = pods.pods;
    const coveredAtEnd = cov.covered(everyone).length;
    if (!d.alive) throw new Error(`bench: the daemon exited: ${d.stderr}`);

    const newPod = { ...latencies(add), basePods: maxPods, sinceAnnouncedP50: round(median(sinceAnnounced), 1), spanS };
    const rss = { idleMb, churnMaxMb: mb(Math.max(...churnRss, 0)), afterMb, children };
    if (options.quick) notes.push('quick run: a smoke test of the benchmark; its numbers are not compared with the targets');
    const loads = [loadStart, ...cold.map((c) => c.loadavg), idle.loadavg, churnCpu.loadavg].map((l) => l[0]!);
    if (loadStart[0]! > os.cpus().length * 0.5) {
      notes.push(`the machine was not idle when the run began (1-min load average ${loadStart[0]} on ${os.cpus().length} CPUs): times are inflated by other work; CPU seconds much less so`);
    }
    notes.push(`1-min load average over the run (this benchmark's own pod building included): ${Math.min(...loads)} to ${Math.max(...loads)}`);
    notes.push(
      `idle window: ${idle.windowS} s with the resync interval at ${RESYNC_S} s, so ${idle.windowS >= RESYNC_S ? 'it holds one periodic full resync (the per-second max)' : 'it may hold no resync'}`,
    );

    const measured = {
      quick: options.quick,
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, kernel: os.release(), node: process.version, loadavgStart: loadStart, loadavgEnd: loadavg() },
      daemon: { nodeFlags: imageNodeFlags(), resyncIntervalS: RESYNC_S, logLevel: 'info', commit: commitOf() },
      build: { pods: maxPods, seconds: buildS },
      coldStart: cold,
      newPod,
      rss,
      cpu: { idle, churn: { ...churnCpu, cycles: churned.cycles } },
      churnCover: latencies(churned.cover),
      scrape,
      leaks: leaked,
      firstFrame: { ...latencies(frames.map((f) => f.ms)), logP50: logMs.length ? median(logMs) : NaN, logP99: logMs.length ? percentile(logMs, 99) : NaN, basePods: pods.pods.length - 1 },
      counts: { podsBuilt: built.length, podsAdded: added, podsDeleted: deleted, coveredAtEnd, pollMs: POLL_MS },
    };
    return { ...measured, targets: targets(measured, maxPods), notes };
  } finally {
    if (running) await stopDaemon(running).catch(() => undefined);
    dp?.close();
    await lab.destroy();
    rmPins();
    process.off('exit', rmPins);
  }
}
