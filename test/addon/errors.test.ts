/** Errors from the netns side, ifindex(), and the kernel feature probe. */
import os from 'node:os';
import test from 'ava';
import type { Hook } from '../../lib/native.js';
import { netns } from '../helpers/netns.js';
import { addon, openObject, pod, program, throwsNative } from './common.js';

test('a missing interface is ENODEV from if_nametoindex', (t) => {
  const ns = netns(t);
  const fd = program(openObject(t), 'fixup').fd;
  const target = { netns: ns.path, ifname: 'vptmissing0', hook: 'ingress' as Hook };
  const expected = { code: 'ENODEV', errno: 19, op: 'if_nametoindex', object: `vptmissing0 (ingress) in ${ns.path}` };
  const err = throwsNative(t, () => addon.attach({ ...target, mode: 'tcx', progFd: fd }), expected);
  t.is(err.message, `if_nametoindex: ENODEV (No such device) for vptmissing0 (ingress) in ${ns.path}`);
  throwsNative(t, () => addon.attach({ ...target, mode: 'clsact', progFd: fd }), expected);
  throwsNative(t, () => addon.listHook(target), expected);
  throwsNative(t, () => addon.detach({ ...target, mode: 'clsact', handle: 1, priority: 1 }), expected);
});

test('a missing netns path is ENOENT from "open netns"', (t) => {
  const path = '/var/run/netns/vpt-does-not-exist';
  const fd = program(openObject(t), 'fixup').fd;
  const target = { netns: path, ifname: 'eth0', hook: 'egress' as Hook };
  const expected = { code: 'ENOENT', errno: 2, op: 'open netns', object: path };
  throwsNative(t, () => addon.attach({ ...target, mode: 'tcx', progFd: fd }), expected);
  throwsNative(t, () => addon.listHook(target), expected);
  throwsNative(t, () => addon.detach({ ...target, mode: 'clsact', handle: 1, priority: 1 }), expected);
  throwsNative(t, () => addon.ifindex(path, 'lo'), expected);
});

test('a file that is not a netns is EINVAL from setns', (t) => {
  throwsNative(t, () => addon.ifindex('/etc/hostname', 'lo'), { code: 'EINVAL', op: 'setns', object: '/etc/hostname' });
});

test('ifindex resolves inside the netns, 0 when absent', (t) => {
  const { ns, ifname, peer } = pod(t);
  t.is(addon.ifindex(ns.path, 'lo'), 1);
  const inside = Number(/^(\d+):/.exec(ns.ip('-o', 'link', 'show', ifname))?.[1]);
  t.is(addon.ifindex(ns.path, ifname), inside);
  t.true(addon.ifindex(ns.path, peer) > 0);
  t.is(addon.ifindex(ns.path, 'vptmissing0'), 0);
  t.is(addon.ifindex(undefined, ifname), 0, 'not in the caller\'s netns');
  t.is(addon.ifindex(undefined, 'lo'), 1);
});

test('the netns threads leave the caller in its own netns', (t) => {
  const { ns, ifname } = pod(t);
  const target = { netns: ns.path, ifname, hook: 'ingress' as Hook };
  for (let i = 0; i < 20; i++) addon.listHook(target);
  t.is(addon.ifindex(undefined, ifname), 0);
  throwsNative(t, () => addon.listHook({ ifname, hook: 'ingress' }), { code: 'ENODEV' });
});

test('kernelFeatures: bpf_redirect_peer, and tcx from Linux 6.6', (t) => {
  const [major = 0, minor = 0] = os.release().split('.').map((x) => parseInt(x, 10));
  t.deepEqual(addon.kernelFeatures(), { tcx: major > 6 || (major === 6 && minor >= 6), redirectPeer: true });
});
