/**
 * The per-pod rate limit of checks (lib/daemon/credit.ts): a quiet pod's next
 * event is checked at once, a burst of CHECK_BURST too, then one check per
 * CHECK_EVERY_MS whatever the events say; credit comes back with time.
 */
import test from 'ava';
import { Credit } from '../../lib/daemon/credit.js';
import { CHECK_BURST, CHECK_EVERY_MS } from '../../lib/daemon/pod.js';

test('a burst at once, then one check per interval, and the credit comes back', (t) => {
  const c = new Credit(CHECK_BURST, CHECK_EVERY_MS, 1000);
  for (let i = 0; i < CHECK_BURST; i++) {
    t.is(c.waitMs(1000), 0, `check ${i + 1} of the burst starts at once`);
    c.take(1000);
  }
  t.is(c.waitMs(1000), CHECK_EVERY_MS, 'the burst spent: the next waits a whole interval');
  t.is(c.waitMs(1000 + CHECK_EVERY_MS / 2), CHECK_EVERY_MS / 2);
  t.is(c.waitMs(1000 + CHECK_EVERY_MS), 0);
  c.take(1000 + CHECK_EVERY_MS);
  t.is(c.waitMs(1000 + CHECK_EVERY_MS), CHECK_EVERY_MS, 'sustained: one per interval');
  t.is(c.waitMs(1000 + 100 * CHECK_EVERY_MS), 0, 'quiet for long: credit back');
  for (let i = 0; i < CHECK_BURST; i++) c.take(1000 + 100 * CHECK_EVERY_MS);
  t.true(c.waitMs(1000 + 100 * CHECK_EVERY_MS) > 0, 'refilled to the burst, not beyond');
});

test('a flood of events costs one check per interval: 1 s of them starts at most burst + 1 s / interval checks', (t) => {
  const c = new Credit(CHECK_BURST, CHECK_EVERY_MS, 0);
  let checks = 0;
  for (let now = 0; now < 1000; now++) {
    // an event every ms; a check starts whenever the credit allows
    if (c.waitMs(now) === 0) {
      c.take(now);
      checks++;
    }
  }
  t.is(checks, CHECK_BURST + Math.floor(1000 / CHECK_EVERY_MS) - 1);
});

test('checks that events did not ask for (polls, resyncs) spend credit too, never below nothing', (t) => {
  const c = new Credit(CHECK_BURST, CHECK_EVERY_MS, 0);
  for (let i = 0; i < 10; i++) c.take(0);
  t.is(c.waitMs(0), CHECK_EVERY_MS, 'at most one interval to wait, however many checks ran');
});
