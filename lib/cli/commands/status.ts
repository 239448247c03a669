/** vmpeer status: every attachment and endpoint on this node, with counters, and the guest IPs refused to pods. */
import fs from 'node:fs';
import path from 'node:path';
import { COMMON_HELP, commonOptions, type Command } from '../command.js';
import { netnsNames } from '../netns.js';
import { requirePrivileges } from '../../privileges.js';
import { Dataplane, DEFAULT_BPFFS_ROOT } from '../../dataplane/dataplane.js';
import { STAT_NAMES } from '../../dataplane/layout.js';
import type { EndpointCounters } from '../../dataplane/codec.js';
import { iproute } from '../../discovery/iproute.js';
import { routedDevice } from '../../discovery/ownership.js';
import { lookInto, NodeView } from '../../daemon/probe.js';
import { NETNS_DIR } from '../../paths.js';
import { findStale } from '../../dataplane/stale.js';
import { native } from '../../native.js';
import { bypassUnsafeBecause, KEEP_BRIDGE_FLAG } from '../../dataplane/bridge-path.js';

export interface StatusReport {
  root: string;
  attachments: { program: string; hook: string; mode: string; ifname: string; netns: string; netnsInode: number }[];
  endpoints: {
    guestIp: string;
    guestMac: string;
    gatewayMac: string;
    hostVeth: string | null;
    hostIfindex: number;
    redirect: boolean;
    bypass: boolean;
    /** Why the pod's bridge is on the path of this guest's traffic (null: bypassed): unsafe there, or --keep-bridge. */
    bridgeKept: string | null;
    netns: string | null;
    /** Whether this node routes the guest IP to the endpoint's host veth (what ownership follows). */
    route: 'agrees' | 'disagrees';
    routedTo: string | null;
    counters: Record<keyof EndpointCounters, number>;
  }[];
  /** Guest IPs that pods under /var/run/netns claim and this node routes elsewhere: never written. */
  refused: { ip: string; claimedBy: string; routedTo: string | null; netns: string; ownerNetns: string | null }[];
  /** VM ports found under /var/run/netns whose guest (MAC known) has no endpoint of its pod: not covered. */
  uncovered: { netns: string; guestIp: string; guestMac: string }[];
  stats: Record<string, number>;
  /** State the kernel no longer backs (`vmpeer gc` removes it). */
  stale: { kind: 'record' | 'endpoint'; what: string; why: string }[];
}

/**
 * Looks into the named netns: claims the node's routes refuse (what the daemon
 * logs and counts), and VM guests without an endpoint of their pod.
 */
async function scanPods(
  hostVethOwner: (dev: string) => string | null,
  endpointPod: (ip: string) => number | null,
): Promise<Pick<StatusReport, 'refused' | 'uncovered'> & { unsafe: Map<string, string> }> {
  let names: string[] = [];
  const unsafe = new Map<string, string>(); // "inode ip" → why the bypass is unsafe for that port
  try {
    names = fs.readdirSync(NETNS_DIR);
  } catch {
    return { refused: [], uncovered: [], unsafe };
  }
  const node = new NodeView();
  const out: StatusReport['refused'] = [];
  const uncovered: StatusReport['uncovered'] = [];
  for (let i = 0; i < names.length; i += 8) {
    const looks = await Promise.all(names.slice(i, i + 8).map((n) => lookInto(path.join(NETNS_DIR, n), node).then((l) => ({ n, l }), () => null)));
    for (const x of looks) {
      const file = x && path.join(NETNS_DIR, x.n);
      const inode = file && inodeOf(file);
      for (const p of x?.l.ports ?? []) {
        const why = bypassUnsafeBecause(p);
        if (why !== null && inode) unsafe.set(`${inode} ${p.guestIp}`, why);
        // a port on standby (a migration target before its route) is listed as REFUSED, not uncovered
        if (!p.standby && p.guestMac !== null && inode && endpointPod(p.guestIp) !== inode) uncovered.push({ netns: file, guestIp: p.guestIp, guestMac: p.guestMac });
      }
      for (const c of x?.l.refused ?? []) {
        out.push({ ip: c.ip, claimedBy: c.claimedBy, routedTo: c.routedTo, netns: path.join(NETNS_DIR, x!.n), ownerNetns: c.routedTo ? hostVethOwner(c.routedTo) : null });
      }
    }
  }
  return { refused: out, uncovered, unsafe };
}

function inodeOf(file: string): number | null {
  try {
    return fs.statSync(file).ino;
  } catch {
    return null;
  }
}

