/**
 * End-to-end paths on the lab (lib/lab): one lab with a VM pod (netns guest)
 * and a plain pod, the client on "another node". The lab is reconfigured
 * between measurements (CNI emulator on/off, `vmpeer attach`/`detach` with
 * the CLI, a sysctl, benchmark-only BPF), paths are shuffled in every round,
 * and every measurement records the counters that prove which path it took.
 *
 * Servers (sockperf, iperf3) run in the destination netns, clients in the
 * client netns; all of them are pinned to one CPU at a high priority, so a
 * measurement is the cost of the whole round trip (client stack, node,
 * pod, guest stack) on one core, and other work on the machine is pushed to
 * the other CPUs.
 */
import { COUNTER_NAMES, counterDelta, emulatorDelta, PATHS, verify, type EndpointCounts, type Evidence, type PathId, type PathSpec } from './paths.js';
import { perfAvailable, perfSelfTest, recordCpu, summarizeProfile, type ProfileSample } from './profile.js';
import { shuffle } from './stats.js';

import { BenchLab } from './bench-lab.js';
import type { E2eOptions, E2eResult, Measurement, PathProfile, StatusCheck, UnpinnedRun } from './e2e-result.js';
import { sleep } from './util.js';

export type { E2eOptions, E2eResult, Measurement, PathProfile, StatusCheck, UnpinnedRun } from './e2e-result.js';
export { BenchLab, pinnedCounters } from './bench-lab.js';

/** Puts the lab on `spec`'s path and warms it up, runs `work`, and checks with the counters that the traffic took that path. */
async function onPath<T>(b: BenchLab, spec: PathSpec, work: (ip: string) => Promise<T>): Promise<{ result: T; evidence: Evidence }> {
  await b.apply(spec);
  const ip = b.targetIp(spec);
  await b.warmUp(ip, spec.id);
  const emu0 = b.lab.emulatorStats();
  const vp0 = await b.vmpeerCounters();
  const result = await work(ip);
  const emu = emulatorDelta(emu0, b.lab.emulatorStats());
  const vp = counterDelta(vp0, await b.vmpeerCounters());
  return { result, evidence: verify(spec.expect, emu, vp) };
}

/** One path in one round: configure, warm up, request/response, then bulk, with counters around both. */
async function measure(b: BenchLab, spec: PathSpec, round: number, slot: number): Promise<Measurement> {
  const { result: [rr, tput], evidence } = await onPath(b, spec, async (ip) => [await b.rr(ip), await b.tput(ip)] as const);
  return {
    path: spec.id,
    round,
    slot,
    rr: rr.rr,
    tput: tput.tput,
    cpuRr: rr.cpu,
    cpuTput: tput.cpu,
    otherBusyRr: rr.otherBusy,
    otherBusyTput: tput.otherBusy,
    evidence,
  };
}

/** A bulk run with client and server where the scheduler puts them, at the default priority. */
async function unpinned(b: BenchLab, spec: PathSpec, round: number, seconds: number): Promise<UnpinnedRun> {
  const { result: r, evidence } = await onPath(b, spec, (ip) => b.tput(ip, { seconds, omit: 1, pinned: false }));
  return { path: spec.id, round, gbps: r.tput.bitsPerSecond / 1e9, verified: evidence.verified };
}

/** Profiles a path: perf on the benchmark CPU in the middle of a bulk run, and over a request/response window. */
async function profilePath(b: BenchLab, spec: PathSpec, o: E2eOptions): Promise<PathProfile[]> {
  await b.apply(spec);
  const ip = b.targetIp(spec);
  await b.warmUp(ip, spec.id);
  const out: PathProfile[] = [];
  for (const metric of o.profileMetrics) {
    if (metric === 'throughput') {
      const lead = 0.5;
      const run = b.tput(ip, { seconds: Math.ceil(o.profileSeconds + 2 * lead), omit: 0 });
      await sleep(lead * 1000);
      const samples = await recordCpu(o.cpu, o.profileSeconds);
      out.push({ path: spec.id, metric, rate: (await run).tput.bitsPerSecond, profile: summarizeProfile(samples, o.cpu) });
    } else {
      let recording: Promise<ProfileSample[]> | null = null;
      // perf starts with sockperf's measured window and stops before it ends
      const r = await b.rr(ip, Math.ceil(o.profileSeconds) + 1, () => (recording = recordCpu(o.cpu, o.profileSeconds)));
      if (!recording) throw new Error('bench: sockperf never started its test');
      out.push({ path: spec.id, metric, rate: r.rr.rate, profile: summarizeProfile(await recording, o.cpu) });
    }
  }
  return out;
}

