/** The control-plane targets (issue 16: 1000 VM pods per node at the cost of one), judged in full runs only. */
import type { ControlPlaneResult } from './control-plane-result.js';

type Measured = Omit<ControlPlaneResult, 'targets' | 'notes'>;

export const TARGETS = {
  coldStartS: 3,
  newPodP99Ms: 100,
  rssMiB: 100,
  idlePct: 1,
  scrapeCpuMs: 20,
  firstFrameP99Ms: 10,
};

export function targets(r: Measured, maxPods: number): ControlPlaneResult['targets'] {
  const judged = !r.quick;
  const met = (ok: boolean) => (judged ? ok : null);
  const big = r.coldStart.find((c) => c.pods === maxPods && c.mode === 'auto')!;
  const rssMax = Math.max(r.rss.idleMb, r.rss.churnMaxMb, r.rss.afterMb);
  const l = r.leaks;
  return [
    { name: `cold start, ${maxPods} VM pods covered`, target: `≤ ${TARGETS.coldStartS} s`, value: `${big.coveredS ?? 'not'} s`, met: met(big.coveredS !== null && big.coveredS <= TARGETS.coldStartS) },
    {
      name: `a new pod covered, p99 (${r.newPod.basePods} there)`,
      target: `≤ ${TARGETS.newPodP99Ms} ms`,
      value: `${r.newPod.p99} ms (p50 ${r.newPod.p50} ms, ${r.newPod.samples.length} pods)`,
      met: met(r.newPod.p99 <= TARGETS.newPodP99Ms),
    },
    { name: 'daemon RSS (idle / churn max / after)', target: `≤ ${TARGETS.rssMiB} MiB`, value: `${r.rss.idleMb} / ${r.rss.churnMaxMb} / ${r.rss.afterMb} MiB`, met: met(rssMax <= TARGETS.rssMiB) },
    { name: 'idle CPU (daemon + children)', target: `≤ ${TARGETS.idlePct} % of a core`, value: `${r.cpu.idle.pctOfCore} %`, met: met(r.cpu.idle.pctOfCore <= TARGETS.idlePct) },
    {
      name: `one /metrics scrape, daemon CPU (${r.scrape.endpoints} endpoints, uncached)`,
      target: `≤ ${TARGETS.scrapeCpuMs} ms`,
      value: `${r.scrape.cpuMsPerScrape} ms (mean of ${r.scrape.scrapes})`,
      met: met(r.scrape.cpuMsPerScrape <= TARGETS.scrapeCpuMs),
    },
    {
      name: `${l.cycles} create/delete cycles leak nothing`,
      target: `RSS after ≤ before + ${l.rssBoundMb} MiB; nothing of the churned pods left; one record and endpoint per pod`,
      value:
        `RSS ${l.rssBeforeMb} → ${l.rssAfterMb} MiB; left: ${l.netnsLeft} netns, ${l.recordsLeft} records, ${l.endpointsLeft} endpoints; ` +
        `${l.records} records, ${l.endpointsTotal} endpoints for ${l.pods} pods`,
      met: met(l.leakFree),
    },
    {
      name: `guest's first frame to its endpoint, p99 (new pod, ${r.firstFrame.basePods} there)`,
      target: `≤ ${TARGETS.firstFrameP99Ms} ms`,
      value: `${r.firstFrame.p99} ms (p50 ${r.firstFrame.p50} ms, ${r.firstFrame.samples.length} guests; daemon log p99 ${r.firstFrame.logP99} ms)`,
      met: met(r.firstFrame.p99 <= TARGETS.firstFrameP99Ms),
    },
  ];
}
