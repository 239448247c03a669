/**
 * A program-only upgrade (the daemon restarted with a rebuilt object: same
 * maps, other instructions) replaces vmpeer's programs in place: the tcx
 * link keeps its id, the clsact filter its handle and priority, and at no
 * moment are two vmpeer programs at the hook. Under 200 echo requests a
 * second, none is lost.
 */
import test from 'ava';
import { TC_HANDLE } from '../../lib/bpf/link.js';
import { pinned } from '../../lib/bpf/fdinfo.js';
import { native, type AttachMode, type HookEntry } from '../../lib/native.js';
import { rebuiltObject, sleep, startDaemon, State } from '../helpers/daemon.js';
import { oneVmLab } from '../helpers/state.js';

const RATE_INTERVAL_MS = process.env.VMTEST_KERNEL ? 50 : 5;
const modes: AttachMode[] = native().kernelFeatures().tcx ? ['clsact', 'tcx'] : ['clsact'];

const ours = (h: HookEntry[]) => h.filter((e) => e.mode === 'tcx' || e.handle === TC_HANDLE);

for (const mode of modes) {
  test(`${mode}: a program-only upgrade replaces fixup in place, never two at the hook, 0 of 200/s lost`, async (t) => {
    t.timeout(120_000);
    const { l, vm, root } = await oneVmLab(t);
    const rebuilt = rebuiltObject(t);
    const base = { nodeNs: l.node.ns.path, root, prefix: `${l.name}-` };
    const first = startDaemon(t, { ...base, args: ['--mode', mode] });
    await first.ready();
    const state = new State(t, root);
    const hook = () => state.hook(vm.podNs.path, vm.nic.name);
    const before = ours(hook());
    t.is(before.length, 1);
    t.deepEqual(await first.kill('SIGTERM'), { code: 0, signal: null });

    const seconds = 4;
    const count = (seconds * 1000) / RATE_INTERVAL_MS;
    const pings = l.ping(l.client, vm.podIp, { count, intervalMs: RATE_INTERVAL_MS, waitS: 2 });
    // watch the hook while the new daemon replaces the program
    let most = 0;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        most = Math.max(most, ours(hook()).length);
        await sleep(1);
      }
    })();
    await sleep(500);
    const second = startDaemon(t, { ...base, args: ['--mode', mode, '--object', rebuilt, '--cleanup-on-exit'] });
    await second.ready();
    const r = await pings;
    watching = false;
    await watcher;

    t.is(r.received, r.transmitted, `${r.transmitted - r.received} of ${r.transmitted} lost`);
    t.is(most, 1, 'never two vmpeer programs at the hook');
    // fixup and, the bridge bypass being the default, from_guest at the guest port
    t.deepEqual(second.changes('upgrade').map((c) => c.program).sort(), ['fixup', 'from_guest']);
    const after = ours(hook());
    t.is(after.length, 1);
    t.not(after[0]!.progId, before[0]!.progId, 'a new program');
    if (mode === 'tcx') t.is(after[0]!.linkId, before[0]!.linkId, 'the same link, its program replaced');
    else t.deepEqual([after[0]!.handle, after[0]!.priority], [before[0]!.handle, before[0]!.priority], 'the same filter, its program replaced');
    const record = state.dp.attachments().find((x) => x.program === 'fixup')!;
    t.is(pinned(native(), record.pin)!.progId, after[0]!.progId, 'the record names the new program');
    t.deepEqual(await second.kill('SIGTERM'), { code: 0, signal: null });
  });
}