/** Runs every round. The BenchLab is closed before this returns or throws. */
export async function endToEnd(o: E2eOptions, onLab?: (b: BenchLab) => void): Promise<E2eResult> {
  const b = await BenchLab.create(o);
  onLab?.(b);
  try {
    const skipped = b.prototypesFor(o.paths).skipped;
    if (o.paths.some((id) => !PATHS[id].bridgeNf) && !(await b.hasBridgeNf())) {
      for (const id of o.paths.filter((x) => !PATHS[x].bridgeNf)) skipped.push({ path: id, why: 'this kernel has no bridge netfilter (net.bridge.bridge-nf-call-iptables absent)' });
    }
    const ids = o.paths.filter((id) => !skipped.some((s) => s.path === id));
    o.log(b.lab.describe());
    const measurements: Measurement[] = [];
    const unpinnedRuns: UnpinnedRun[] = [];
    const orders: PathId[][] = [];
    for (let round = 0; round < o.rounds; round++) {
      const order = shuffle([...ids]);
      orders.push(order);
      const line: string[] = [];
      for (const [slot, id] of order.entries()) {
        const m = await measure(b, PATHS[id], round, slot);
        measurements.push(m);
        line.push(`${id} ${(m.rr.rate / 1000).toFixed(1)}k rt/s ${m.rr.p50Us.toFixed(2)} µs ${(m.tput.bitsPerSecond / 1e9).toFixed(2)} Gb/s${m.evidence.verified ? '' : ' (UNVERIFIED)'}`);
      }
      o.log(`round ${round + 1}/${o.rounds}: ${line.join(' | ')}`);
      const probes: string[] = [];
      for (const id of shuffle(o.unpinnedPaths.filter((x) => ids.includes(x)))) {
        const run = await unpinned(b, PATHS[id], round, o.unpinnedSeconds);
        unpinnedRuns.push(run);
        probes.push(`${id} ${run.gbps.toFixed(2)} Gb/s`);
      }
      if (probes.length > 0) o.log(`  unpinned, default priority: ${probes.join(' | ')}`);
    }

    // the pinned-map reader against `vmpeer status --json`, with the fixup attached (and the bypass, when measured) and no traffic
    let statusCheck: StatusCheck | null = null;
    const check = (['Cb', 'C'] as const).find((id) => ids.includes(id));
    if (check) {
      await b.apply(PATHS[check]);
      await b.warmUp(b.targetIp(PATHS[check]), check);
      const { stats: _, ...pinned } = await b.vmpeerCounters();
      const st = (await b.status()) as { endpoints: Array<{ guestIp: string; counters: EndpointCounts }> };
      const cli = st.endpoints.find((e) => e.guestIp === b.vm.podIp)?.counters ?? null;
      statusCheck = { path: check, pinned, status: cli, equal: !!cli && COUNTER_NAMES.every((k) => cli[k] === pinned[k]) };
    }

    const profiles: PathProfile[] = [];
    let profileSkipped: string | null = null;
    const toProfile = o.profilePaths.filter((id) => ids.includes(id));
    if (toProfile.length > 0 && o.profileSeconds > 0) {
      const check = perfAvailable() ? await perfSelfTest(o.cpu, o.nice) : null;
      if (!check) profileSkipped = '`perf record -e cpu-clock` does not work here (perf missing or not allowed)';
      else if (!check.ok) {
        profileSkipped = `perf's cpu-clock samples on CPU ${o.cpu} did not land on the process running there (a busy process pinned to it got ${(check.share * 100).toFixed(0)} % of them, \`${check.top}\` the most): sampling is unreliable on this machine right now, so no profile is shown`;
      } else {
        for (const id of toProfile) {
          const got = await profilePath(b, PATHS[id], o);
          // our processes saturate the CPU: a profile that hardly sees them is not one
          const bad = got.filter((p) => p.profile.benchShare < 0.5);
          if (bad.length > 0) {
            profileSkipped = `perf charged most samples of ${bad.map((p) => `${p.path} ${p.metric}`).join(', ')} to other processes; those profiles are left out`;
          }
          profiles.push(...got.filter((p) => p.profile.benchShare >= 0.5));
          o.log(`profiled ${id}`);
        }
      }
    } else profileSkipped = 'not requested';
    if (profileSkipped && profileSkipped !== 'not requested') o.log(`profiles: ${profileSkipped}`);

    return {
      paths: ids.map((id) => PATHS[id]),
      skipped,
      orders,
      measurements,
      unpinned: unpinnedRuns,
      statusCheck,
      profiles,
      profileSkipped,
      lab: {
        name: b.lab.name,
        emulatorMode: b.lab.emulator.mode,
        fixupMode: b.fixupMode,
        vmGuest: 'netns (a veth stands in for the tap)',
        describe: b.lab.describe(),
      },
      prototypes: b.prototypeInfo,
    };
  } finally {
    await b.close();
  }
}
