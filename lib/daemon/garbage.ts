/**
 * Removing what belongs to nobody (each full resync), and everything
 * (--cleanup-on-exit).
 */
import { isPodProgram, type Dataplane } from '../dataplane/dataplane.js';
import { netnsPaths } from '../dataplane/netns-paths.js';
import type { Changes } from './changes.js';
import type { Pod } from './pod.js';

/**
 * Attachments and endpoints of namespaces that no longer exist, or that are
 * not VM pods (or not in the daemon's scope: a CLI's attachment elsewhere).
 * A filter is removed in its netns, found by inode, when that still exists.
 */
export function collectGarbage(dp: Dataplane, pods: ReadonlyMap<number, Pod>, netnsDirs: string[], changes: Changes): void {
  let elsewhere: Map<number, string> | null = null;
  for (const r of dp.attachments()) {
    const pod = pods.get(r.netnsInode);
    if (!isPodProgram(r.program) || (pod && pod.kind !== 'plain')) continue;
    elsewhere ??= pod ? null : netnsPaths(netnsDirs);
    changes.dropRecord(r, pod?.path ?? elsewhere?.get(r.netnsInode) ?? null);
    changes.change('detach', { program: r.program, netns: pod?.path, netnsInode: r.netnsInode, ifname: r.ifname, mode: r.mode }, 'removed attachment', pod ? 'its pod is not a VM pod' : 'its pod no longer exists');
  }
  for (const ep of dp.endpoints()) {
    const pod = ep.podNetns ? pods.get(ep.podNetns) : undefined;
    if (pod && pod.kind !== 'plain') continue; // a VM pod, or one whose check failed: kept
    dp.deleteEndpoint(ep.guestIp);
    changes.change('endpoint_delete', { guestIp: ep.guestIp, netnsInode: ep.podNetns }, 'removed endpoint', pod ? 'its pod is not a VM pod' : 'its pod no longer exists');
  }
}

/** Every attachment and endpoint vmpeer has on the node. */
export function removeEverything(dp: Dataplane, pods: ReadonlyMap<number, Pod>, changes: Changes): void {
  for (const r of dp.attachments()) {
    changes.dropRecord(r, pods.get(r.netnsInode)?.path ?? null);
    changes.change('detach', { program: r.program, ifname: r.ifname, netns: pods.get(r.netnsInode)?.path ?? `inode ${r.netnsInode}` }, `detached ${r.program}`, 'cleanup on exit');
  }
  for (const ep of dp.endpoints()) {
    dp.deleteEndpoint(ep.guestIp);
    changes.change('endpoint_delete', { guestIp: ep.guestIp }, 'removed endpoint', 'cleanup on exit');
  }
}
