/**
 * Where a path spends its CPU: `perf record -e cpu-clock` on the benchmark's
 * CPU while traffic runs, samples grouped by kernel function into buckets
 * (bridge, netfilter, IP forwarding, TCP, copies, tc/BPF ...).
 *
 * This machine is a KVM guest without a PMU: hardware counters (cycles,
 * instructions) are "not supported", so the profile uses the cpu-clock
 * software event. Its samples are taken from a timer interrupt, so time spent
 * with interrupts disabled is charged to the function that re-enables them
 * (_raw_spin_unlock_irqrestore, handle_softirqs ...): that bucket is shown
 * apart rather than guessed at.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const BUCKETS = [
  'tc/BPF programs and redirects',
  'netfilter hooks (bridge and IP)',
  'bridge',
  'IP receive, route, forward, output',
  'devices and queues (veth, backlog)',
  'TCP and sockets',
  'data copies (user <-> kernel)',
  'skb and memory',
  'interrupts-off time (charged at re-enable)',
  'other kernel (syscalls, scheduler, timers)',
  'user space (sockperf, iperf3)',
] as const;
export type Bucket = (typeof BUCKETS)[number];

const RULES: Array<[RegExp, Bucket]> = [
  [/^(bpf_prog_|bpf_|__bpf_|tcx_|skb_do_redirect|sch_handle_ingress|tcf_|cls_bpf|skb_change_type)/, 'tc/BPF programs and redirects'],
  [/^(br_nf|nf_|nft_|__nf_|ipt_|ebt_|setup_pre_routing|brnf|br_validate|ip_sabotage)/, 'netfilter hooks (bridge and IP)'],
  [/^(br_|__br_|nbp_|fdb_)/, 'bridge'],
  [/(copy_(to|from)_(iter|user)|^_copy_|memcpy|rep_movs|__check_object_size|check_heap_object|__virt_addr_valid|csum_partial|skb_copy_datagram|__skb_datagram_iter|simple_copy_to_iter|copy_page)/, 'data copies (user <-> kernel)'],
  [/^(tcp_|__tcp_|inet_|__inet_|sk_|__sk_|sock_|__sock_|release_sock|lock_sock|skb_entail|security_sock|bpf_skops)/, 'TCP and sockets'],
  [/^(ip_|ip4_|__ip_|fib|neigh|__neigh|dst_|ipv4_|rt_|__mkroute|raw_local|raw_v4|icmp_)/, 'IP receive, route, forward, output'],
  [/(^veth_|netif_|^process_backlog|^net_rx_action|^__dev_|^dev_|^validate_xmit|^skb_scrub|^eth_type_trans|^enqueue_to_backlog|^__napi|^napi_|^gro_|^skb_gro|^__skb_gro|^sch_direct|^qdisc|^__qdisc|^pfifo|^skb_network_protocol|^__skb_flow|^skb_csum_hwoffload|^__netdev|^netdev_)/, 'devices and queues (veth, backlog)'],
  [/(kmem_cache|kmalloc|kfree|^skb_release|^__alloc_skb|^alloc_skb|^__kfree_skb|^consume_skb|^skb_free|^page_|^__free_pages|^get_page_from_freelist|^__alloc_pages|^__alloc_frozen|^__free_frozen|^free_unref|^slab|^__slab|^___slab|^skb_clone|^__build_skb|^pskb_|^skb_page_frag|^__page_frag|^rmqueue|^__rmqueue|^skb_ext|^__skb_ext|^__put_page|^put_page|^__folio|^folio_|^sk_page_frag|^mod_memcg|^__mod_memcg|^memcg|^__memcg|^refill_stock|^obj_cgroup|^__list_del_entry_valid|^__list_add_valid)/, 'skb and memory'],
  [/^(_raw_spin_unlock_irq|handle_softirqs|__do_softirq|do_softirq|__local_bh_enable|__irq_exit_rcu|irq_exit_rcu|pv_native_safe_halt|default_idle|native_safe_halt)/, 'interrupts-off time (charged at re-enable)'],
];

export function bucketOf(symbol: string, userSpace: boolean): Bucket {
  if (userSpace) return 'user space (sockperf, iperf3)';
  for (const [re, b] of RULES) if (re.test(symbol)) return b;
  return 'other kernel (syscalls, scheduler, timers)';
}

export interface ProfileSample {
  comm: string;
  symbol: string;
  user: boolean;
  samples: number;
}

/** Parses `perf report --stdio -q -n --no-children --sort comm,sym -t '|' -g none`. */
export function parsePerfReport(text: string): ProfileSample[] {
  const out: ProfileSample[] = [];
  for (const line of text.split('\n')) {
    const cols = line.split('|');
    if (cols.length < 4 || !/%\s*$/.test(cols[0]!)) continue;
    const samples = Number(cols[1]!.trim());
    const comm = cols[2]!.trim();
    const sym = cols.slice(3).join('|').trim();
    const m = /^\[(.)\]\s+(.*)$/.exec(sym);
    if (!m || !Number.isFinite(samples)) continue;
    out.push({ comm, symbol: m[2]!.trim(), user: m[1] !== 'k', samples });
  }
  return out;
}

