/**
 * The control-plane benchmark (scripts/bench/control-plane.ts) in its quick
 * form, the 1000-pod part at 100 VM pods: it runs end to end, every pod it
 * makes is covered, its numbers are sane (cold start, new pods, a guest's
 * first frame, the /metrics scrape, the churn and what it left) and its
 * report renders, and it leaves nothing behind. Not a timing test: the
 * targets are checked by a full run, on a quiet machine.
 */
import fs from 'node:fs';
import test from 'ava';
import { ENDPOINT_CACHE_MS } from '../../lib/daemon/metrics.js';
import { controlPlane, formatControlPlane } from '../../scripts/bench/control-plane.js';

const finitePositive = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x > 0;

test('control-plane benchmark, quick: runs, covers every pod, sane numbers, nothing left behind', async (t) => {
  t.timeout(180_000);
  const r = await controlPlane({ quick: true });
  t.log(formatControlPlane(r));

  t.true(r.quick);
  t.is(r.coldStart.length, 1);
  const c = r.coldStart[0]!;
  t.is(c.mode, 'auto');
  t.is(c.covered, c.pods, 'every pod covered at cold start');
  t.is(c.pods, 100);
  for (const x of [c.coveredS, c.readyzS, c.readyLogS, c.lastChangeLogS, c.rssMb]) t.true(finitePositive(x), `cold start value ${x}`);
  // covered through the bridges first, ready once every pod also has the bypass (lib/daemon/bypass-warmup.ts)
  t.true(c.readyzS! >= c.coveredS! - 0.05, `ready (${c.readyzS} s) does not come before coverage (${c.coveredS} s)`);
  t.is(c.children, 0, 'no child process: netlink is watched in-process');

  t.is(r.newPod.samples.length, 5);
  for (const x of [...r.newPod.samples, r.newPod.p50, r.newPod.p99, r.newPod.max]) t.true(finitePositive(x), `new pod latency ${x}`);
  t.true(r.newPod.p50 <= r.newPod.p99 && r.newPod.p99 <= r.newPod.max);

  for (const x of [r.rss.idleMb, r.rss.churnMaxMb, r.rss.afterMb]) t.true(finitePositive(x) && x < 4096, `RSS ${x} MiB`);
  for (const w of [r.cpu.idle, r.cpu.churn]) {
    t.true(finitePositive(w.windowS));
    for (const x of [w.floorPct, w.burstCpuS, w.childrenPct]) t.true(Number.isFinite(x) && x >= 0, `CPU figure ${x}`);
    t.true(Number.isFinite(w.pctOfCore) && w.pctOfCore >= 0 && w.pctOfCore <= 100 * r.machine.cpus, `CPU ${w.pctOfCore} %`);
  }
  t.true(r.cpu.churn.pctOfCore > 0, 'churn costs the daemon something');
  t.is(r.cpu.churn.cycles, 10, 'every churn cycle ran');
  t.is(r.counts.coveredAtEnd, r.counts.podsBuilt + r.newPod.samples.length + r.firstFrame.samples.length, 'every pod still there is covered at the end');

  // a guest's first frame to its endpoint: each measured, by the poll and by the daemon's log line
  t.is(r.firstFrame.samples.length, 5);
  for (const x of [...r.firstFrame.samples, r.firstFrame.p50, r.firstFrame.p99, r.firstFrame.logP50, r.firstFrame.logP99]) t.true(finitePositive(x) && x < 10_000, `first frame ${x} ms`);
  t.is(r.firstFrame.basePods, r.counts.podsBuilt + r.newPod.samples.length + r.firstFrame.samples.length - 1);

  // one scrape: every endpoint in it, uncached, its CPU a number
  t.is(r.scrape.scrapes, 5);
  t.is(r.scrape.endpoints, r.counts.podsBuilt + r.newPod.samples.length, 'the scrape saw every endpoint there');
  t.true(r.scrape.spacingMs > ENDPOINT_CACHE_MS, 'scrapes spaced past the endpoint cache');
  t.true(Number.isFinite(r.scrape.cpuMsPerScrape) && r.scrape.cpuMsPerScrape >= 0 && r.scrape.bytes > 1000);

  // the churn left nothing: the check itself is what a full run judges
  const l = r.leaks;
  t.is(l.cycles, 10);
  t.deepEqual([l.netnsLeft, l.recordsLeft, l.endpointsLeft], [0, 0, 0], 'nothing of the churned pods left');
  t.is(l.pods, r.counts.coveredAtEnd);
  t.is(l.records, l.pods, 'one fixup record per pod');
  t.is(l.endpoints, l.pods, 'one endpoint per pod');
  t.true(finitePositive(l.rssBeforeMb) && finitePositive(l.rssAfterMb));

  t.is(r.targets.length, 7);
  t.true(r.targets.every((x) => x.met === null), 'quick runs are not judged against the targets');
  t.notThrows(() => JSON.parse(JSON.stringify(r)));
  t.regex(formatControlPlane(r), /## Control plane/);

  // nothing left: the lab's namespaces, the daemon's pins
  const left = fs.readdirSync('/var/run/netns').filter((n) => n.startsWith(`vpt${process.pid}-`));
  t.deepEqual(left, []);
  t.deepEqual(
    fs.readdirSync('/sys/fs/bpf').filter((n) => n.startsWith(`vpt${process.pid}-`)),
    [],
  );
});
