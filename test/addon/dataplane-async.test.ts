/**
 * Dataplane.attachAsync: the record it makes is the one the kernel has, a
 * failure leaves no record, and two calls for one hook make one attachment.
 */
import fs from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { Dataplane } from '../../lib/dataplane/dataplane.js';
import { NoSuchInterfaceError } from '../../lib/errors.js';
import type { AttachMode, Hook } from '../../lib/native.js';
import { bpffsDir } from '../helpers/netns.js';
import { addon, pod, TCX } from './common.js';

function open(t: ExecutionContext): Dataplane {
  const dp = Dataplane.open({ root: `${bpffsDir(t)}/vmpeer` });
  t.teardown(() => dp.close());
  return dp;
}

const modes: AttachMode[] = TCX ? ['tcx', 'clsact'] : ['clsact'];

for (const mode of modes) {
  test(`${mode}: attachAsync makes the record of what is at the hook; again, it changes nothing`, async (t) => {
    const dp = open(t);
    const { ns, ifname } = pod(t);
    const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
    const { record, created } = await dp.attachAsync('fixup', target, { mode });
    t.true(created);
    t.like(record, { program: 'fixup', mode, ifname, hook: 'ingress', netnsInode: fs.statSync(ns.path).ino });
    t.true(fs.existsSync(record.pin));
    t.deepEqual(dp.attachments(), [record]);
    t.deepEqual(addon.listHook(target).map((e) => [e.mode, e.progId]), [[mode, dp.program('fixup').id]]);

    t.deepEqual(await dp.attachAsync('fixup', target, { mode }), { record, created: false });
    t.is(addon.listHook(target).length, 1);
    t.true(dp.detach('fixup', target));
    t.deepEqual(addon.listHook(target), []);
  });

  test(`${mode}: two attachAsync at once for one hook make one attachment`, async (t) => {
    const dp = open(t);
    const { ns, ifname } = pod(t);
    const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
    const results = await Promise.all([dp.attachAsync('fixup', target, { mode }), dp.attachAsync('fixup', target, { mode })]);
    t.deepEqual(results.map((r) => r.created).sort(), [false, true]);
    t.is(dp.attachments().length, 1);
    t.is(addon.listHook(target).length, 1);
  });

  test(`${mode}: a failed attachAsync leaves no record`, async (t) => {
    const dp = open(t);
    const { ns } = pod(t);
    await t.throwsAsync(dp.attachAsync('fixup', { netns: ns.path, ifname: 'vptnosuchif', hook: 'ingress' }, { mode }), { instanceOf: NoSuchInterfaceError });
    t.deepEqual(dp.attachments(), []);
  });
}
