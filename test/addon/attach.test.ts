/**
 * attach / detach / listHook in a throwaway netns, with tcx and with clsact,
 * at ingress and at egress. The addon reports what the kernel says (EEXIST
 * for a second attach, false for nothing to detach); deciding what is
 * idempotent is the TypeScript layer's business.
 */
import fs from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import type { AttachMode, Hook, HookEntry } from '../../lib/native.js';
import { bpffsDir } from '../helpers/netns.js';
import { addon, closeLater, openObject, pod, program, throwsNative, tcxTest } from './common.js';

const HANDLE = 0x1;
const PRIORITY = 200;

for (const mode of ['tcx', 'clsact'] as AttachMode[]) {
  for (const hook of ['ingress', 'egress'] as Hook[]) {
    (mode === 'tcx' ? tcxTest : test)(`${mode} at ${hook}: attach, list, detach`, (t: ExecutionContext) => {
      const { ns, ifname } = pod(t);
      const dir = bpffsDir(t);
      const fixup = program(openObject(t), 'fixup');
      const target = { netns: ns.path, ifname, hook };
      const other = { ...target, hook: (hook === 'ingress' ? 'egress' : 'ingress') as Hook };
      const where = mode === 'tcx' ? { pinPath: `${dir}/link` } : { handle: HANDLE, priority: PRIORITY };

      t.deepEqual(addon.listHook(target), []);
      const a = addon.attach({ ...target, mode, progFd: fixup.fd, ...where });
      t.like(a, { mode, ifindex: addon.ifindex(ns.path, ifname), progId: fixup.id });
      if (mode === 'tcx') {
        t.true(a.linkId! > 0);
        t.is(a.linkFd, undefined, 'pinned: no fd kept');
        t.true(fs.existsSync(`${dir}/link`));
      } else {
        t.like(a, { handle: HANDLE, priority: PRIORITY });
      }

      const expected: HookEntry =
        mode === 'tcx'
          ? { mode, progId: fixup.id, progName: 'fixup', linkId: a.linkId }
          : { mode, progId: fixup.id, progName: 'fixup', handle: HANDLE, priority: PRIORITY };
      t.deepEqual(addon.listHook(target), [expected]);
      t.deepEqual(addon.listHook(other), [], 'the other hook stays empty');

      t.true(addon.detach({ ...target, mode, progId: fixup.id, ...where }));
      t.deepEqual(addon.listHook(target), []);
      t.false(addon.detach({ ...target, mode, progId: fixup.id, ...where }), 'nothing left to detach');
      if (mode === 'tcx') t.false(fs.existsSync(`${dir}/link`), 'the pin is gone');
    });
  }
}

tcxTest('tcx without pinPath returns the link fd; closing it detaches', (t) => {
  const { ns, ifname } = pod(t);
  const fixup = program(openObject(t), 'fixup');
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  const a = addon.attach({ ...target, mode: 'tcx', progFd: fixup.fd });
  t.true(typeof a.linkFd === 'number');
  t.deepEqual(addon.listHook(target), [{ mode: 'tcx', progId: fixup.id, progName: 'fixup', linkId: a.linkId }]);
  addon.closeFd(a.linkFd!);
  t.deepEqual(addon.listHook(target), []);
});

test('clsact without handle and priority: the kernel picks them and reports them', (t) => {
  const { ns, ifname } = pod(t);
  const fixup = program(openObject(t), 'fixup');
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  // `first` is for tcx; under clsact the priority orders filters, and it is ignored.
  const a = addon.attach({ ...target, mode: 'clsact', progFd: fixup.fd, first: true });
  t.true(a.handle! > 0 && a.priority! > 0);
  t.deepEqual(addon.listHook(target), [{ mode: 'clsact', progId: fixup.id, progName: 'fixup', handle: a.handle, priority: a.priority }]);
  t.true(addon.detach({ ...target, mode: 'clsact', handle: a.handle, priority: a.priority }));
});

