/**
 * The daemon's reading of its attachment records (lib/daemon/changes.ts):
 * listed once, kept up to date by the changes that make or drop records,
 * kept by those that leave them as they were (an upgrade swaps the program
 * behind the same pin), and listed again after any other change or an
 * invalidate(). At 1000 VM pods a listing is 2000 pins: a new pod's check
 * must not pay for one. No kernel side: the dataplane is a stand-in, and the
 * record dropped is a file in a temp dir.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { pino } from 'pino';
import type { AttachmentRecord, Dataplane } from '../../lib/dataplane/dataplane.js';
import { Changes } from '../../lib/daemon/changes.js';
import type { Native } from '../../lib/native.js';

function changes(t: import('ava').ExecutionContext) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpt-records-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const record = (n: number): AttachmentRecord => {
    const pin = path.join(dir, `fixup_ns${n}`);
    fs.writeFileSync(pin, '');
    return { program: 'fixup', mode: 'clsact', hook: 'ingress', ifname: 'eth0-nic', netnsInode: n, netnsCookie: null, pin } as AttachmentRecord;
  };
  const onDisk = [record(1), record(2)];
  let listings = 0;
  const dp = { attachments: () => (listings++, [...onDisk]) } as unknown as Dataplane;
  // the pods' netns are gone (no path): dropping a record removes its pin only
  const c = new Changes({ dp, native: {} as Native, log: pino({ level: 'silent' }), selfInode: 0, metrics: () => null });
  return { c, record, onDisk, listings: () => listings };
}

test('the records are listed once; the changes a check makes keep the reading up to date', (t) => {
  const { c, record, onDisk, listings } = changes(t);
  t.deepEqual(c.recordsOf(1).map((r) => r.netnsInode), [1]);
  t.deepEqual(c.recordsOf(2).map((r) => r.netnsInode), [2]);
  t.is(listings(), 1);
  for (const action of ['endpoint_add', 'endpoint_update', 'endpoint_delete', 'upgrade']) c.change(action, {}, action, 'test');
  const made = record(3);
  onDisk.push(made);
  c.recordAdded(made);
  c.change('attach', {}, 'attached', 'test');
  t.deepEqual(c.recordsOf(3), [made]);
  const dropped = onDisk.shift()!;
  c.dropRecord(dropped, null);
  c.change('detach', {}, 'detached', 'test');
  t.false(fs.existsSync(dropped.pin));
  t.deepEqual(c.recordsOf(1), []);
  c.change('drop_stale', {}, 'dropped', 'test');
  t.deepEqual(c.records().map((r) => r.netnsInode), [2, 3]);
  t.is(listings(), 1, 'no listing after changes that keep the reading');
});

test('any other change, or invalidate(), lists them again', (t) => {
  const { c, listings } = changes(t);
  c.records();
  c.change('something_new', {}, 'something new', 'test');
  c.records();
  t.is(listings(), 2);
  c.invalidate();
  c.records();
  t.is(listings(), 3);
});
