/**
 * --proc (hostPID): pods found by their processes' /proc/<pid>/ns/net, with
 * no netns file to watch. The daemon runs in a PID namespace of its own (as
 * a hostPID container sees the node's processes, it sees exactly the test's
 * "pod processes" here), so other tests' namespaces stay out of its sight.
 * A pod is gone when its last process is: the daemon's own monitor in that
 * netns must not keep it alive.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { announce } from '../../lib/lab/dynamic.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';
import { childrenOf, daemonArgv, DaemonProcess, inodeOf, sleep, State, until } from '../helpers/daemon.js';

/** A process that lives in `netns` and in the daemon's PID namespace: a pod's "pause" process. */
function podProcess(t: ExecutionContext, daemonPid: number, netns: string): ChildProcess {
  const child = spawn('nsenter', [`--target=${daemonPid}`, '--pid', `--net=${netns}`, 'sleep', '600'], { stdio: 'ignore' });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  return child;
}

/** Host pids of processes named `comm` in the netns with this inode. */
function pidsIn(inode: number, comm: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return fs.readlinkSync(`/proc/${p}/ns/net`) === `net:[${inode}]` && fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === comm;
      } catch {
        return false;
      }
    })
    .map(Number);
}

test('--proc: a VM pod known only by its processes is covered, and cleaned up when they are gone', async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 1 });
  const vm = l.vms[0]!;
  await announce(vm);
  const root = `${bpffsDir(t)}/vmpeer`;
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'vpt-nonetns-'));
  t.teardown(() => fs.rmSync(empty, { recursive: true, force: true }));

  // the daemon in a new PID namespace with its own /proc; mounts from the host still propagate
  const options = { nodeNs: l.node.ns.path, root, args: ['--proc', '--proc-interval', '200ms', '--netns-dir', empty, '--cleanup-on-exit'] };
  const argv = daemonArgv(options);
  const inPidNs = [argv[0]!, argv[1]!, 'unshare', '--pid', '--fork', '--mount-proc', '--propagation', 'slave', ...argv.slice(2)];
  const child = spawn(inPidNs[0]!, inPidNs.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const d = new DaemonProcess(options, child);
  t.teardown(async () => {
    if (d.alive) await d.kill('SIGKILL');
  });
  await d.ready();
  const daemonPid = (await until(() => childrenOf(child.pid!)[0], 2000)).value!; // unshare's child: the daemon
  const state = new State(t, root);
  t.is(state.dp.attachments().length, 0, 'no pod process yet, nothing found');

  podProcess(t, daemonPid, vm.podNs.path);
  podProcess(t, daemonPid, l.plain[0]!.podNs.path);
  const { ms } = await until(() => state.covered(vm), 5000, 20);
  t.log(`covered ${ms} ms after its process appeared`);
  const found = await d.waitLog((x) => x.msg === 'found VM pod');
  t.regex(String(found.netns), /^\/proc\/\d+\/ns\/net$/, 'named by its process');
  // from_guest follows once the pod's own programs are loaded (lib/daemon/bypass-warmup.ts)
  await until(() => state.dp.attachments().length >= 2, 5000, 20);
  t.deepEqual(state.dp.attachments().map((r) => r.program).sort(), ['fixup', 'from_guest'], 'the plain pod is left alone');
  t.is((await l.ping(l.client, vm.podIp, { count: 50, intervalMs: 5 })).received, 50);

  // the pod goes: its netns file first (the daemon does not watch it), then its last process
  const inode = inodeOf(vm.podNs.path)!;
  spawnSync('ip', ['netns', 'delete', vm.podNs.name]);
  l.disown(vm.podNs);
  await sleep(600);
  t.false(state.gone(inode, vm.podIp), 'still covered while a pod process lives');
  const holders = pidsIn(inode, 'sleep');
  t.is(holders.length, 1);
  process.kill(holders[0]!, 'SIGKILL');
  const gone = await until(() => state.gone(inode, vm.podIp), 5000, 20);
  t.log(`cleaned up ${gone.ms} ms after its last process exited`);
  // and the namespace is freed: the daemon's monitor did not keep it (its host veth is gone)
  await until(() => spawnSync('nsenter', [`--net=${l.node.ns.path}`, 'ip', 'link', 'show', 'dev', vm.hostVeth.name], { stdio: 'ignore' }).status !== 0, 3000, 50);
  process.kill(daemonPid, 'SIGTERM'); // unshare does not pass signals on
  t.deepEqual(await d.exited, { code: 0, signal: null });
  t.deepEqual(state.pins(), []);
});
