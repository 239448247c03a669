/**
 * netnsCookie(): the netns cookie (SO_NETNS_COOKIE) of the namespace an fd
 * holds, read on a thread that enters it. On a kernel before 5.14 (the
 * matrix runs 5.10) there is none: null, for every namespace.
 */
import fs from 'node:fs';
import os from 'node:os';
import test from 'ava';
import { readNetnsId } from '../../lib/dataplane/records.js';
import type { NativeError } from '../../lib/native.js';
import { addon } from './common.js';
import { netns } from '../helpers/netns.js';

const [major = 0, minor = 0] = os.release().split('.').map(Number);
/** SO_NETNS_COOKIE came with Linux 5.14. */
const HAS_COOKIE = major > 5 || (major === 5 && minor >= 14);

const openFds = () => fs.readdirSync('/proc/self/fd').length;

async function cookieOf(file: string): Promise<bigint | null> {
  const fd = fs.openSync(file, 'r');
  try {
    return await addon.netnsCookie(fd);
  } finally {
    fs.closeSync(fd);
  }
}

test.serial(`two namespaces have two cookies, one namespace one cookie${HAS_COOKIE ? '' : ' [no SO_NETNS_COOKIE before 5.14: null]'}`, async (t) => {
  const a = netns(t, 'ck');
  const b = netns(t, 'ck');
  const before = openFds();
  const [a1, a2, b1, self, here] = await Promise.all([cookieOf(a.path), cookieOf(a.path), cookieOf(b.path), cookieOf('/proc/self/ns/net'), addon.netnsCookie(undefined)]);
  if (!HAS_COOKIE) {
    t.deepEqual([a1, a2, b1, self, here], [null, null, null, null, null]);
    return;
  }
  t.is(typeof a1, 'bigint');
  t.is(a1, a2, 'the same netns twice (two fds): one cookie');
  t.not(a1, b1, 'another netns: another cookie');
  t.not(a1, self);
  t.is(here, self, "absent: the caller's netns");
  t.is(openFds(), before, 'no fd left');
});

test.serial('the cookie is the namespace the fd holds, also once its file is gone', async (t) => {
  const ns = netns(t, 'ck');
  const fd = fs.openSync(ns.path, 'r');
  t.teardown(() => fs.closeSync(fd));
  const first = await addon.netnsCookie(fd);
  ns.delete();
  t.is(await addon.netnsCookie(fd), first);
  t.not(first === null ? 'none' : await cookieOf(netns(t, 'ck').path), first ?? 'none', 'a new netns (maybe with the freed inode) has another');
});

test.serial('a bad fd: EBADF; an fd that is no netns: EINVAL (setns); bad arguments: TypeError', async (t) => {
  const closed = fs.openSync('/dev/null', 'r');
  fs.closeSync(closed);
  const bad = (await t.throwsAsync(addon.netnsCookie(closed))) as NativeError;
  t.is(bad.code, 'EBADF');
  t.regex(bad.message, /EBADF/);
  const file = fs.openSync('/dev/null', 'r');
  t.teardown(() => fs.closeSync(file));
  t.like(await t.throwsAsync(addon.netnsCookie(file)), { code: 'EINVAL' });
  t.is((await t.throwsAsync(addon.netnsCookie('x' as unknown as number)))?.name, 'TypeError');
});

test.serial('readNetnsId: inode and cookie of one netns; VMPEER_TEST_NETNS_COOKIE=absent takes the path of a kernel without cookies', async (t) => {
  const ns = netns(t, 'ck');
  const id = await readNetnsId(addon, ns.path);
  t.deepEqual(id, { inode: fs.statSync(ns.path).ino, cookie: await cookieOf(ns.path) });
  process.env.VMPEER_TEST_NETNS_COOKIE = 'absent';
  t.teardown(() => delete process.env.VMPEER_TEST_NETNS_COOKIE);
  t.deepEqual(await readNetnsId(addon, ns.path), { inode: id.inode, cookie: null });
  await t.throwsAsync(readNetnsId(addon, `${ns.path}-gone`), { name: 'UsageError' });
});
