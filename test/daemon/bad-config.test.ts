/**
 * Bad configuration stops the daemon before it changes anything: exit code
 * 2, one line on stderr that says what is wrong, nothing on stdout, no state
 * directory created.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { BIN, deployCapabilities } from '../helpers/daemon.js';
import { bpffsDir, uniqueName } from '../helpers/netns.js';
import { unprivileged } from '../../lib/testkit/cli.js';

function tmpDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpt-cfg-'));
  t.teardown(() => {
    fs.chmodSync(dir, 0o700);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

interface Setup {
  root: string;
  netnsDir: string;
}

function setup(t: ExecutionContext): Setup {
  return { root: path.join(bpffsDir(t), 'vmpeer'), netnsDir: tmpDir(t) };
}

/** Runs `vmpeer daemon` (optionally behind a command prefix) and checks the contract for bad configuration. */
function rejects(t: ExecutionContext, s: Setup, args: string[], message: RegExp, prefix: string[] = [], env: NodeJS.ProcessEnv = {}): void {
  const metrics = args.includes('--metrics-address') || env.VMPEER_METRICS_ADDRESS ? [] : ['--metrics-address', '127.0.0.1:0'];
  const argv = [...prefix, process.execPath, BIN, 'daemon', '--bpffs', s.root, '--netns-dir', s.netnsDir, ...metrics, ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } });
  t.is(r.status, 2, `exit code for ${args.join(' ')} ${prefix.join(' ')}: ${r.stderr}${r.stdout}`);
  t.is(r.stdout, '', 'nothing on stdout');
  const lines = r.stderr.trimEnd().split('\n');
  t.is(lines.length, 1, `one line on stderr: ${r.stderr}`);
  t.regex(lines[0]!, /^vmpeer daemon: /);
  t.regex(lines[0]!, message);
  t.false(fs.existsSync(s.root), 'no state directory was created');
}

test('bad metrics address', (t) => {
  const s = setup(t);
  rejects(t, s, ['--metrics-address', 'nonsense'], /invalid --metrics-address 'nonsense': no port/);
  rejects(t, s, ['--metrics-address', '127.0.0.1:70000'], /port '70000' is not 0-65535/);
  rejects(t, s, [], /invalid --metrics-address 'x:1'/, [], { VMPEER_METRICS_ADDRESS: 'x:1' });
  rejects(t, s, ['--metrics-address', '192.0.2.77:9808'], /cannot listen on --metrics-address 192\.0\.2\.77:9808: EADDRNOTAVAIL/);
});

test('metrics address already taken', async (t) => {
  const s = setup(t);
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  rejects(t, s, ['--metrics-address', `127.0.0.1:${port}`], new RegExp(`cannot listen on --metrics-address 127\\.0\\.0\\.1:${port}: EADDRINUSE \\(the port is taken\\)`));
});

test('unreadable netns directory', (t) => {
  const s = setup(t);
  rejects(t, s, ['--netns-dir', '/nonexistent/netns'], /netns directory \/nonexistent\/netns cannot be read \(ENOENT\)/);
  const file = path.join(s.netnsDir, 'file');
  fs.writeFileSync(file, '');
  rejects(t, s, ['--netns-dir', file], /is not a directory/);
  // mode 000: unreadable for uid 0 too once it has only the DaemonSet's capabilities (no CAP_DAC_*)
  const closed = path.join(s.netnsDir, 'closed');
  fs.mkdirSync(closed, { mode: 0o000 });
  const caps = ['setpriv', '--inh-caps=-all', `--bounding-set=-all,${deployCapabilities().map((c) => `+${c}`).join(',')}`];
  rejects(t, s, ['--netns-dir', closed], /netns directory .*closed cannot be read \(EACCES\)/, caps);
});

test('missing bpffs', (t) => {
  const s = setup(t);
  const notBpf = path.join(s.netnsDir, 'vmpeer');
  rejects(t, { ...s, root: notBpf }, [], /is not on a bpffs mount .*mount -t bpf bpf \/sys\/fs\/bpf/);
  // no bpffs at /sys/fs/bpf: a private mount namespace where it is a plain
  // directory (a tmpfs over it: unmounting could uncover another bpffs below),
  // and a root of the test's own, not whatever a node keeps in /sys/fs/bpf/vmpeer
  const unmounted = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs vpt-no-bpffs /sys/fs/bpf && exec "$@"', 'sh'];
  const top = `/sys/fs/bpf/${uniqueName('cfg')}`;
  t.teardown(() => fs.rmSync(top, { recursive: true, force: true }));
  const root = `${top}/vmpeer`;
  rejects(t, { ...s, root }, [], new RegExp(`${root.replaceAll('/', '\\/')} is not on a bpffs mount`), unmounted);
});

test('no privileges', (t) => {
  const s = setup(t);
  fs.chmodSync(s.netnsDir, 0o755);
  rejects(t, s, [], /vmpeer daemon needs CAP_NET_ADMIN, CAP_SYS_ADMIN.*run it as root/, unprivileged());
  const noSysAdmin = ['setpriv', '--inh-caps=-all', '--bounding-set=-all,+bpf,+net_admin'];
  rejects(t, s, [], /needs CAP_SYS_ADMIN/, noSysAdmin);
});

test('other bad values', (t) => {
  const s = setup(t);
  rejects(t, s, ['--resync-interval', 'often'], /invalid --resync-interval 'often'/);
  rejects(t, s, ['--log-level', 'loud'], /invalid --log-level 'loud'/);
  rejects(t, s, ['--host-dev', 'eth0'], /--host-dev and --first go with --accelerate/);
  rejects(t, s, ['--accelerate'], /--accelerate needs at least one --host-dev/);
  rejects(t, s, ['--object', '/nonexistent.o'], /--object \/nonexistent\.o does not exist/);
  rejects(t, s, ['--bogus'], /Unknown option '--bogus'/);
  rejects(t, s, ['--keep-bridge', '--bypass-bridge'], /--keep-bridge and --bypass-bridge contradict each other/);
  rejects(t, s, [], /--keep-bridge and --bypass-bridge contradict each other/, [], { VMPEER_KEEP_BRIDGE: 'true', VMPEER_BYPASS_BRIDGE: 'true' });
  rejects(t, s, [], /invalid VMPEER_KEEP_BRIDGE 'maybe': expected true or false/, [], { VMPEER_KEEP_BRIDGE: 'maybe' });
});
