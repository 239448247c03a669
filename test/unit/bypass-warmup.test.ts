/**
 * The bridge bypass's warm-up queue (lib/daemon/bypass-warmup.ts): which pods
 * get their own programs loaded ahead of their check, in what order, how many
 * are held at once, and when the daemon may call itself ready. Its only
 * kernel side is the load, stood in for here; the daemon tests run it for real.
 */
import test from 'ava';
import { BypassWarmup, MAX_HELD } from '../../lib/daemon/bypass-warmup.js';
import { createLogger } from '../../lib/daemon/log.js';
import { newPod, type Pod } from '../../lib/daemon/pod.js';

const turn = () => new Promise((r) => setImmediate(r));

function setup(fail = new Set<number>()) {
  const loaded = new Set<number>();
  const loads: number[] = [];
  const rechecks: number[] = [];
  const released: number[] = [];
  const w = new BypassWarmup({
    dp: {
      podInstanceLoaded: (pod) => loaded.has(pod),
      preloadPodInstance: (pod) => {
        loads.push(pod);
        if (fail.has(pod)) throw new Error('EPERM');
        loaded.add(pod);
        return () => {
          released.push(pod);
          loaded.delete(pod);
        };
      },
    },
    log: createLogger('silent', {}),
    recheck: (pod) => rechecks.push(pod.inode),
    stopping: () => false,
  });
  w.resume();
  return { w, loads, rechecks, released };
}
const pods = (n: number): Pod[] => Array.from({ length: n }, (_, i) => newPod(100 + i, `/run/netns/p${i}`, 'dir'));

test('pods are loaded one per turn of the event loop, in the order they asked, and checked again after their load', async (t) => {
  const { w, loads, rechecks } = setup();
  const [a, b] = pods(2);
  t.false(w.ready(a!));
  w.want(a!);
  w.want(b!);
  w.want(a!); // asked twice: loaded once
  t.deepEqual(loads, [], 'nothing loads inside the check that asked');
  await turn();
  t.deepEqual(loads, [100]);
  await turn();
  t.deepEqual(loads, [100, 101]);
  t.deepEqual(rechecks, [100, 101]);
  t.true(w.ready(a!) && w.ready(b!));
});

test(`at most ${MAX_HELD} loaded instances wait for their checks; each check that attaches one makes room`, async (t) => {
  const { w, loads, released } = setup();
  const all = pods(MAX_HELD + 3);
  for (const p of all) w.want(p);
  for (let i = 0; i < MAX_HELD + 5; i++) await turn();
  t.is(loads.length, MAX_HELD);
  t.is(w.pending, MAX_HELD + 3);
  w.done(all[0]!);
  t.deepEqual(released, [100]);
  for (let i = 0; i < 3; i++) await turn();
  t.is(loads.length, MAX_HELD + 1);
});

test('ready: settled once every pod that waited has had its check, or went', async (t) => {
  const { w } = setup();
  const [a, b] = pods(2);
  let settled = false;
  w.want(a!);
  w.want(b!);
  const s = w.settled().then(() => (settled = true));
  for (let i = 0; i < 4; i++) await turn();
  w.done(a!);
  await turn();
  t.false(settled, 'b still holds its instance');
  b!.gone = true;
  w.done(b!);
  await s;
  t.true(settled);
  t.is(w.pending, 0);
  await w.settled(); // nothing pending: at once
});

test("a load that fails is not retried here: the pod's check loads it itself (and reports its error)", async (t) => {
  const { w, loads, rechecks } = setup(new Set([100]));
  const [a] = pods(1);
  w.want(a!);
  await turn();
  await turn();
  t.deepEqual(loads, [100]);
  t.deepEqual(rechecks, [100]);
  t.true(w.ready(a!), 'the check goes ahead');
  w.want(a!);
  await turn();
  t.deepEqual(loads, [100, 100], 'asked again, tried again');
});

test('nothing loads before resume(): the first full reconcile covers every pod first', async (t) => {
  const loads: number[] = [];
  const w = new BypassWarmup({
    dp: { podInstanceLoaded: () => false, preloadPodInstance: (pod) => (loads.push(pod), () => undefined) },
    log: createLogger('silent', {}),
    recheck: () => undefined,
    stopping: () => false,
  });
  for (const p of pods(3)) w.want(p);
  for (let i = 0; i < 5; i++) await turn();
  t.deepEqual(loads, []);
  w.resume();
  for (let i = 0; i < 5; i++) await turn();
  t.deepEqual(loads, [100, 101, 102]);
});

test('a pod gone before its turn is not loaded', async (t) => {
  const { w, loads } = setup();
  const [a, b] = pods(2);
  w.want(a!);
  w.want(b!);
  a!.gone = true;
  await turn();
  await turn();
  t.deepEqual(loads, [101]);
});
