/**
 * Table pressure is visible: VMPEER_PROBES endpoints whose IPs share a guest's
 * home slot leave no slot for that guest. (Which IPs do depends on the node's
 * hash key, which only root can read: the test reads it, as such an attacker
 * would have to; test/bpf/endpoint-table.test.ts shows other keys spread them.)
 * The daemon then reports the pod as uncovered (log, vmpeer_pods{state=
 * "uncovered"}, `status`), never as covered, and does not fail its checks
 * over it. fixup stays attached at the pod: with no endpoint for the guest it
 * passes every frame unchanged (counted PASS_UNKNOWN), which the test shows.
 */
import test from 'ava';
import { announce } from '../../lib/lab/dynamic.js';
import { encodeKey } from '../../lib/dataplane/codec.js';
import { Dataplane } from '../../lib/dataplane/dataplane.js';
import { slotOf } from '../../lib/dataplane/endpoint-table.js';
import { HASH_KEY, PROBES } from '../../lib/dataplane/layout.js';
import { native } from '../../lib/native.js';
import { vmpeer } from '../../lib/testkit/cli.js';
import { inodeOf, metric, startDaemon, State } from '../helpers/daemon.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';

/** The hash key of the state under `root`. */
function nodeKey(root: string): Buffer {
  const n = native();
  const fd = n.objGet(`${root}/maps/hash_key`);
  try {
    return n.mapLookup(fd, Buffer.alloc(4), HASH_KEY.size)!;
  } finally {
    n.closeFd(fd);
  }
}

/** PROBES addresses outside the lab's pod CIDR whose home slot under `key` is `ip`'s. */
function colliding(ip: string, key: Buffer): string[] {
  const home = slotOf(encodeKey(ip), key);
  const out: string[] = [];
  for (let i = 1; out.length < PROBES; i++) {
    const candidate = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    if (slotOf(encodeKey(candidate), key) === home) out.push(candidate);
  }
  return out;
}

test(`${PROBES} colliding endpoints + victim: the victim is reported uncovered, nothing claims it is covered`, async (t) => {
  const l = await lab(t, { vmPods: 2, plainPods: 0 });
  for (const vm of l.vms) await announce(vm);
  const [victim, other] = [l.vms[0]!, l.vms[1]!];
  const root = `${bpffsDir(t)}/vmpeer`;

  // another VM pod's endpoints fill every slot the victim's IP can live in
  const fill = Dataplane.open({ root });
  const fillers = colliding(victim.podIp, nodeKey(root));
  for (const ip of fillers) {
    fill.setEndpoint({ guestIp: ip, guestMac: other.guestMac, gatewayMac: other.hostVeth.mac, hostIfindex: other.hostVeth.ifindex, redirect: true, podNetns: inodeOf(other.podNs.path)! });
  }
  fill.close();

  const d = startDaemon(t, { nodeNs: l.node.ns.path, root, prefix: `${l.name}-`, args: ['--cleanup-on-exit'] });
  await d.ready();
  const state = new State(t, root);
  await d.waitLog((x) => x.msg === 'VM pod uncovered: its endpoint cannot be written' && x.netns === victim.podNs.path);
  t.is(state.dp.endpoint(victim.podIp), null);
  t.true(state.covered(other), 'the other VM pod is covered');
  t.false(d.changes().some((c) => (c.change === 'endpoint_add' || c.change === 'endpoint_update') && c.guestIp === victim.podIp));

  const m = (await d.http('/metrics')).body;
  t.is(metric(m, 'vmpeer_pods', { state: 'uncovered' }), 1);
  t.is(metric(m, 'vmpeer_pods', { state: 'vm' }), 1, 'only the other VM pod counts as covered');
  t.false(d.logs.some((x) => x.msg === 'pod check failed'), 'a full table is a state, not a failing check retried forever');

  const status = JSON.parse((await vmpeer(l.node.ns.path, ['status', '--json', '--bpffs', root])).stdout);
  // (other labs running at the same time have VM pods of their own under /var/run/netns)
  const ours = (status.uncovered as Array<{ netns: string }>).filter((u) => u.netns.startsWith(`/var/run/netns/${l.name}-`));
  t.deepEqual(ours, [{ netns: victim.podNs.path, guestIp: victim.podIp, guestMac: victim.guestMac }]);
  const text = (await vmpeer(l.node.ns.path, ['status', '--bpffs', root])).stdout;
  t.regex(text, new RegExp(`UNCOVERED[^]*\\n +${victim.podIp.replace(/\./g, '\\.')} +${victim.guestMac} +${victim.podNs.path}\\n`));

  // fixup with no endpoint is harmless: the victim's frames pass through it unchanged
  const before = state.dp.stats().passUnknown;
  t.is((await l.ping(l.node, victim.podIp, { count: 5, intervalMs: 20 })).received, 5, 'the kernel path still reaches the victim');
  t.true(state.dp.stats().passUnknown >= before + 5n, 'fixup passed them, unknown');
  t.deepEqual(await d.kill('SIGTERM'), { code: 0, signal: null });
});
