/** The control-plane section of the benchmark report, from a ControlPlaneResult. */
import type { ControlPlaneResult } from './control-plane-result.js';

export function formatControlPlane(r: ControlPlaneResult): string {
  const mark = (m: boolean | null) => (m === null ? '–' : m ? 'met' : '**missed**');
  const lines: string[] = [];
  lines.push('## Control plane: `vmpeer daemon`');
  lines.push('');
  lines.push(
    `A lab node (network namespaces) with bridged VM pods whose guests are netns; the daemon runs as the image does (Node.js ${r.machine.node}, ${r.daemon.nodeFlags.join(' ') || 'no flags'}), ` +
      `resync every ${r.daemon.resyncIntervalS} s, log level ${r.daemon.logLevel}, commit ${r.daemon.commit ?? 'unknown'}. ${r.machine.cpus} CPUs, kernel ${r.machine.kernel}, load average ${r.machine.loadavgStart.join(' ')} at the start.` +
      ` CPU counts the daemon and every child process (it should have none: netlink is read in-process).`,
  );
  lines.push('');
  lines.push('| target | goal | measured | |');
  lines.push('|---|---|---|---|');
  for (const t of r.targets) lines.push(`| ${t.name} | ${t.target} | ${t.value} | ${mark(t.met)} |`);
  lines.push('');
  lines.push(
    "**Cold start** (daemon spawned with the pods there, guest MACs learned; covered = fixup attached and the endpoint in the pinned map, through the pod's bridge at first; /readyz answers 200 once every pod also has the bridge bypass, its own programs loaded one pod at a time after the first full reconcile):",
  );
  lines.push('');
  lines.push('| VM pods | --mode | all covered | /readyz 200 | last change logged | CPU used | RSS then | children | load avg |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---|');
  for (const c of r.coldStart) {
    lines.push(
      `| ${c.pods} | ${c.mode === 'auto' ? 'auto (clsact in pods)' : `${c.mode}, diagnostic`} | ${c.coveredS ?? `${c.covered}/${c.pods} only`} s | ${c.readyzS ?? '–'} s | ${c.lastChangeLogS ?? '–'} s | ${c.cpuS} s | ${c.rssMb} MiB | ${c.children} | ${c.loadavg.join(' ')} |`,
    );
  }
  const tcx = r.coldStart.find((c) => c.mode === 'tcx');
  const clsact = r.coldStart.find((c) => c.mode === 'auto' && c.pods === tcx?.pods);
  if (tcx?.coveredS && clsact?.coveredS) {
    lines.push('');
    lines.push(
      `Why clsact in pods: with \`--mode tcx\` the same ${tcx.pods} pods take ${tcx.coveredS} s against ${clsact.coveredS} s. tcx_link_attach() holds the rtnl lock across an RCU grace period, ` +
        'so tcx attaches queue one behind the other (about 13 ms each, however many run at once: the daemon attaches off the JS thread, 32 at a time); a clsact filter does not wait.',
    );
  }
  lines.push('');
  lines.push(
    `**A new pod** (${r.newPod.samples.length} added one at a time next to ${r.newPod.basePods}, over ${r.newPod.spanS} s${r.newPod.spanS >= r.daemon.resyncIntervalS ? ', so that some meet a periodic resync' : ''}; from its bridge and tap forwarding, its guest announcing itself right then from a process started before, to covered): ` +
      `p50 ${r.newPod.p50} ms, p99 ${r.newPod.p99} ms, max ${r.newPod.max} ms (p50 ${r.newPod.sinceAnnouncedP50} ms after the guest's frame).`,
  );
  lines.push('');
  const f = r.firstFrame;
  lines.push(
    `**Covered from the guest's first frame** (${f.samples.length} new pods next to ${f.basePods}, each built with a silent guest; once fixup is attached and the daemon waits for the guest MAC, ` +
      "and 0.2 to 1.2 s later, the guest sends its first frame, an ARP request for its gateway from its MAC, written to its interface by a process started before, which takes T0 right before send(); " +
      `T1: the endpoint with that MAC is in the pinned map, polled every ms): p50 ${f.p50} ms, p99 ${f.p99} ms, max ${f.max} ms; to the daemon's "added endpoint" log line p50 ${f.logP50} ms, p99 ${f.logP99} ms.`,
  );
  lines.push('');
  const sc = r.scrape;
  lines.push(
    `**One /metrics scrape** (${sc.scrapes} scrapes after ${sc.warmup} not counted, ${sc.spacingMs} ms apart: past the daemon's endpoint cache, so each reads the endpoint table; ${sc.endpoints} endpoints, ${Math.round(sc.bytes / 1024)} KiB): ` +
      `${sc.cpuMsPerScrape} ms of daemon CPU per scrape (utime + stime from /proc, the idle floor taken off; one scrape at most ${sc.cpuMsMax} ms at 10 ms ticks), wall time p50 ${sc.wallMsP50} ms, max ${sc.wallMsMax} ms.`,
  );
  lines.push('');
  const l = r.leaks;
  lines.push(
    `**Leaks** (${l.cycles} create/delete cycles, ${r.cpu.churn.windowS} s, with ${l.pods} pods there): RSS ${l.rssBeforeMb} MiB before, ${l.rssAfterMb} MiB after (bound: + ${l.rssBoundMb} MiB); ` +
      `of the churned pods ${l.netnsLeft} netns files, ${l.recordsLeft} attachment records and ${l.endpointsLeft} endpoints left; ${l.records} fixup records and ${l.endpoints} endpoints for ${l.pods} pods (${l.endpointsTotal} endpoints in the table).`,
  );
  lines.push('');
  lines.push('**Resources:**');
  lines.push('');
  lines.push('| | CPU, % of a core | per second: median / max | of it, children | RSS |');
  lines.push('|---|---:|---:|---:|---:|');
  lines.push(`| idle, ${r.cpu.idle.windowS} s | ${r.cpu.idle.pctOfCore} | ${r.cpu.idle.perSecondMedianPct} / ${r.cpu.idle.perSecondMaxPct} | ${r.cpu.idle.childrenPct} | ${r.rss.idleMb} MiB |`);
  lines.push(`| idle, without its bursts | ${r.cpu.idle.floorPct} | | | |`);
  lines.push(
    `| churn, ${r.cpu.churn.windowS} s, ${r.cpu.churn.cycles} create/delete cycles | ${r.cpu.churn.pctOfCore} | ${r.cpu.churn.perSecondMedianPct} / ${r.cpu.churn.perSecondMaxPct} | ${r.cpu.churn.childrenPct} | max ${r.rss.churnMaxMb} MiB |`,
  );
  lines.push(`| after churn | | | | ${r.rss.afterMb} MiB |`);
  lines.push('');
  if (r.cpu.idle.windowS >= r.daemon.resyncIntervalS) {
    lines.push(
      `Idle CPU is a floor (${r.cpu.idle.floorPct} % of a core: the netlink monitors wait in the kernel) plus the periodic full resync, ` +
        `≈ ${r.cpu.idle.burstCpuS} CPU-s every ${r.daemon.resyncIntervalS} s here, which looks into every pod again (a netlink read and an attachment check per VM pod).`,
    );
    lines.push('');
  }
  lines.push(
    `Children when idle: ${r.rss.children.count} processes, ${r.rss.children.rssMb} MiB RSS summed (${r.rss.children.pssMb} MiB PSS). ` +
      `Churn coverage: p50 ${r.churnCover.p50} ms, p99 ${r.churnCover.p99} ms. Pods: ${r.counts.podsBuilt} built in ${r.build.seconds} s, ${r.counts.podsAdded} added and ${r.counts.podsDeleted} deleted while the daemon ran, ${r.counts.coveredAtEnd} covered at the end.`,
  );
  if (r.notes.length > 0) {
    lines.push('');
    for (const n of r.notes) lines.push(`- ${n}`);
  }
  return lines.join('\n') + '\n';
}
