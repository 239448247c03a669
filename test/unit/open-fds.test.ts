/**
 * process_open_fds (lib/daemon/open-fds.ts) counts what a listing of
 * /proc/self/fd counts, from the directory's size on this kernel and by the
 * listing where the size says nothing (before Linux 6.2), and takes the place
 * of prom-client's gauge of the same name in the daemon's registry.
 */
import fs from 'node:fs';
import test from 'ava';
import { DaemonMetrics, type MetricsSource } from '../../lib/daemon/metrics.js';
import { openFds } from '../../lib/daemon/open-fds.js';

const listed = () => fs.readdirSync('/proc/self/fd').length - 1;

test('the count follows files opened and closed, by size and by listing alike', (t) => {
  const before = openFds();
  t.is(before, listed());
  t.is(openFds(0), before);
  const fds = Array.from({ length: 50 }, () => fs.openSync('/dev/null', 'r'));
  try {
    t.is(openFds(), before + 50);
    t.is(openFds(0), before + 50);
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
  t.is(openFds(), before);
});

test("the daemon's registry has one process_open_fds, prom-client's help, the count as value", async (t) => {
  const m = new DaemonMetrics({} as MetricsSource, { version: '0', node: 'n', kernel: 'k', fixupTag: '', redirectTag: '' });
  const text = await m.registry.getSingleMetricAsString('process_open_fds');
  t.regex(text, /^# HELP process_open_fds Number of open file descriptors\.\n# TYPE process_open_fds gauge\nprocess_open_fds \d+$/);
  const value = Number(/(\d+)$/.exec(text)![1]);
  t.true(Math.abs(value - listed()) <= 1, `${value} vs ${listed()}`);
  t.is(m.registry.getMetricsAsArray().filter((x) => (x as unknown as { name: string }).name === 'process_open_fds').length, 1);
});
