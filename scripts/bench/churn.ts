/**
 * Churn at the node's population: `cycles` pods created, covered and deleted,
 * `parallel` at a time, with the daemon's CPU and RSS measured; then what is
 * left: the daemon's RSS after against before, and nothing of the churned pods
 * (netns files, attachment records, endpoints), the records and endpoints back
 * to one per pod still there.
 */
import fs from 'node:fs';
import type { Dataplane } from '../../lib/dataplane/dataplane.js';
import type { Leaks } from './control-plane-result.js';
import type { Coverage } from './daemon-run.js';
import { until } from './daemon-run.js';
import type { BenchVm, PodFactory } from './pods.js';
import { mb, statusKb } from './proc.js';
import { sleep } from './util.js';

/** RSS after the churn may exceed the RSS before by this much (the JS heap grows in steps) and still count as no leak. */
export const LEAK_RSS_MB = 10;

export interface ChurnRun {
  cover: number[];
  cycles: number;
  added: number;
  deleted: number;
}

/** Runs the churn: `cycles` pods, each created, covered, deleted and cleaned up. */
export async function churn(pods: PodFactory, cov: Coverage, cycles: number, parallel: number, newName: () => string): Promise<ChurnRun & { churned: BenchVm[] }> {
  const out: ChurnRun & { churned: BenchVm[] } = { cover: [], cycles: 0, added: 0, deleted: 0, churned: [] };
  let started = 0;
  const worker = async () => {
    while (started < cycles) {
      started++;
      const [vm] = await pods.create([newName()], 'cue');
      out.added++;
      out.churned.push(vm!);
      const at = await until(() => cov.covered([vm!]).length === 1, 10_000, 10);
      if (at === null) throw new Error(`bench: churn pod ${vm!.name} not covered within 10 s`);
      out.cover.push(at - vm!.readyAt);
      await pods.remove([vm!]);
      out.deleted++;
      if ((await until(() => cov.gone(vm!), 10_000, 10)) === null) throw new Error(`bench: churn pod ${vm!.name} not cleaned up within 10 s`);
      out.cycles++;
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return out;
}

/** What the churn left, once the daemon had `settleMs` to finish. */
export async function leaks(dp: Dataplane, pid: number, before: number, live: BenchVm[], churned: BenchVm[], settleMs: number, cycles: number): Promise<Leaks> {
  await sleep(settleMs);
  const after = mb(statusKb(pid, 'VmRSS'));
  const inodes = new Set(churned.map((vm) => vm.inode));
  const records = dp.attachments();
  const endpoints = dp.endpoints();
  const netnsLeft = churned.filter((vm) => fs.existsSync(vm.podNs.path) || fs.existsSync(vm.guestNs!.path)).length;
  const ips = new Set(live.map((vm) => vm.podIp));
  const l: Leaks = {
    cycles,
    rssBeforeMb: before,
    rssAfterMb: after,
    rssBoundMb: LEAK_RSS_MB,
    netnsLeft,
    recordsLeft: records.filter((r) => inodes.has(r.netnsInode)).length,
    endpointsLeft: endpoints.filter((e) => e.podNetns != null && inodes.has(e.podNetns)).length,
    pods: live.length,
    records: records.filter((r) => r.program === 'fixup').length,
    endpoints: endpoints.filter((e) => ips.has(e.guestIp)).length,
    endpointsTotal: endpoints.length,
    leakFree: false,
  };
  l.leakFree =
    after - before <= LEAK_RSS_MB && l.netnsLeft === 0 && l.recordsLeft === 0 && l.endpointsLeft === 0 && l.records === l.pods && l.endpoints === l.pods && l.endpointsTotal === l.pods;
  return l;
}
