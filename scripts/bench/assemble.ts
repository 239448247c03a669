/** The result document of a benchmark run, from its measured parts. */
import os from 'node:os';
import type { endToEnd } from './e2e.js';
import { git, type machine } from './machine.js';
import type { Plan } from './plan.js';
import { cpuEvidence, DIAGNOSTIC_PAIRS, pathSummary, PRIMARY_PAIRS, ratios, SCHEMA, targetsOf, type BenchResult } from './results.js';
import { RR_MESSAGE_BYTES } from './tools.js';

/** Assembles the result document from the measured parts. */
export function assemble(parts: {
  plan: Plan;
  started: number;
  machine: ReturnType<typeof machine>;
  perPacket: BenchResult['perPacket'];
  perPacketAt?: BenchResult['perPacketAt'];
  e2e: Awaited<ReturnType<typeof endToEnd>>;
  cpu: number;
  nice: number;
  controlPlane: BenchResult['controlPlane'];
}): BenchResult {
  const { plan, e2e } = parts;
  const ms = e2e.measurements;
  const ids = e2e.paths.map((p) => p.id);
  const { tools, ...mach } = parts.machine;
  const r: BenchResult = {
    schema: SCHEMA,
    quick: plan.quick,
    date: new Date(parts.started).toISOString(),
    durationS: Math.round((Date.now() - parts.started) / 1000),
    ...git(),
    machine: { ...mach, loadavgEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    method: {
      rounds: plan.rounds,
      rrSeconds: plan.rrSeconds,
      tputSeconds: plan.tputSeconds,
      omitSeconds: plan.omitSeconds,
      cpu: parts.cpu,
      nice: parts.nice,
      rrMessageBytes: RR_MESSAGE_BYTES,
      tools,
      perPacket: plan.perPacket,
      lab: e2e.lab,
      profileSeconds: plan.profileSeconds,
    },
    perPacket: parts.perPacket,
    ...(parts.perPacketAt ? { perPacketAt: parts.perPacketAt } : {}),
    paths: e2e.paths,
    skipped: e2e.skipped,
    orders: e2e.orders,
    measurements: ms,
    unpinned: e2e.unpinned,
    summary: Object.fromEntries(ids.map((id) => [id, pathSummary(ms, id)])),
    cpu: Object.fromEntries(ids.map((id) => [id, cpuEvidence(ms, id)]).filter(([, v]) => v !== null)),
    ratios: ratios(ms, PRIMARY_PAIRS),
    diagnostics: ratios(ms, DIAGNOSTIC_PAIRS),
    targets: [],
    verification: {
      all: ms.every((m) => m.evidence.verified),
      failures: ms.filter((m) => !m.evidence.verified).map((m) => `${m.path} round ${m.round + 1}: ${m.evidence.why}`),
    },
    statusCheck: e2e.statusCheck,
    profiles: e2e.profiles,
    profileSkipped: e2e.profileSkipped,
    prototypes: e2e.prototypes,
    controlPlane: parts.controlPlane,
    notes: [],
  };
  r.targets = targetsOf(r.ratios, plan.quick);
  if (plan.quick) r.notes.push('quick run: a smoke test of the benchmark (1 round, 1-second measurements); its numbers are not compared with the targets');
  for (const s of e2e.skipped) r.notes.push(`path ${s.path} skipped: ${s.why}`);
  if (e2e.statusCheck && !e2e.statusCheck.equal) r.notes.push(`the counters read from vmpeer's pinned maps (${JSON.stringify(e2e.statusCheck.pinned)}) differ from \`vmpeer status --json\` (${JSON.stringify(e2e.statusCheck.status)})`);
  if (!r.verification.all) r.notes.push(`${r.verification.failures.length} measurement(s) could not be shown to have taken their path: ${r.verification.failures.join('; ')}`);
  if (e2e.prototypes.errors.length > 0) r.notes.push(`diagnostic BPF: ${e2e.prototypes.errors.join('; ')}`);
  return r;
}
