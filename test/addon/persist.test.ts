/**
 * A pinned tcx link outlives the process that made it: a child process loads
 * the object (maps pinned in a bpffs dir), attaches `fixup` with a pinned
 * link and exits; the program must still be at the hook and still count
 * frames sent across a veth pair between two netns.
 */
import { spawnSync } from 'node:child_process';
import test from 'ava';
import type { Attachment, Hook } from '../../lib/native.js';
import { bpffsDir, netns, uniqueName, veth } from '../helpers/netns.js';
import { OBJECT_PATH, STAT_PASS_NOT_UNICAST, STAT_PASS_UNKNOWN, addon, statSlot, tcxTest } from './common.js';

/** Runs in the child: attach and exit without cleaning up. */
const CHILD = `
import { native } from ${JSON.stringify(new URL('../../lib/native.js', import.meta.url).href)};
const [object, dir, netns, ifname] = process.argv.slice(1);
const addon = native();
const obj = addon.openObject(object, { pinMapsIn: dir });
const fixup = obj.programs.find((p) => p.name === 'fixup');
const attachment = addon.attach({ netns, ifname, hook: 'ingress', mode: 'tcx', progFd: fixup.fd, pinPath: dir + '/link' });
obj.close();
process.stdout.write(JSON.stringify(attachment));
`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

tcxTest('a pinned tcx link keeps processing frames after its process exits', async (t) => {
  // TEST-NET-1 addresses, on a veth pair between two namespaces of our own.
  const client = netns(t, 'c');
  const podNs = netns(t, 'p');
  const [clientIf, podIf] = [uniqueName('c'), uniqueName('p')];
  veth(t, { ns: client, name: clientIf }, { ns: podNs, name: podIf });
  client.ip('addr', 'add', '192.0.2.1/24', 'dev', clientIf);
  podNs.ip('addr', 'add', '192.0.2.2/24', 'dev', podIf);
  const dir = bpffsDir(t);
  const target = { netns: podNs.path, ifname: podIf, hook: 'ingress' as Hook };

  const child = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD, OBJECT_PATH, dir, podNs.path, podIf], {
    encoding: 'utf8',
  });
  t.is(child.status, 0, child.stderr);
  const attachment = JSON.parse(child.stdout) as Attachment;
  t.teardown(() => addon.detach({ ...target, mode: 'tcx', pinPath: `${dir}/link` }));

  t.deepEqual(addon.listHook(target), [{ mode: 'tcx', progId: attachment.progId, progName: 'fixup', linkId: attachment.linkId }]);

  const stats = addon.objGet(`${dir}/stats`);
  t.teardown(() => addon.closeFd(stats));
  const before = [statSlot(stats, STAT_PASS_NOT_UNICAST), statSlot(stats, STAT_PASS_UNKNOWN)];
  // An ARP broadcast (not unicast), then UDP datagrams to an IP no guest has (unknown).
  client.run('bash', ['-c', 'for i in 1 2 3; do echo vmpeer > /dev/udp/192.0.2.2/9; done']);
  let after = before;
  for (let i = 0; i < 50 && after[1]! - before[1]! < 3n; i++) {
    await sleep(20);
    after = [statSlot(stats, STAT_PASS_NOT_UNICAST), statSlot(stats, STAT_PASS_UNKNOWN)];
  }
  t.true(after[0]! - before[0]! >= 1n, 'the ARP request was seen');
  t.true(after[1]! - before[1]! >= 3n, 'the datagrams were seen');

  t.true(addon.detach({ ...target, mode: 'tcx', pinPath: `${dir}/link`, progId: attachment.progId }));
  t.deepEqual(addon.listHook(target), []);
});
