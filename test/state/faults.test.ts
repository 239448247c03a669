/**
 * A vmpeer CLI killed (SIGKILL) at each step of attach and detach: one more
 * `vmpeer attach` leaves exactly the correct state (one program at the hook,
 * one record, the endpoint, every echo answered), and `vmpeer detach` then
 * leaves nothing: no orphan filter, record or endpoint.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { native } from '../../lib/native.js';
import { vmpeer } from '../../lib/testkit/cli.js';
import { exactlyCovered, oneVmLab } from '../helpers/state.js';

/** The steps VMPEER_TEST_KILL_AT names (lib/kill-point.ts), in the order a transaction passes them. */
const ATTACH_STEPS = ['endpoint', 'filter', 'record'];
const DETACH_STEPS = ['detach-filter', 'detach-record', 'detach-endpoint', 'prune'];

test('killed at each step of attach and detach, the next attach repairs the state and detach then leaves nothing', async (t) => {
  t.timeout(180_000);
  const { l, vm, root, node } = await oneVmLab(t);
  const attach = (env = {}) => vmpeer(node, ['attach', '--netns', vm.podNs.name, '--bpffs', root], env);
  const detach = (env = {}) => vmpeer(node, ['detach', '--netns', vm.podNs.name, '--bpffs', root], env);
  const empty = (what: string) => {
    t.deepEqual(native().listHook({ netns: vm.podNs.path, ifname: vm.nic.name, hook: 'ingress' }), [], `${what}: no filter left`);
    t.false(fs.existsSync(path.join(root, 'maps')), `${what}: no state left (${fs.existsSync(root) ? fs.readdirSync(root).join(', ') : 'root gone'})`);
  };

  for (const step of [...ATTACH_STEPS, ...DETACH_STEPS]) {
    if (DETACH_STEPS.includes(step)) t.is((await attach()).code, 0);
    const killed = step.startsWith('detach') || step === 'prune' ? await detach({ VMPEER_TEST_KILL_AT: step }) : await attach({ VMPEER_TEST_KILL_AT: step });
    t.is(killed.code, -1, `${step}: killed there (${killed.stdout}${killed.stderr})`);

    const again = await attach();
    t.is(again.code, 0, `${step}: ${again.stderr}`);
    exactlyCovered(t, root, vm, `after a kill at ${step}`);
    t.is((await l.ping(l.client, vm.podIp, { count: 10, intervalMs: 10 })).received, 10, `${step}: every echo answered`);

    const done = await detach();
    t.is(done.code, 0, `${step}: ${done.stderr}`);
    empty(`after a kill at ${step}`);
  }
});