export interface Profile {
  /** Every sample on the CPU in the window, and the benchmark tools' share (the rest is other work). */
  totalSamples: number;
  benchSamples: number;
  /** Share of the CPU's time spent by the benchmark tools (incl. softirq work done in their context). */
  benchShare: number;
  /** Share of the CPU's time per bucket (benchmark tools only). */
  buckets: Record<Bucket, number>;
  /** The heaviest kernel functions of the benchmark tools: [symbol, share of the CPU's time]. */
  top: Array<[string, number]>;
}

/** Comms of the benchmark's own processes (and softirq work deferred to ksoftirqd on that CPU). */
export function isBenchComm(comm: string, cpu: number): boolean {
  return comm === 'iperf3' || comm === 'sockperf' || comm === `ksoftirqd/${cpu}`;
}

export function summarizeProfile(samples: ProfileSample[], cpu: number, topN = 12): Profile {
  const total = samples.reduce((s, x) => s + x.samples, 0);
  const bench = samples.filter((x) => isBenchComm(x.comm, cpu));
  const benchSamples = bench.reduce((s, x) => s + x.samples, 0);
  const buckets = Object.fromEntries(BUCKETS.map((b) => [b, 0])) as Record<Bucket, number>;
  const bySym = new Map<string, number>();
  for (const x of bench) {
    buckets[bucketOf(x.symbol, x.user)] += x.samples / (total || 1);
    if (!x.user) bySym.set(x.symbol, (bySym.get(x.symbol) ?? 0) + x.samples / (total || 1));
  }
  const top = [...bySym.entries()].sort((a, b) => b[1] - a[1]).slice(0, topN);
  return { totalSamples: total, benchSamples, benchShare: benchSamples / (total || 1), buckets, top };
}

let perfOk: boolean | undefined;

/** Whether `perf record -e cpu-clock` works here (installed, allowed). */
export function perfAvailable(): boolean {
  if (perfOk === undefined) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vmpeer-perf-${process.pid}-`));
    try {
      const r = spawnSync('perf', ['record', '-q', '-e', 'cpu-clock', '-C', '0', '-o', path.join(dir, 'p.data'), '--', 'sleep', '0.05'], { stdio: 'ignore', timeout: 10_000 });
      perfOk = r.status === 0;
    } catch {
      perfOk = false;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return perfOk;
}

/**
 * Whether cpu-clock samples on `cpu` land on the task that runs there: a
 * busy process pinned to it at the benchmark's priority must own most of
 * them. (Seen on this machine: with some other workloads running, every
 * sample was charged to another process while the pinned one used the CPU.)
 */
export async function perfSelfTest(cpu: number, nice: number): Promise<{ ok: boolean; share: number; top: string }> {
  const busy = spawn('taskset', ['-c', String(cpu), 'nice', '-n', String(nice), 'sha256sum', '/dev/zero'], { stdio: 'ignore' });
  try {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const samples = await recordCpu(cpu, 0.5);
    const total = samples.reduce((a, x) => a + x.samples, 0);
    const mine = samples.filter((x) => x.comm === 'sha256sum').reduce((a, x) => a + x.samples, 0);
    const byComm = new Map<string, number>();
    for (const x of samples) byComm.set(x.comm, (byComm.get(x.comm) ?? 0) + x.samples);
    const top = [...byComm.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'nothing';
    return { ok: total > 0 && mine / total >= 0.5, share: total > 0 ? mine / total : 0, top };
  } finally {
    busy.kill('SIGKILL');
  }
}

/** Records `seconds` of cpu-clock samples on `cpu`, then reads them back. */
export async function recordCpu(cpu: number, seconds: number): Promise<ProfileSample[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vmpeer-perf-${process.pid}-`));
  const data = path.join(dir, 'perf.data');
  try {
    await new Promise<void>((resolve, reject) => {
      const p = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '2000', '-C', String(cpu), '-o', data, '--', 'sleep', String(seconds)], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const timer = setTimeout(() => p.kill('SIGKILL'), (seconds + 30) * 1000);
      p.on('error', reject);
      p.on('close', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(new Error(`perf record: exit ${code}: ${err.trim()}`));
      });
    });
    const r = spawnSync('perf', ['report', '-i', data, '--stdio', '-q', '-n', '--no-children', '--sort', 'comm,sym', '-t', '|', '-g', 'none'], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      timeout: 120_000,
    });
    if (r.status !== 0) throw new Error(`perf report: exit ${r.status}: ${r.stderr}`);
    return parsePerfReport(r.stdout);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