export async function statusReport(root = DEFAULT_BPFFS_ROOT): Promise<StatusReport> {
  // read without the lock: status works beside the daemon and never changes anything
  const dp = Dataplane.view({ root });
  if (!dp) return { root, attachments: [], endpoints: [], refused: [], uncovered: [], stats: Object.fromEntries(STAT_NAMES.map((s) => [s, 0])), stale: [] };
  try {
    const names = netnsNames();
    const links = new Map((await iproute.links()).map((l) => [l.ifindex, l.ifname]));
    const routes = await iproute.routes(undefined);
    const endpoints = dp.endpoints();
    const ownerOf = (dev: string) => {
      const ep = endpoints.find((e) => links.get(e.hostIfindex) === dev);
      return ep?.podNetns ? (names.get(ep.podNetns) ?? null) : null;
    };
    const { refused, uncovered, unsafe } = await scanPods(ownerOf, (ip) => endpoints.find((e) => e.guestIp === ip)?.podNetns ?? null);
    return {
      root,
      attachments: dp.attachments().map((r) => ({
        program: r.program,
        hook: r.hook,
        mode: r.mode,
        ifname: r.ifname,
        netns: names.get(r.netnsInode) ?? `netns inode ${r.netnsInode} (gone)`,
        netnsInode: r.netnsInode,
      })),
      endpoints: endpoints.map((e) => ({
        guestIp: e.guestIp,
        guestMac: e.guestMac,
        gatewayMac: e.gatewayMac,
        hostVeth: links.get(e.hostIfindex) ?? null,
        hostIfindex: e.hostIfindex,
        redirect: e.redirect,
        bypass: e.bypass !== null,
        bridgeKept: e.bypass !== null ? null : (unsafe.get(`${e.podNetns} ${e.guestIp}`) ?? `the bypass is off (--${KEEP_BRIDGE_FLAG})`),
        netns: e.podNetns ? (names.get(e.podNetns) ?? null) : null,
        route: routedDevice(e.guestIp, routes) === links.get(e.hostIfindex) ? ('agrees' as const) : ('disagrees' as const),
        routedTo: routedDevice(e.guestIp, routes),
        counters: Object.fromEntries(Object.entries(e.counters).map(([k, v]) => [k, Number(v)])) as StatusReport['endpoints'][number]['counters'],
      })),
      refused,
      uncovered,
      stats: Object.fromEntries(Object.entries(dp.stats()).map(([k, v]) => [k, Number(v)])),
      stale: (await findStale(dp, native())).map((s) => ({
        kind: s.kind,
        what: s.kind === 'record' ? `${s.record.program} on ${s.record.ifname} (${s.record.pin})` : `endpoint ${s.guestIp}`,
        why: s.why,
      })),
    };
  } finally {
    dp.close();
  }
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => `  ${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}`);
}

export const statusCommand: Command = {
  name: 'status',
  summary: "show vmpeer's attachments, endpoints and counters",
  help: `Usage:
  vmpeer status [--json]

Lists every attachment vmpeer made on this node, every guest endpoint with its
counters (frames fixed, redirected, passed to the kernel, and with the bridge
bypass, sent past the pod's bridge to and from the guest), its PATH (the
bridge bypassed, or kept and why: the bypass is unsafe for that pod, e.g. a
bridge with more than one guest port, or --keep-bridge), whether this node
still routes each guest IP to its endpoint's host veth (ROUTE: ownership
follows the node's routes, never what a pod claims), the guest IPs that pods
under /var/run/netns claim but the node routes elsewhere (REFUSED), VM guests
with no endpoint (UNCOVERED), the totals by outcome, and stale state (records
and endpoints of pods deleted without detach, which \`vmpeer gc\` removes).
--json prints the same as one stable JSON document. status reads without the
node lock: it works beside the daemon and changes nothing.

Options:
  --json            machine-readable output
${COMMON_HELP}`,
  options: { ...commonOptions, json: { type: 'boolean' } },
  async run(values, io) {
    requirePrivileges('vmpeer status');
    const report = await statusReport((values.bpffs as string | undefined) ?? DEFAULT_BPFFS_ROOT);
    if (values.json) {
      io.out(JSON.stringify(report, null, 2));
      return 0;
    }
    if (report.attachments.length === 0 && report.endpoints.length === 0) {
      io.out(`vmpeer: nothing attached on this node (state: ${report.root})`);
      return 0;
    }
    io.out('ATTACHMENTS');
    for (const line of table([
      ['PROGRAM', 'HOOK', 'MODE', 'INTERFACE', 'NETNS'],
      ...report.attachments.map((a) => [a.program, a.hook, a.mode, a.ifname, a.netns]),
    ])) io.out(line);
    io.out('');
    io.out('ENDPOINTS');
    for (const line of table([
      ['GUEST IP', 'GUEST MAC', 'HOST VETH', 'ROUTE', 'FIXED', 'REDIRECTED', 'PASSED', 'BYPASSED IN/OUT', 'NETNS', 'PATH'],
      ...report.endpoints.map((e) => [
        e.guestIp,
        e.guestMac,
        e.hostVeth ?? `ifindex ${e.hostIfindex}`,
        e.route === 'agrees' ? 'ok' : `to ${e.routedTo ?? 'nowhere'}`,
        String(e.counters.fixed),
        String(e.counters.redirected),
        String(e.counters.passed),
        e.bypass ? `${e.counters.bypassedIn}/${e.counters.bypassedOut}` : '-',
        e.netns ?? '-',
        e.bridgeKept === null ? 'bridge bypassed' : `bridge kept: ${e.bridgeKept}`,
      ]),
    ])) io.out(line);
    if (report.refused.length > 0) {
      io.out('');
      io.out('REFUSED (a pod claims a guest IP this node routes elsewhere; never written)');
      for (const line of table([
        ['GUEST IP', 'CLAIMED BY', 'ROUTED TO', 'OWNER NETNS'],
        ...report.refused.map((r) => [r.ip, r.netns, r.routedTo ?? 'nowhere', r.ownerNetns ?? '-']),
      ])) io.out(line);
    }
    if (report.uncovered.length > 0) {
      io.out('');
      io.out('UNCOVERED (a VM guest with no endpoint of its pod, e.g. the endpoint table has no slot for it)');
      for (const line of table([['GUEST IP', 'GUEST MAC', 'NETNS'], ...report.uncovered.map((u) => [u.guestIp, u.guestMac, u.netns])])) io.out(line);
    }
    io.out('');
    io.out('FRAMES BY OUTCOME (all programs)');
    io.out(`  ${Object.entries(report.stats).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ') || 'none yet'}`);
    if (report.stale.length > 0) {
      io.out('');
      io.out("STALE (the kernel no longer backs it; 'vmpeer gc' removes it)");
      for (const s of report.stale) io.out(`  ${s.what}: ${s.why}`);
    }
    return 0;
  },
};