tcxTest('tcx: a second attach with the same pinPath is EEXIST and adds nothing', (t) => {
  const { ns, ifname } = pod(t);
  const dir = bpffsDir(t);
  const obj = openObject(t);
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  const a = addon.attach({ ...target, mode: 'tcx', progFd: program(obj, 'fixup').fd, pinPath: `${dir}/link` });
  const before = addon.listHook(target);
  const err = throwsNative(t, () => addon.attach({ ...target, mode: 'tcx', progFd: program(obj, 'redirect').fd, pinPath: `${dir}/link` }), {
    code: 'EEXIST',
    errno: 17,
    object: `${ifname} (ingress) in ${ns.path}`,
  });
  t.regex(err.message, new RegExp(`^bpf_obj_pin: EEXIST \\(File exists\\) for ${ifname} \\(ingress\\) in ${ns.path}: `));
  t.deepEqual(addon.listHook(target), before);
  t.true(addon.detach({ ...target, mode: 'tcx', pinPath: `${dir}/link`, progId: a.progId }));
});

tcxTest('tcx: when the link cannot be pinned, it is detached again', (t) => {
  const { ns, ifname } = pod(t);
  const dir = bpffsDir(t);
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  const fd = program(openObject(t), 'fixup').fd;
  throwsNative(t, () => addon.attach({ ...target, mode: 'tcx', progFd: fd, pinPath: `${dir}/no/such/dir/link` }), {
    code: 'ENOENT',
    op: 'bpf_obj_pin',
  });
  throwsNative(t, () => addon.attach({ ...target, mode: 'tcx', progFd: fd, pinPath: '/tmp/vpt-not-bpffs-link' }), {
    code: 'EPERM',
    op: 'bpf_obj_pin',
  });
  t.deepEqual(addon.listHook(target), []);
});

tcxTest('tcx: the kernel refuses the same program twice at one hook (EEXIST)', (t) => {
  const { ns, ifname } = pod(t);
  const fixup = program(openObject(t), 'fixup');
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  closeLater(t, addon.attach({ ...target, mode: 'tcx', progFd: fixup.fd }).linkFd);
  throwsNative(t, () => addon.attach({ ...target, mode: 'tcx', progFd: fixup.fd }), { code: 'EEXIST', op: 'bpf_link_create' });
  t.is(addon.listHook(target).length, 1);
});

test('clsact: a second attach at the same handle and priority is EEXIST and replaces nothing', (t) => {
  const { ns, ifname } = pod(t);
  const obj = openObject(t);
  const fixup = program(obj, 'fixup');
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  const where = { handle: HANDLE, priority: PRIORITY };
  addon.attach({ ...target, mode: 'clsact', progFd: fixup.fd, ...where });
  const err = throwsNative(t, () => addon.attach({ ...target, mode: 'clsact', progFd: program(obj, 'redirect').fd, ...where }), {
    code: 'EEXIST',
    op: 'bpf_tc_attach',
  });
  t.regex(err.log ?? '', /Kernel error message/, 'the kernel says why');
  t.deepEqual(addon.listHook(target), [{ mode: 'clsact', progId: fixup.id, progName: 'fixup', ...where }]);
});

test('clsact: detach with another progId refuses (EBUSY) and leaves the filter', (t) => {
  const { ns, ifname } = pod(t);
  const obj = openObject(t);
  const fixup = program(obj, 'fixup');
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  const where = { handle: HANDLE, priority: PRIORITY };
  addon.attach({ ...target, mode: 'clsact', progFd: fixup.fd, ...where });
  const err = throwsNative(t, () => addon.detach({ ...target, mode: 'clsact', progId: program(obj, 'redirect').id, ...where }), {
    code: 'EBUSY',
    op: 'bpf_tc_detach',
  });
  t.regex(err.message, /foreign filter/);
  t.deepEqual(addon.listHook(target), [{ mode: 'clsact', progId: fixup.id, progName: 'fixup', ...where }]);
});

