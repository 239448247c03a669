/**
 * vmpeer processes racing each other: every change happens under the node
 * lock, so each process ends with exit 0 or says cleanly that it lost, and
 * afterwards the pod has exactly one attachment, one record and its endpoint.
 */
import test from 'ava';
import { announce, DynamicPods } from '../../lib/lab/dynamic.js';
import { native } from '../../lib/native.js';
import { vmpeer, type CliResult } from '../../lib/testkit/cli.js';
import { startDaemon, State, until } from '../helpers/daemon.js';
import { exactlyCovered, oneVmLab } from '../helpers/state.js';

const PAIRS = 50;
const NEW_PODS = 3;
const ROUNDS = 2;

function lostCleanly(r: CliResult): boolean {
  return r.code === 0 || (r.code === 1 && /vmpeer daemon \(pid \d+\) manages the state/.test(r.stderr) && !/\n\s+at /.test(r.stderr));
}

test(`${PAIRS} pairs of concurrent attaches of one pod: both exit 0, one attachment, one record, the endpoint`, async (t) => {
  t.timeout(180_000);
  const { l, vm, root, node } = await oneVmLab(t);
  const t0 = Date.now();
  for (let i = 0; i < PAIRS; i++) {
    const pair = await Promise.all([0, 1].map(() => vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root])));
    for (const r of pair) t.is(r.code, 0, `pair ${i}: ${r.stdout}${r.stderr}`);
    t.is(pair.filter((r) => /^attached fixup/m.test(r.stdout)).length, 1, `pair ${i}: one of them attached`);
    t.is(pair.filter((r) => /already attached/.test(r.stdout)).length, 1, `pair ${i}: the other found it attached`);
    exactlyCovered(t, root, vm, `pair ${i}`);
    const detach = await vmpeer(node, ['detach', '--netns', vm.podNs.name, '--bpffs', root]);
    t.is(detach.code, 0, detach.stderr);
  }
  t.log(`${PAIRS} pairs in ${Date.now() - t0} ms`);
  t.deepEqual(native().listHook({ netns: vm.podNs.path, ifname: vm.nic.name, hook: 'ingress' }), []);
});

test('a CLI attach racing the daemon (at its start, and on a new pod): each exits 0 or says it lost; one attachment, one record, the endpoint', async (t) => {
  t.timeout(120_000);
  const { l, vm, root, node } = await oneVmLab(t);
  const pods = new DynamicPods(l);
  for (let round = 0; round < ROUNDS; round++) {
    // the daemon's start and the CLI's attach overlap
    const cli = vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root]);
    const d = startDaemon(t, { nodeNs: node, root, prefix: `${l.name}-`, args: ['--cleanup-on-exit'] });
    const r = await cli;
    t.true(lostCleanly(r), `round ${round}: ${r.code} ${r.stdout}${r.stderr}`);
    await d.ready();
    exactlyCovered(t, root, vm, `round ${round} (the CLI ${r.code === 0 ? 'won' : 'lost'})`);

    // new pods, each seen by the daemon and attached by a CLI at the same time
    for (let i = 0; i < NEW_PODS; i++) {
      const pod = await pods.add({ announce: false });
      const [late] = await Promise.all([vmpeer(node, ['attach', '--netns', pod.podNs.name, '--bpffs', root]), announce(pod)]);
      t.true(lostCleanly(late), `round ${round}, new pod ${i}: ${late.code} ${late.stdout}${late.stderr}`);
      const state = new State(t, root);
      await until(() => state.covered(pod), 10_000, 50).catch(() => null);
      state.dp.close();
      exactlyCovered(t, root, pod, `round ${round}, new pod ${i}`);
    }
    t.deepEqual(await d.kill('SIGTERM'), { code: 0, signal: null });
    for (const pod of pods.pods) await pods.remove(pod);
  }
});
