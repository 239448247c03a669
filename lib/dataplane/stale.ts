/**
 * State that no longer matches the kernel: records whose netns or attachment
 * is gone (a pod deleted without detach: its nsfs inode is reused by the next
 * namespace), endpoints whose pod is gone or whose host ifindex is no longer
 * the pod's veth peer (the next interface may get that index, and redirect
 * would send the guest's frames to it). `vmpeer status` shows it, `vmpeer
 * gc` removes it; the daemon finds the same in its resync.
 */
import { isNativeError, UsageError } from '../errors.js';
import { iproute } from '../discovery/iproute.js';
import type { Native } from '../native.js';
import { netnsInode, type AttachmentRecord, type Dataplane } from './dataplane.js';
import { readNetnsId, type NetnsId } from './records.js';
import { netnsPaths } from './netns-paths.js';
import { recordInKernel } from './verify.js';

export type Stale =
  | { kind: 'record'; record: AttachmentRecord; netns: string | null; why: string }
  | { kind: 'endpoint'; guestIp: string; why: string };

export async function findStale(dp: Dataplane, n: Native, paths: Map<number, string> = netnsPaths()): Promise<Stale[]> {
  const stale: Stale[] = [];
  const self = netnsInode(undefined);
  const ids = new Map<number, Promise<NetnsId | null>>(); // by inode: one cookie read per netns
  for (const record of dp.attachments()) {
    const netns = record.netnsInode === self ? undefined : paths.get(record.netnsInode);
    const id = netns === undefined && record.netnsInode !== self ? null : await idOf(ids, n, record.netnsInode, netns);
    if (id === null) {
      stale.push({ kind: 'record', record, netns: null, why: `its network namespace (inode ${record.netnsInode}) is gone` });
      continue;
    }
    let why: string | null;
    try {
      why = recordInKernel(n, record, { netns, ifname: record.ifname, hook: record.hook }, id);
    } catch (e) {
      if (!isNativeError(e) || e.code !== 'ENODEV') throw e;
      why = `its interface ${record.ifname} is gone`;
    }
    if (why) stale.push({ kind: 'record', record, netns: netns ?? null, why });
  }
  const nodeLinks = new Set((await iproute.links()).map((l) => l.ifindex));
  for (const ep of dp.endpoints()) {
    const netns = ep.podNetns ? paths.get(ep.podNetns) : undefined;
    if (!netns) {
      stale.push({ kind: 'endpoint', guestIp: ep.guestIp, why: `its pod's network namespace (inode ${ep.podNetns ?? 0}) is gone` });
      continue;
    }
    if (ep.hostIfindex === 0) continue;
    const peers = await iproute.links(netns).catch(() => []);
    if (!nodeLinks.has(ep.hostIfindex) || !peers.some((l) => l.link_index === ep.hostIfindex)) {
      stale.push({ kind: 'endpoint', guestIp: ep.guestIp, why: `host ifindex ${ep.hostIfindex} is no longer the veth peer of its pod` });
    }
  }
  return stale;
}

/** The identity of the netns at `netns` (read once per inode); null when it is gone meanwhile. */
function idOf(ids: Map<number, Promise<NetnsId | null>>, n: Native, inode: number, netns: string | undefined): Promise<NetnsId | null> {
  let id = ids.get(inode);
  if (!id) {
    id = readNetnsId(n, netns).catch((e) => {
      if (e instanceof UsageError) return null;
      throw e;
    });
    ids.set(inode, id);
  }
  return id;
}

export function describeStale(s: Stale): string {
  return s.kind === 'record' ? `record ${s.record.program} on ${s.record.ifname} (${s.record.pin}): ${s.why}` : `endpoint ${s.guestIp}: ${s.why}`;
}
