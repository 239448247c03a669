/**
 * What one /metrics scrape costs the daemon: its CPU time (utime + stime from
 * /proc/<pid>/stat) across a series of scrapes, each made on cue by a client
 * in the node netns (started before, so its start-up is not measured), with
 * the daemon's stat read before and after each. The scrapes are spaced past
 * the daemon's endpoint cache (ENDPOINT_CACHE_MS): each one reads the whole
 * endpoint table again. The idle floor over the same wall time is taken off.
 */
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { ENDPOINT_CACHE_MS } from '../../lib/daemon/metrics.js';
import { killAndWait } from '../../lib/lab/exec.js';
import { METRICS } from '../../lib/testkit/daemon-process.js';
import type { ScrapeCost } from './control-plane-result.js';
import { treeCpuMs } from './proc.js';
import { median } from './stats.js';
import { round, sleep } from './util.js';

/** Fetches /metrics once per line on stdin; answers with one JSON line. */
const CLIENT = `
const url = process.argv[1];
const rl = require('node:readline').createInterface({ input: process.stdin });
process.stdout.write('{"ready":true}\\n');
rl.on('line', async () => {
  const t0 = performance.now();
  let status = 0, body = '';
  try { const r = await fetch(url, { signal: AbortSignal.timeout(10000) }); status = r.status; body = await r.text(); } catch {}
  const m = /^vmpeer_endpoints (\\d+)$/m.exec(body);
  process.stdout.write(JSON.stringify({ status, bytes: body.length, endpoints: m ? Number(m[1]) : -1, ms: performance.now() - t0 }) + '\\n');
});
`;

interface Answer {
  ready?: boolean;
  status: number;
  bytes: number;
  endpoints: number;
  ms: number;
}

/** `scrapes` measured scrapes (after `warmup` unmeasured ones), `spacingMs` apart; `floorPct`: the daemon's idle CPU. */
export async function scrapeCost(nodeNs: string, pid: number, scrapes: number, floorPct: number, warmup = 2): Promise<ScrapeCost> {
  const spacingMs = ENDPOINT_CACHE_MS + 100;
  const child = spawn('nsenter', [`--net=${nodeNs}`, 'setpriv', '--pdeathsig', 'KILL', process.execPath, '-e', CLIENT, `http://${METRICS}/metrics`], {
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  child.on('error', () => undefined);
  const answers: Answer[] = [];
  let wake: (() => void) | null = null;
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      answers.push(JSON.parse(line) as Answer);
    } catch {
      return;
    }
    wake?.();
  });
  const next = async (n: number) => {
    for (const deadline = Date.now() + 15_000; answers.length < n; ) {
      if (Date.now() > deadline) throw new Error('bench: the /metrics client did not answer within 15 s');
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    return answers[n - 1]!;
  };
  try {
    await next(1); // ready
    const perScrape: number[] = [];
    const wall: number[] = [];
    let total = 0;
    let elapsed = 0;
    let last: Answer | null = null;
    for (let i = 0; i < warmup + scrapes; i++) {
      await sleep(spacingMs);
      const c0 = treeCpuMs(pid).total;
      const t0 = performance.now();
      child.stdin!.write('\n');
      last = await next(i + 2);
      const dt = performance.now() - t0;
      const cpu = treeCpuMs(pid).total - c0;
      if (last.status !== 200) throw new Error(`bench: /metrics answered ${last.status}`);
      if (i < warmup) continue;
      perScrape.push(cpu);
      wall.push(last.ms);
      total += cpu;
      elapsed += dt;
    }
    // the daemon's idle floor during the scrapes' wall time is not the scrapes'
    const cpuMs = Math.max(0, total - (floorPct / 100) * elapsed) / scrapes;
    return {
      scrapes,
      warmup,
      spacingMs,
      endpoints: last!.endpoints,
      bytes: last!.bytes,
      cpuMsPerScrape: round(cpuMs, 2),
      cpuMsMax: round(Math.max(...perScrape), 1),
      wallMsP50: round(median(wall), 1),
      wallMsMax: round(Math.max(...wall), 1),
    };
  } finally {
    await killAndWait(child);
  }
}
