/**
 * vmpeer demo: a throwaway lab that shows the fault, fixes it with the real
 * CLI, shows the fault again after detach, and removes everything.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type { Command, Io } from '../command.js';
import { requirePrivileges } from '../../privileges.js';
import { Lab } from '../../lab/index.js';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../bin.js', import.meta.url));
const PINGS = 10;

export const demoCommand: Command = {
  name: 'demo',
  summary: 'show the fault and the fix in a throwaway lab (a minute, cleans up)',
  help: `Usage:
  vmpeer demo

Builds a lab in network namespaces: a client on "another node", a node whose
CNI fast path peer-redirects established flows into pods (as Calico's
bpfRedirectToPeer does), a KubeVirt VM pod in bridge binding and a plain pod.
It shows the fault, runs \`vmpeer attach\`, shows the fix, runs \`vmpeer
detach\`, shows the fault again, and removes everything. Exit code 0 only if
every step behaved as expected. Needs root.`,
  options: { help: { type: 'boolean', short: 'h' } },
  async run(_values, io) {
    requirePrivileges('vmpeer demo');
    const lab = await Lab.create({ vmPods: 1, plainPods: 1 });
    const root = `/sys/fs/bpf/vmpeer-demo-${randomBytes(3).toString('hex')}`;
    let ok = true;
    const check = (good: boolean, line: string, why: string) => {
      ok &&= good;
      io.out(`   ${line.padEnd(40)} ${good ? '✓' : '✗'} ${why}`);
    };
    try {
      const vm = lab.vms[0]!;
      const plain = lab.plain[0]!;
      io.out('vmpeer demo: a throwaway lab in network namespaces');
      io.out(`   client ${lab.client.ip} ("another node") ── node ── VM pod ${vm.podIp} (KubeVirt bridge binding, guest ${vm.guestMac})`);
      io.out(`                                         └──── plain pod ${plain.podIp}`);
      io.out('   The node runs an emulated CNI fast path: after the first packet of a flow, packets are');
      io.out('   bpf_redirect_peer()ed into the pod with the Ethernet header untouched.');

      io.out('\n1. Without vmpeer');
      const plainPing = await lab.ping(lab.client, plain.podIp, { count: PINGS, intervalMs: 50 });
      check(plainPing.received === PINGS, `ping plain pod: ${plainPing.received} of ${PINGS} replies`, 'plain pods are fine');
      const faultPing = await lab.ping(lab.client, vm.podIp, { count: PINGS, intervalMs: 50 });
      check(faultPing.received === 1, `ping VM: ${faultPing.received} of ${PINGS} replies`, 'the fault: only the first packet of the flow arrives');
      const faultEcho = await lab.tcpEcho(lab.client, vm.podIp, 'hello VM', { timeoutMs: 1500 });
      check(faultEcho.connected && !faultEcho.echoed, `TCP to VM: ${faultEcho.connected ? 'connected' : 'no connection'}, ${faultEcho.echoed ? 'echoed' : 'no data back'}`, 'the fault: handshake, then nothing');

      io.out(`\n2. vmpeer attach --netns ${vm.podNs.name}`);
      ok &&= await cli(lab, io, ['attach', '--netns', vm.podNs.name, '--bpffs', root]);
      const fixedPing = await lab.ping(lab.client, vm.podIp, { count: PINGS, intervalMs: 50 });
      check(fixedPing.received === PINGS, `ping VM: ${fixedPing.received} of ${PINGS} replies`, 'fixed');
      const fixedEcho = await lab.tcpEcho(lab.client, vm.podIp, 'hello VM');
      check(fixedEcho.echoed, `TCP to VM: ${fixedEcho.echoed ? 'echo came back' : 'no data back'}`, 'fixed');
      const bulk = await lab.transfer(lab.client, vm.podIp, 1024 * 1024);
      check(bulk.intact === 1024 * 1024, `1 MiB to VM: ${bulk.intact === bulk.sent ? 'arrived intact' : `${bulk.received} bytes`}`, 'fixed');
      check(lab.emulatorStats().redirected > PINGS, `fast path: ${lab.emulatorStats().redirected} packets peer-redirected`, 'the fast path stayed on');

      io.out(`\n3. vmpeer detach --netns ${vm.podNs.name}`);
      ok &&= await cli(lab, io, ['detach', '--netns', vm.podNs.name, '--bpffs', root]);
      const againPing = await lab.ping(lab.client, vm.podIp, { count: PINGS, intervalMs: 50 });
      check(againPing.received === 1, `ping VM: ${againPing.received} of ${PINGS} replies`, 'the fault is back');
    } finally {
      await lab.destroy();
      fs.rmSync(root, { recursive: true, force: true });
    }
    io.out('\nCleaned up: the lab\'s namespaces and vmpeer\'s state are gone.');
    io.out(ok ? 'Every step behaved as expected.' : 'Some step did not behave as expected (marked ✗).');
    return ok ? 0 : 1;
  },
};

/** Runs the real CLI in the lab's node netns (its node), echoing what it printed. */
async function cli(lab: Lab, io: Io, args: string[]): Promise<boolean> {
  try {
    const { stdout, stderr } = await run('nsenter', [`--net=${lab.node.ns.path}`, process.execPath, BIN, ...args]);
    for (const line of `${stdout}${stderr}`.trim().split('\n')) io.out(`   ${line}`);
    return true;
  } catch (e) {
    io.out(`   vmpeer ${args[0]} failed: ${(e as { stderr?: string }).stderr?.trim() || (e as Error).message}`);
    return false;
  }
}
