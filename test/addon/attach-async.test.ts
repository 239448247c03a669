/**
 * attachAsync / detachAsync: the same work as attach / detach on a thread of
 * their own, settled through a promise. What lands at the hook, what a
 * failure says (the same error as the synchronous call), and many at once
 * into different namespaces.
 */
import fs from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import type { AttachMode, AttachRequest, Hook, NativeError } from '../../lib/native.js';
import { bpffsDir } from '../helpers/netns.js';
import { OBJECT_PATH, addon, closeLater, openObject, pod, program, tcxTest } from './common.js';

const HANDLE = 0x1;
const PRIORITY = 200;

function where(t: ExecutionContext, mode: AttachMode): Partial<AttachRequest> {
  return mode === 'tcx' ? { pinPath: `${bpffsDir(t)}/link` } : { handle: HANDLE, priority: PRIORITY };
}

for (const mode of ['tcx', 'clsact'] as AttachMode[]) {
  (mode === 'tcx' ? tcxTest : test)(`${mode}: attachAsync lands at the hook, detachAsync removes it`, async (t: ExecutionContext) => {
    const { ns, ifname } = pod(t);
    const fixup = program(openObject(t), 'fixup');
    const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
    const at = where(t, mode);

    const pending = addon.attachAsync({ ...target, mode, progFd: fixup.fd, ...at });
    t.true(pending instanceof Promise);
    const a = await pending;
    t.like(a, { mode, ifindex: addon.ifindex(ns.path, ifname), progId: fixup.id });
    t.deepEqual(
      addon.listHook(target),
      [mode === 'tcx' ? { mode, progId: fixup.id, progName: 'fixup', linkId: a.linkId } : { mode, progId: fixup.id, progName: 'fixup', handle: HANDLE, priority: PRIORITY }],
    );
    if (mode === 'tcx') t.true(fs.existsSync(at.pinPath!));

    t.true(await addon.detachAsync({ ...target, mode, progId: fixup.id, ...at }));
    t.deepEqual(addon.listHook(target), []);
    t.false(await addon.detachAsync({ ...target, mode, progId: fixup.id, ...at }), 'nothing left to detach');
  });
}

tcxTest('tcx: attachAsync without pinPath returns the link fd; closing it detaches', async (t) => {
  const { ns, ifname } = pod(t);
  const fixup = program(openObject(t), 'fixup');
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  const a = await addon.attachAsync({ ...target, mode: 'tcx', progFd: fixup.fd });
  t.is(typeof a.linkFd, 'number');
  t.is(addon.listHook(target).length, 1);
  addon.closeFd(a.linkFd!);
  t.deepEqual(addon.listHook(target), []);
});

test('attachAsync keeps working when JS closes the object meanwhile', async (t) => {
  const { ns, ifname } = pod(t);
  const obj = addon.openObject(OBJECT_PATH);
  const fixup = program(obj, 'fixup');
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  const pending = addon.attachAsync({ ...target, mode: 'clsact', progFd: fixup.fd, handle: HANDLE, priority: PRIORITY });
  obj.close();
  t.like(await pending, { progId: fixup.id });
  t.deepEqual(addon.listHook(target).map((e) => e.progId), [fixup.id]);
});

/** What the sync call throws and what the async one rejects with must be the same error. */
async function sameFailure(t: ExecutionContext, request: AttachRequest, expected: Partial<NativeError>): Promise<void> {
  const sync = t.throws(() => addon.attach(request)) as NativeError;
  const async = (await t.throwsAsync(addon.attachAsync(request))) as NativeError;
  t.like(sync, expected);
  for (const field of ['name', 'message', 'code', 'errno', 'op', 'object'] as const) t.is(async[field], sync[field], field);
  t.is(Object.getPrototypeOf(async), Object.getPrototypeOf(sync));
}

for (const mode of ['tcx', 'clsact'] as AttachMode[]) {
  (mode === 'tcx' ? tcxTest : test)(`${mode}: a failed attachAsync rejects as attach throws, and attaches nothing`, async (t: ExecutionContext) => {
    const { ns, ifname } = pod(t);
    const fixup = program(openObject(t), 'fixup');
    const at = where(t, mode);
    const base = { hook: 'ingress' as Hook, mode, progFd: fixup.fd, ...at };

    await sameFailure(t, { ...base, netns: ns.path, ifname: 'vptnosuchif' }, { code: 'ENODEV', op: 'if_nametoindex' });
    await sameFailure(t, { ...base, netns: `${ns.path}-gone`, ifname }, { code: 'ENOENT', op: 'open netns' });
    t.deepEqual(addon.listHook({ netns: ns.path, ifname, hook: 'ingress' }), []);
    if (mode === 'tcx') t.false(fs.existsSync(at.pinPath!), 'no pin left');
  });
}

tcxTest('tcx: attachAsync to a pin that exists rejects EEXIST and adds nothing', async (t) => {
  const { ns, ifname } = pod(t);
  const obj = openObject(t);
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  const pinPath = `${bpffsDir(t)}/link`;
  await addon.attachAsync({ ...target, mode: 'tcx', progFd: program(obj, 'fixup').fd, pinPath });
  const before = addon.listHook(target);
  await sameFailure(t, { ...target, mode: 'tcx', progFd: program(obj, 'redirect').fd, pinPath }, { code: 'EEXIST', op: 'bpf_obj_pin' });
  t.deepEqual(addon.listHook(target), before);
  t.true(await addon.detachAsync({ ...target, mode: 'tcx', pinPath }));
});

test('bad arguments reject (TypeError) rather than throw', async (t) => {
  const bad = { ifname: 42, hook: 'ingress', mode: 'tcx', progFd: 0 } as unknown as AttachRequest;
  let pending: Promise<unknown> | undefined;
  t.notThrows(() => {
    pending = addon.attachAsync(bad);
  });
  await t.throwsAsync(pending!, { instanceOf: TypeError, message: /^attachAsync: / });
  await t.throwsAsync(addon.detachAsync({ ifname: 'x', hook: 'ingress', mode: 'tcx' }), { instanceOf: TypeError, message: /pinPath/ });
});

for (const mode of ['tcx', 'clsact'] as AttachMode[]) {
  (mode === 'tcx' ? tcxTest : test)(`${mode}: 24 attachAsync at once into 24 namespaces all land`, async (t: ExecutionContext) => {
    const fixup = program(openObject(t), 'fixup');
    const pods = Array.from({ length: 24 }, () => pod(t));
    const attachments = await Promise.all(
      pods.map(({ ns, ifname }) =>
        addon.attachAsync({ netns: ns.path, ifname, hook: 'ingress', mode, progFd: fixup.fd, ...(mode === 'clsact' ? { handle: HANDLE, priority: PRIORITY } : {}) }),
      ),
    );
    if (mode === 'tcx') for (const a of attachments) closeLater(t, a.linkFd);
    for (const [i, { ns, ifname }] of pods.entries()) {
      t.is(attachments[i]!.ifindex, addon.ifindex(ns.path, ifname), 'each in its own netns');
      t.deepEqual(
        addon.listHook({ netns: ns.path, ifname, hook: 'ingress' }).map((e) => [e.mode, e.progId]),
        [[mode, fixup.id]],
      );
    }
  });
}