tcxTest('tcx: detach with another progId refuses (EBUSY) and leaves the link and its pin', (t) => {
  const { ns, ifname } = pod(t);
  const dir = bpffsDir(t);
  const obj = openObject(t);
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  const a = addon.attach({ ...target, mode: 'tcx', progFd: program(obj, 'fixup').fd, pinPath: `${dir}/link` });
  throwsNative(t, () => addon.detach({ ...target, mode: 'tcx', pinPath: `${dir}/link`, progId: program(obj, 'redirect').id }), {
    code: 'EBUSY',
  });
  t.is(addon.listHook(target).length, 1);
  t.true(fs.existsSync(`${dir}/link`));
  t.true(addon.detach({ ...target, mode: 'tcx', pinPath: `${dir}/link`, progId: a.progId }));
});

tcxTest('tcx: detach at the wrong hook refuses (EINVAL) and leaves the link', (t) => {
  const { ns, ifname } = pod(t);
  const dir = bpffsDir(t);
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  addon.attach({ ...target, mode: 'tcx', progFd: program(openObject(t), 'fixup').fd, pinPath: `${dir}/link` });
  throwsNative(t, () => addon.detach({ ...target, hook: 'egress', mode: 'tcx', pinPath: `${dir}/link` }), { code: 'EINVAL' });
  t.is(addon.listHook(target).length, 1);
  t.true(addon.detach({ ...target, mode: 'tcx', pinPath: `${dir}/link` }));
});

tcxTest('tcx: detach works from the pin alone once the netns is gone', (t) => {
  const { ns, ifname } = pod(t);
  const dir = bpffsDir(t);
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  addon.attach({ ...target, mode: 'tcx', progFd: program(openObject(t), 'fixup').fd, pinPath: `${dir}/link` });
  ns.delete();
  t.true(addon.detach({ ...target, mode: 'tcx', pinPath: `${dir}/link` }));
  t.false(fs.existsSync(`${dir}/link`));
});

tcxTest('tcx: detach leaves foreign links in place and in order', (t) => {
  const { ns, ifname } = pod(t);
  const dir = bpffsDir(t);
  const ours = openObject(t);
  const foreign = openObject(t); // other program ids: the kernel refuses one program twice at a hook
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };

  const a = addon.attach({ ...target, mode: 'tcx', progFd: program(foreign, 'fixup').fd });
  closeLater(t, a.linkFd);
  const mine = addon.attach({ ...target, mode: 'tcx', progFd: program(ours, 'fixup').fd, pinPath: `${dir}/link` });
  const b = addon.attach({ ...target, mode: 'tcx', progFd: program(foreign, 'redirect').fd });
  closeLater(t, b.linkFd);
  const c = addon.attach({ ...target, mode: 'tcx', progFd: program(ours, 'redirect').fd, first: true });
  closeLater(t, c.linkFd);

  const links = () => addon.listHook(target).map((e) => e.linkId);
  t.deepEqual(links(), [c.linkId, a.linkId, mine.linkId, b.linkId], 'first: before all; otherwise after all');
  t.true(addon.detach({ ...target, mode: 'tcx', pinPath: `${dir}/link`, progId: mine.progId }));
  t.deepEqual(links(), [c.linkId, a.linkId, b.linkId]);
});

test('clsact: detach leaves foreign filters (ours and tc\'s) in place and in order', (t) => {
  const { ns, ifname } = pod(t);
  const dir = bpffsDir(t);
  const ours = openObject(t);
  const foreign = openObject(t);
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };

  // Filters made by tc itself, from a pinned program.
  addon.objPin(program(foreign, 'redirect').fd, `${dir}/foreign`);
  addon.attach({ ...target, mode: 'clsact', progFd: program(ours, 'fixup').fd, handle: HANDLE, priority: PRIORITY });
  ns.run('tc', ['filter', 'add', 'dev', ifname, 'ingress', 'pref', '100', 'handle', '7', 'bpf', 'da', 'object-pinned', `${dir}/foreign`]);
  ns.run('tc', ['filter', 'add', 'dev', ifname, 'ingress', 'pref', '300', 'handle', '1', 'bpf', 'da', 'object-pinned', `${dir}/foreign`]);
  // One more at our priority: within a priority the newest filter runs first.
  addon.attach({ ...target, mode: 'clsact', progFd: program(foreign, 'fixup').fd, handle: 2, priority: PRIORITY });

  const at = () => addon.listHook(target).map((e) => `${e.priority}/${e.handle}:${e.progId}`);
  const redirectId = program(foreign, 'redirect').id;
  t.deepEqual(at(), [
    `100/7:${redirectId}`,
    `${PRIORITY}/2:${program(foreign, 'fixup').id}`,
    `${PRIORITY}/${HANDLE}:${program(ours, 'fixup').id}`,
    `300/1:${redirectId}`,
  ]);
  t.true(addon.detach({ ...target, mode: 'clsact', handle: HANDLE, priority: PRIORITY, progId: program(ours, 'fixup').id }));
  t.deepEqual(at(), [`100/7:${redirectId}`, `${PRIORITY}/2:${program(foreign, 'fixup').id}`, `300/1:${redirectId}`]);
  t.regex(ns.run('tc', ['qdisc', 'show', 'dev', ifname]), /clsact/, 'the qdisc stays');
});

