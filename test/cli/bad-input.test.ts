/**
 * Bad input: one clear line on stderr, exit code 2, and nothing changed (no
 * state under the bpffs root, no program at the pod's or the node's hooks).
 */
import test from 'ava';
import fs from 'node:fs';
import { Lab } from '../../lib/lab/index.js';
import { native } from '../../lib/native.js';
import { BPFFS_TEST_ROOT, uniqueName } from '../helpers/netns.js';
import { vmpeer } from '../../lib/testkit/cli.js';

type Case = [name: string, args: (lab: Lab) => string[], message: RegExp, user?: 'unprivileged'];

const cases: Case[] = [
  ['no command', () => [], /Usage: vmpeer <command>/],
  ['unknown command', () => ['frobnicate'], /unknown command 'frobnicate'/],
  ['attach without --netns', () => ['attach'], /attach needs --netns/],
  ['unknown flag', () => ['attach', '--netns', 'x', '--bogus'], /Unknown option '--bogus'/],
  ['stray argument', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, 'extra'], /unexpected argument 'extra'/],
  ['netns name that does not exist', () => ['attach', '--netns', 'vpt-no-such-netns'], /network namespace not found: vpt-no-such-netns/],
  ['netns path that does not exist', () => ['attach', '--netns', '/proc/999999999/ns/net'], /network namespace not found/],
  ['netns path that is not a netns', () => ['attach', '--netns', '/etc/hostname'], /not a network namespace file/],
  ['a plain pod, not a VM pod', (l) => ['attach', '--netns', l.plain[0]!.podNs.name], /is not a bridged VM pod/],
  ['--dev that does not exist', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, '--dev', 'nosuchdev'], /no interface nosuchdev/],
  ['--dev that is not a VM uplink', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, '--dev', 'lo'], /not a bridged VM pod/],
  ['--dev with a slash', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, '--dev', 'eth0/1'], /invalid --dev 'eth0\/1'/],
  ['--guest-mac not a MAC', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, '--guest-mac', 'zz:11:22:33:44:55'], /invalid --guest-mac/],
  ['--guest-mac multicast', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, '--guest-mac', '01:00:5e:00:00:01'], /multicast address cannot belong to a guest/],
  ['--guest-ip not an IP', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, '--guest-ip', '198.18.1.300'], /invalid --guest-ip/],
  ['--guest-ip multicast', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, '--guest-ip', '224.0.0.5'], /not a unicast address/],
  ['--mode unknown', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, '--mode', 'xdp'], /invalid --mode 'xdp'/],
  ['--accelerate without --host-dev', () => ['attach', '--accelerate'], /--accelerate needs --host-dev/],
  ['--accelerate with --netns', (l) => ['attach', '--accelerate', '--host-dev', l.node.uplink.name, '--netns', l.vms[0]!.podNs.name], /--accelerate takes --host-dev, not --netns/],
  ['--host-dev that does not exist', () => ['attach', '--accelerate', '--host-dev', 'nosuchdev0'], /no interface nosuchdev0/],
  ['--keep-bridge with --bypass-bridge', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, '--keep-bridge', '--bypass-bridge'], /--keep-bridge and --bypass-bridge contradict each other/],
  ['--first without --accelerate', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, '--first'], /--host-dev and --first go with --accelerate/],
  ['--bpffs outside bpffs', (l) => ['attach', '--netns', l.vms[0]!.podNs.name, '--bpffs', '/tmp/vpt-not-bpffs'], /is not on a bpffs mount/],
  ['detach without --netns', () => ['detach'], /detach needs --netns/],
  ['detach from a netns that does not exist', () => ['detach', '--netns', 'vpt-no-such-netns'], /network namespace not found/],
  ['no capabilities (not root)', (l) => ['attach', '--netns', l.vms[0]!.podNs.name], /needs CAP_NET_ADMIN, CAP_SYS_ADMIN.*run it as root/, 'unprivileged'],
];

function snapshot(lab: Lab, root: string): string {
  const n = native();
  const vm = lab.vms[0]!;
  return JSON.stringify({
    state: fs.existsSync(root) ? fs.readdirSync(root, { recursive: true }) : null,
    nic: n.listHook({ netns: vm.podNs.path, ifname: vm.nic.name, hook: 'ingress' }),
    // the CNI emulator's program is there too: it must stay as it was
    uplink: n.listHook({ netns: lab.node.ns.path, ifname: lab.node.uplink.name, hook: 'ingress' }),
  });
}

let lab: Lab;
test.before(async () => {
  lab = await Lab.create({ prefix: 'vpt', vmPods: 1, plainPods: 1 });
  await lab.ping(lab.client, lab.vms[0]!.podIp, { count: 1 }); // the guest's MAC becomes known
});
test.after.always(() => lab?.destroy());

for (const [name, args, message, user] of cases) {
  test(`bad input: ${name} → exit 2, nothing changed`, async (t) => {
    const root = `${BPFFS_TEST_ROOT}/${uniqueName()}`;
    t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
    const argv = args(lab);
    const withRoot = argv.length > 0 && !argv.includes('--bpffs') && ['attach', 'detach'].includes(argv[0]!) ? [...argv, '--bpffs', root] : argv;
    const before = snapshot(lab, root);
    const r = await vmpeer(lab.node.ns.path, withRoot, {}, user);
    t.is(r.code, 2, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
    t.regex(r.stderr + r.stdout, message);
    if (argv.length > 0) {
      t.is(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
      t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
    }
    t.is(snapshot(lab, root), before, 'nothing changed');
  });
}
