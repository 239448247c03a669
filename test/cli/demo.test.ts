/** `vmpeer demo` (what `npm run demo` runs) shows fault, fix, fault, and leaves nothing behind. */
import test from 'ava';
import fs from 'node:fs';
import { vmpeer } from '../../lib/testkit/cli.js';

test('the demo passes every step and cleans up', async (t) => {
  t.timeout(120_000);
  const started = Date.now();
  const r = await vmpeer(undefined, ['demo']);
  t.is(r.code, 0, `${r.stdout}\n${r.stderr}`);
  t.regex(r.stdout, /ping VM: 1 of 10 replies\s+✓ the fault/);
  t.regex(r.stdout, /attached fixup on eth0-nic \(ingress\)/);
  t.regex(r.stdout, /ping VM: 10 of 10 replies\s+✓ fixed/);
  t.regex(r.stdout, /1 MiB to VM: arrived intact/);
  t.regex(r.stdout, /ping VM: 1 of 10 replies\s+✓ the fault is back/);
  t.regex(r.stdout, /Every step behaved as expected\./);
  t.notRegex(r.stdout, /✗/);
  t.true(Date.now() - started < 60_000, 'under a minute');
  const lab = /\/var\/run\/netns\/(vpl[0-9a-f-]+?)-vm0/.exec(r.stdout)?.[1];
  t.truthy(lab, 'the demo names its lab');
  t.deepEqual(fs.readdirSync('/var/run/netns').filter((n) => n.startsWith(lab!)), [], 'no netns left');
  t.deepEqual(fs.readdirSync('/sys/fs/bpf').filter((n) => n.startsWith('vmpeer-demo-')), [], 'no bpffs state left');
});
