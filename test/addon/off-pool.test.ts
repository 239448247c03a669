/**
 * The addon's asynchronous calls never wait on a libuv pool thread (native/
 * async.h): with every pool thread of this process blocked (opening FIFOs
 * nobody writes to), a netlink dump of a netns, a tcx/clsact attach, a netlink
 * subscription (and its events) and a netns cookie still settle. A pool-based
 * call would wait until the FIFOs are released.
 * In a file of its own and one test at a time: blocking the pool stalls every fs call of the process.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type { NetlinkEvent } from '../../lib/native.js';
import { addon, openObject, pod, program } from './common.js';
import { netns } from '../helpers/netns.js';

const POOL_SIZE = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
// not a speed bound: only long enough that a call stuck behind the pool is told apart from a slow one
const STUCK_MS = 30_000;

/** Occupies every libuv pool thread until the test ends. */
function blockPool(t: ExecutionContext): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpt-pool-'));
  const fifos = Array.from({ length: POOL_SIZE }, (_, i) => path.join(dir, `f${i}`));
  for (const f of fifos) if (spawnSync('mkfifo', [f]).status !== 0) throw new Error(`mkfifo ${f} failed`);
  const readers = fifos.map((f) => fs.promises.readFile(f)); // each open() blocks a pool thread
  t.teardown(async () => {
    // a writer that comes and goes: each reader's open() returns, then it reads EOF
    // (non-blocking, so that a reader not yet in open() cannot hang the test: retried)
    for (const f of fifos) {
      for (;;) {
        try {
          fs.closeSync(fs.openSync(f, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENXIO') throw e;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
    }
    await Promise.all(readers);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  // proof that the pool is taken: a pool job queued now does not run until teardown
  return new Promise((resolve) => setTimeout(resolve, 200));
}

async function settles<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle: it waits for a libuv pool thread`)), STUCK_MS);
  });
  try {
    return await Promise.race([p, stuck]);
  } finally {
    clearTimeout(timer);
  }
}

test.serial('the pool is really blocked (the check below would pass vacuously otherwise)', async (t) => {
  await blockPool(t);
  let ran = false;
  void fs.promises.stat('/').then(() => (ran = true));
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.false(ran, 'an fs call ran although every pool thread should be taken');
});

test.serial('netlinkDump settles with every pool thread blocked, in another netns and in this one', async (t) => {
  const ns = netns(t, 'pool');
  await blockPool(t);
  const there = await settles('netlinkDump(netns)', addon.netlinkDump(ns.path, ['links', 'addresses']));
  t.true(there.links!.some((l) => l.ifname === 'lo'));
  const here = await settles('netlinkDump()', addon.netlinkDump(undefined, ['links']));
  t.true(here.links!.some((l) => l.ifname === 'lo'));
});

test.serial('clsactQdiscAsync, attachAsync and detachAsync settle with every pool thread blocked', async (t) => {
  const { ns, ifname } = pod(t);
  const obj = openObject(t);
  await blockPool(t);
  t.deepEqual(await settles('clsactQdiscAsync', addon.clsactQdiscAsync({ netns: ns.path, ifname, create: true })), { present: true, created: true });
  const a = await settles('attachAsync', addon.attachAsync({ netns: ns.path, ifname, hook: 'ingress', mode: 'clsact', progFd: program(obj, 'fixup').fd, handle: 0x766d, priority: 0x7600 }));
  t.is(a.mode, 'clsact');
  t.true(await settles('detachAsync', addon.detachAsync({ netns: ns.path, ifname, hook: 'ingress', mode: 'clsact', handle: 0x766d, priority: 0x7600, progId: a.progId })));
});

test.serial('watchNetlink subscribes (and its events arrive), netnsCookie settles, with every pool thread blocked', async (t) => {
  const ns = netns(t, 'pool');
  await blockPool(t);
  const seen: NetlinkEvent[] = [];
  const id = await settles('watchNetlink(netns)', addon.watchNetlink(ns.path, (b) => seen.push(...b.events)));
  t.teardown(() => addon.unwatchNetlink(id));
  t.true(addon.unwatchNetlink(await settles('watchNetlink()', addon.watchNetlink(undefined, () => undefined))));
  ns.ip('link', 'add', 'pl0', 'type', 'bridge');
  let poll: NodeJS.Timeout | undefined;
  t.teardown(() => clearInterval(poll));
  await settles(
    'the link event',
    new Promise<void>((resolve) => {
      poll = setInterval(() => seen.some((e) => e.kind === 'link' && e.ifname === 'pl0' && !e.deleted) && resolve(), 10);
    }),
  );
  const fd = fs.openSync(ns.path, 'r'); // the pool is blocked, not the JS thread: a sync open still runs
  t.teardown(() => fs.closeSync(fd));
  const cookie = await settles('netnsCookie', addon.netnsCookie(fd));
  t.true(cookie === null || typeof cookie === 'bigint');
});
