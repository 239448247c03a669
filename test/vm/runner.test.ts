/**
 * Tests of the kernel-in-VM runner scripts/vmtest itself.
 *
 * Each test boots a VM (5-15 s under software emulation), so there are few,
 * and they run one after the other. They run as root (a failure otherwise). The kernel is 6.12 unless
 * VMTEST_TEST_KERNEL says otherwise. Every run gets its own TMPDIR so that a
 * leaked QEMU process or run directory can be told apart from other runs on
 * the same machine.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { ExecutionContext } from 'ava';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const VMTEST = path.join(root, 'scripts/vmtest');
const KERNEL = process.env['VMTEST_TEST_KERNEL'] ?? '6.12';

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
  tmpdir: string;
}

/** Runs scripts/vmtest with the given arguments in a fresh TMPDIR (removed by teardown). */
async function vmtest(t: ExecutionContext, args: string[], killAfterSeconds = 300): Promise<Run> {
  const tmpdir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmtest-test-'));
  t.teardown(() => fs.rmSync(tmpdir, { recursive: true, force: true }));
  const started = Date.now();
  const child = spawn(VMTEST, args, {
    cwd: root,
    env: { ...process.env, TMPDIR: tmpdir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const guard = setTimeout(() => child.kill('SIGKILL'), killAfterSeconds * 1000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('close', (c, s) => resolve([c, s])),
  );
  clearTimeout(guard);
  const run = { code, signal, stdout, stderr, seconds: (Date.now() - started) / 1000, tmpdir };
  t.log(`exit ${code ?? signal} after ${run.seconds.toFixed(1)} s; ${lastLine(stderr)}`);
  return run;
}

function lastLine(s: string): string {
  return s.trimEnd().split('\n').pop() ?? '';
}

/** QEMU processes whose command line names this run's TMPDIR. */
function qemuProcessesOf(tmpdir: string): string[] {
  try {
    return execFileSync('pgrep', ['-af', `qemu-system.*${tmpdir}`], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() !== '');
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** Asserts that the run left neither a QEMU process nor a run directory behind. */
function assertNoLeftovers(t: ExecutionContext, run: Run): void {
  t.deepEqual(qemuProcessesOf(run.tmpdir), [], 'a QEMU process was left behind');
  t.deepEqual(fs.readdirSync(run.tmpdir), [], 'a run directory was left behind');
}

// Tests run as root (QEMU's 9p export of / and the kernel downloads need it): not root is a failure, not a skip.
test.before(() => {
  if (process.getuid?.() !== 0) throw new Error('test/vm must run as root (it installs and runs QEMU)');
});
const vmTest = test.serial;

vmTest('a command runs on the guest kernel; its output and exit code 0 come back', async (t) => {
  t.timeout(300_000);
  const run = await vmtest(t, ['--kernel', KERNEL, '--', 'sh', '-c', 'uname -r; node -e "console.log(1+1)"; echo "cwd=$PWD"; echo "kernel=$VMTEST_KERNEL"']);
  t.is(run.code, 0, run.stderr);
  const [release, two, cwd, kernelVar] = run.stdout.trimEnd().split('\n');
  t.not(release, os.release(), 'uname -r printed the host kernel');
  if (/^\d+\.\d+$/.test(KERNEL)) t.true(release?.startsWith(`${KERNEL}.`), `guest kernel ${release}`);
  t.is(two, '2');
  t.is(cwd, `cwd=${root}`);
  t.is(kernelVar, `kernel=${release}`);
  t.regex(lastLine(run.stderr), /^vmtest: kernel \S+ \((kvm|tcg), \d+ cpus, \S+\): boot [\d.]+ s, command [\d.]+ s, total [\d.]+ s, exit 0$/);
  assertNoLeftovers(t, run);
});

vmTest('a failing command: its exit code and its stderr and stdout come back', async (t) => {
  t.timeout(300_000);
  const run = await vmtest(t, ['--kernel', KERNEL, '--', 'sh', '-c', 'echo partial; echo boom >&2; exit 3']);
  t.is(run.code, 3);
  t.is(run.stdout, 'partial\n');
  t.true(run.stderr.startsWith('boom\n'), run.stderr);
  t.regex(lastLine(run.stderr), /exit 3$/);
  assertNoLeftovers(t, run);
});

vmTest('a guest that never finishes is killed at --timeout and reported', async (t) => {
  t.timeout(300_000);
  // killed at 20 s whether or not the guest has finished booting by then
  const run = await vmtest(t, ['--kernel', KERNEL, '--timeout', '20', '--', 'sleep', '1000']);
  t.is(run.code, 124);
  t.regex(run.stderr, /vmtest: timed out after 20 s on kernel \S+/);
  t.true(run.seconds >= 19 && run.seconds < 40, `took ${run.seconds} s`);
  assertNoLeftovers(t, run);
});

vmTest('a guest kernel panic is reported as such', async (t) => {
  t.timeout(300_000);
  const run = await vmtest(t, ['--kernel', KERNEL, '--timeout', '120', '--', 'sh', '-c', 'echo before; echo c >/proc/sysrq-trigger; sleep 100']);
  t.is(run.code, 123);
  t.is(run.stdout, 'before\n');
  t.regex(run.stderr, /Kernel panic - not syncing: sysrq triggered crash/);
  t.regex(run.stderr, /vmtest: guest kernel panic on kernel \S+ while running the command/);
  assertNoLeftovers(t, run);
});

vmTest('the guest has the modules, mounts and namespaces the tests need', async (t) => {
  t.timeout(300_000);
  const script = [
    'set -e',
    'ip link add vta type veth peer name vtb',
    'ip link add vbr type bridge',
    'ip link add vdu type dummy',
    'ip tuntap add vtp mode tap',
    'tc qdisc add dev vta clsact',
    'tc qdisc add dev vdu ingress',
    'ip netns add vns',
    'ip link set vtb netns vns',
    'nsenter --net=/var/run/netns/vns ip link set vtb up',
    'grep -q "^bpf /sys/fs/bpf bpf" /proc/mounts',
    'grep -q "^cgroup2 /sys/fs/cgroup cgroup2" /proc/mounts',
    'grep -q "^tmpfs /tmp tmpfs" /proc/mounts',
    'grep -q "^tmpfs /run tmpfs" /proc/mounts',
    'nsenter --net=/var/run/netns/vns test -d /sys/fs/bpf',
    'touch /tmp/w "$PWD/.vmtest-overlay-probe"', // the root is writable (overlay)
    'mkdir /sys/fs/bpf/vmtest',
    'for m in veth bridge tun dummy sch_ingress cls_bpf 9p 9pnet_virtio overlay; do',
    '  grep -q "^$m " /proc/modules || test -d /sys/module/$m || { echo "module $m missing" >&2; exit 1; }',
    'done',
    'echo all-ok',
  ].join('\n');
  const run = await vmtest(t, ['--kernel', KERNEL, '--', 'sh', '-c', script]);
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout, 'all-ok\n');
  // The overlay is the guest's: nothing reached the host.
  t.false(fs.existsSync(path.join(root, '.vmtest-overlay-probe')));
  assertNoLeftovers(t, run);
});

test('no command: usage error, no VM', async (t) => {
  const run = await vmtest(t, ['--kernel', KERNEL]);
  t.is(run.code, 2);
  t.regex(run.stderr, /no command given/);
});

vmTest('--kernel host boots the host kernel, or says why it cannot', async (t) => {
  t.timeout(300_000);
  const image = `/boot/vmlinuz-${os.release()}`;
  const run = await vmtest(t, ['--kernel', 'host', '--', 'uname', '-r']);
  if (fs.existsSync(image)) {
    t.is(run.code, 0, run.stderr);
    t.is(run.stdout, `${os.release()}\n`);
  } else {
    t.is(run.code, 125);
    t.regex(run.stderr, /host kernel image is not available: \/boot\/vmlinuz-\S+ does not exist/);
  }
  assertNoLeftovers(t, run);
});

// Each series comes from the Debian suite that ships it, through the runner's own
// sources list under its cache: the system's apt configuration is not touched.
// (Booting each is the kernel matrix's job; sid, whose newest kernel changes most often, is booted here too.)
for (const [series, suite, release, boot] of [
  ['5.10', 'bullseye', /^5\.10\.0-\d+-amd64$/, false],
  ['sid', 'sid', /^\d+\.\d+\.\d+\+deb\d+-amd64$|^\d+\.\d+\.\d+-\d+-amd64$/, true],
] as const) {
  vmTest(`--kernel ${series}: the newest generic image of Debian ${suite}, through a private sources list${boot ? ', booted' : ''}`, async (t) => {
    t.timeout(600_000);
    const aptBefore = aptState();
    const prepared = await vmtest(t, ['--kernel', series, '--prepare'], 600);
    t.is(prepared.code, 0, prepared.stderr);
    const rel = prepared.stdout.trim();
    t.regex(rel, release);
    const cache = process.env['VMTEST_CACHE'] ?? path.join(root, '.cache/vmtest');
    t.regex(fs.readFileSync(path.join(cache, 'apt', suite, 'sources.list'), 'utf8'), new RegExp(`^deb \\S+ \\S+ ${suite} main$`, 'm'));
    t.true(fs.existsSync(path.join(cache, rel, 'boot', `vmlinuz-${rel}`)));
    t.true(fs.existsSync(path.join(cache, rel, 'lib', 'modules', rel, 'modules.builtin')), 'modules.builtin: modprobe of a built-in module works');
    t.deepEqual(aptState(), aptBefore, "the system's apt sources and package lists are unchanged");
    if (!boot) return;

    const run = await vmtest(t, ['--kernel', series, '--', 'sh', '-c', 'uname -r; modprobe -a veth dummy sch_ingress cls_bpf && echo modules-ok']);
    t.is(run.code, 0, run.stderr);
    t.is(run.stdout, `${rel}\nmodules-ok\n`);
    assertNoLeftovers(t, run);
  });
}

/** The system's apt configuration (names and mtimes) and which package lists it has (names). */
function aptState(): string[] {
  const list = (dir: string, mtime: boolean) =>
    fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => `${dir}/${f}${mtime ? ` ${fs.statSync(path.join(dir, f)).mtimeMs}` : ''}`) : [];
  return [...list('/etc/apt', true), ...list('/etc/apt/sources.list.d', true), ...list('/var/lib/apt/lists', false)].sort();
}
