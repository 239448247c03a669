/**
 * The tracker's index of pods by host veth (lib/daemon/tracking.ts): what a
 * node neighbour event and ownerOf look up instead of scanning every pod. It
 * follows each check's reading of a pod, and a pod that is gone leaves it.
 * No kernel side: the netns sources and the endpoint table are stand-ins.
 */
import test from 'ava';
import { pino } from 'pino';
import type { Dataplane } from '../../lib/dataplane/dataplane.js';
import type { Pod } from '../../lib/daemon/pod.js';
import type { NetnsEntry, NetnsSources } from '../../lib/daemon/sources.js';
import { PodTracker } from '../../lib/daemon/tracking.js';

function tracker(endpoints: Record<string, number> = {}) {
  const found = new Map<number, NetnsEntry>();
  const sources = { scan: () => ({ found: new Map(found), unsettled: 0 }) } as unknown as NetnsSources;
  const dp = { endpoint: (ip: string) => (ip in endpoints ? { podNetns: endpoints[ip] } : null) } as unknown as Dataplane;
  const removed: number[] = [];
  const t = new PodTracker(sources, dp, pino({ level: 'silent' }), { added: () => undefined, moved: () => undefined, removed: (p) => removed.push(p.inode) }, () => false);
  const add = (inode: number): Pod => {
    found.set(inode, { inode, path: `/run/netns/p${inode}`, via: 'dir' });
    t.syncSources();
    return t.pods.get(inode)!;
  };
  const drop = (inode: number) => {
    found.delete(inode);
    t.syncSources();
  };
  return { t, add, drop, removed };
}

const names = (set: Iterable<Pod>) => [...set].map((p) => p.inode).sort();

test('a pod is found behind the host veths its last check saw, and only those', (t) => {
  const { t: tr, add } = tracker();
  const a = add(1);
  const b = add(2);
  tr.setHostVeths(a, ['cali1', 'cali1b']);
  tr.setHostVeths(b, ['cali2']);
  t.deepEqual(names(tr.behindHostVeth('cali1')), [1]);
  t.deepEqual(names(tr.behindHostVeth('cali1b')), [1]);
  t.deepEqual(names(tr.behindHostVeth('cali2')), [2]);
  t.deepEqual(names(tr.behindHostVeth('cali3')), []);
  // the next check sees another host veth: the old name no longer leads to it
  tr.setHostVeths(a, ['cali3']);
  t.deepEqual(names(tr.behindHostVeth('cali1')), []);
  t.deepEqual(names(tr.behindHostVeth('cali3')), [1]);
  t.deepEqual([...a.hostIfnames], ['cali3']);
  // two pods that both claim a name (one is stale): both are found, the event checks both
  tr.setHostVeths(b, ['cali2', 'cali3']);
  t.deepEqual(names(tr.behindHostVeth('cali3')), [1, 2]);
  tr.setHostVeths(a, []);
  t.deepEqual(names(tr.behindHostVeth('cali3')), [2]);
});

test('a pod that is gone leaves the index, and is nobody\'s owner', (t) => {
  const { t: tr, add, drop, removed } = tracker({ '10.0.0.9': 2 });
  const a = add(1);
  const b = add(2);
  tr.setHostVeths(a, ['cali1']);
  tr.setHostVeths(b, ['cali2']);
  t.is(tr.ownerOf('cali1', '10.0.0.1'), a);
  t.is(tr.ownerOf(null, '10.0.0.9'), b, 'no host veth: the pod holding the endpoint');
  t.is(tr.ownerOf('cali-none', '10.0.0.9'), b);
  drop(1);
  t.deepEqual(removed, [1]);
  t.deepEqual(names(tr.behindHostVeth('cali1')), []);
  t.is(tr.ownerOf('cali1', '10.0.0.1'), null);
  drop(2);
  t.is(tr.ownerOf(null, '10.0.0.9'), null, 'the endpoint still names it, but it is gone');
  // a check that finishes after the pod went (its reading arrives late) does not put it back
  tr.setHostVeths(b, ['cali2']);
  t.deepEqual(names(tr.behindHostVeth('cali2')), []);
});