test('clsact: an interface without the clsact qdisc lists nothing and detaches nothing', (t) => {
  const { ns, ifname } = pod(t);
  const target = { netns: ns.path, ifname, hook: 'egress' as Hook };
  t.deepEqual(addon.listHook(target), []);
  t.false(addon.detach({ ...target, mode: 'clsact', handle: HANDLE, priority: PRIORITY }));
  t.notRegex(ns.run('tc', ['qdisc', 'show', 'dev', ifname]), /clsact/, 'nothing created either');
});

test('clsactQdisc: absent, made on request (once), present after a clsact attach; ENODEV for no interface', async (t) => {
  const { ns, ifname, peer } = pod(t);
  t.deepEqual(addon.clsactQdisc({ netns: ns.path, ifname }), { present: false, created: false });
  t.notRegex(ns.run('tc', ['qdisc', 'show', 'dev', ifname]), /clsact/, 'asking makes nothing');
  t.deepEqual(await addon.clsactQdiscAsync({ netns: ns.path, ifname, create: true }), { present: true, created: true });
  t.regex(ns.run('tc', ['qdisc', 'show', 'dev', ifname]), /qdisc clsact ffff: .*parent ffff:fff1/);
  t.deepEqual(addon.clsactQdisc({ netns: ns.path, ifname, create: true }), { present: true, created: false }, 'made once');
  t.deepEqual(addon.clsactQdisc({ netns: ns.path, ifname: peer }), { present: false, created: false }, "another interface's is not this one's");
  addon.attach({ netns: ns.path, ifname: peer, hook: 'egress', mode: 'clsact', progFd: program(openObject(t), 'fixup').fd, handle: HANDLE, priority: PRIORITY });
  t.true((await addon.clsactQdiscAsync({ netns: ns.path, ifname: peer })).present, 'made by the attach');
  throwsNative(t, () => addon.clsactQdisc({ netns: ns.path, ifname: 'vpt-none' }), { code: 'ENODEV' });
});

test('attach and detach refuse incomplete requests with TypeErrors', (t) => {
  const { ns, ifname } = pod(t);
  const fd = program(openObject(t), 'fixup').fd;
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  throwsNative(t, () => addon.attach({ ...target, mode: 'bogus' as AttachMode, progFd: fd }), { typeError: true, op: 'attach' });
  throwsNative(t, () => addon.attach({ ...target, hook: 'sideways' as Hook, mode: 'clsact', progFd: fd }), { typeError: true });
  throwsNative(t, () => addon.attach({ ...target, mode: 'clsact', progFd: fd, priority: 70000 }), { typeError: true });
  throwsNative(t, () => addon.attach({ ...target, mode: 'clsact', progFd: fd, pinPath: '/sys/fs/bpf/x' }), { typeError: true });
  throwsNative(t, () => addon.attach({ ...target, mode: 'tcx', progFd: fd, handle: 1, priority: 1 }), { typeError: true });
  throwsNative(t, () => addon.detach({ ...target, mode: 'tcx' }), { typeError: true, op: 'detach' });
  throwsNative(t, () => addon.detach({ ...target, mode: 'clsact', handle: 1 }), { typeError: true });
  t.deepEqual(addon.listHook(target), []);
});
