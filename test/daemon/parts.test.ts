/**
 * The daemon's parts that need no kernel: configuration parsing (flags over
 * environment over defaults), the pod shape check.
 */
import test from 'ava';
import { parseConfig, parseDuration, parseListenAddress } from '../../lib/daemon/config.js';
import { shapeOf } from '../../lib/daemon/probe.js';
import type { Link } from '../../lib/discovery/iproute.js';

test('defaults', (t) => {
  const c = parseConfig({}, {});
  t.like(c, {
    bpffsRoot: '/sys/fs/bpf/vmpeer',
    netnsDirs: ['/var/run/netns'],
    netnsPrefix: '',
    proc: false,
    resyncIntervalMs: 120_000,
    logLevel: 'info',
    metrics: { host: '127.0.0.1', port: 9808, text: '127.0.0.1:9808' },
    accelerate: false,
    hostDevs: [],
    mode: 'auto',
    bypassBridge: true,
    cleanupOnExit: false,
  });
});

test('the bridge bypass is the default; --keep-bridge (VMPEER_KEEP_BRIDGE) or the old VMPEER_BYPASS_BRIDGE=false keep the bridge', (t) => {
  t.true(parseConfig({}, {}).bypassBridge);
  t.true(parseConfig({ 'bypass-bridge': true }, {}).bypassBridge, '--bypass-bridge asks for the default');
  t.true(parseConfig({}, { VMPEER_BYPASS_BRIDGE: 'true' }).bypassBridge);
  t.false(parseConfig({ 'keep-bridge': true }, {}).bypassBridge);
  t.false(parseConfig({}, { VMPEER_KEEP_BRIDGE: 'true' }).bypassBridge);
  t.false(parseConfig({}, { VMPEER_BYPASS_BRIDGE: 'false' }).bypassBridge, 'an earlier deployment that turned the bypass off explicitly keeps its bridge');
  t.true(parseConfig({ 'keep-bridge': false }, { VMPEER_KEEP_BRIDGE: 'true' }).bypassBridge, 'the flag over the environment');
  t.true(parseConfig({}, { VMPEER_KEEP_BRIDGE: 'false' }).bypassBridge);
  t.throws(() => parseConfig({ 'keep-bridge': true, 'bypass-bridge': true }, {}), { message: /--keep-bridge and --bypass-bridge contradict each other/ });
  t.throws(() => parseConfig({}, { VMPEER_KEEP_BRIDGE: 'yes', VMPEER_BYPASS_BRIDGE: '1' }), { message: /contradict each other/ });
});

test('environment, and flags over environment', (t) => {
  const env = {
    NODE_NAME: 'node-a',
    VMPEER_BPFFS: '/sys/fs/bpf/x',
    VMPEER_NETNS_DIRS: '/run/netns,/var/run/other',
    VMPEER_PROC: 'true',
    VMPEER_RESYNC_INTERVAL: '2m',
    VMPEER_LOG_LEVEL: 'debug',
    VMPEER_METRICS_ADDRESS: '[::1]:9900',
    VMPEER_ACCELERATE: '1',
    VMPEER_HOST_DEVS: 'eth0,eth1',
    VMPEER_CLEANUP_ON_EXIT: 'yes',
  };
  t.like(parseConfig({}, env), {
    nodeName: 'node-a',
    bpffsRoot: '/sys/fs/bpf/x',
    netnsDirs: ['/run/netns', '/var/run/other'],
    proc: true,
    resyncIntervalMs: 120_000,
    logLevel: 'debug',
    metrics: { host: '::1', port: 9900, text: '[::1]:9900' },
    accelerate: true,
    hostDevs: ['eth0', 'eth1'],
    cleanupOnExit: true,
  });
  t.like(parseConfig({ 'log-level': 'warn', 'netns-dir': ['/a'], 'host-dev': ['bond0'], 'resync-interval': '5s' }, { ...env, VMPEER_RESYNC_INTERVAL: 'x' }), {
    logLevel: 'warn',
    netnsDirs: ['/a'],
    hostDevs: ['bond0'],
    resyncIntervalMs: 5000,
  });
});

test('bad values are usage errors (exit 2) that say what is wrong', (t) => {
  const bad: Array<[Parameters<typeof parseConfig>[0], Record<string, string>, RegExp]> = [
    [{ 'metrics-address': 'nonsense' }, {}, /invalid --metrics-address 'nonsense': no port/],
    [{ 'metrics-address': '127.0.0.1:99999' }, {}, /port '99999' is not 0-65535/],
    [{ 'metrics-address': 'example.com:80' }, {}, /'example.com' is not an IP address/],
    [{ 'metrics-address': '::1' }, {}, /no port/],
    [{}, { VMPEER_METRICS_ADDRESS: '1.2.3.4:' }, /port '' is not 0-65535/],
    [{ 'resync-interval': 'soon' }, {}, /invalid --resync-interval 'soon'/],
    [{ 'resync-interval': '10ms' }, {}, /between 1000 ms/],
    [{ 'log-level': 'chatty' }, {}, /invalid --log-level 'chatty'/],
    [{ mode: 'xdp' }, {}, /invalid --mode 'xdp'/],
    [{ 'host-dev': ['eth0'] }, {}, /--host-dev and --first go with --accelerate/],
    [{ accelerate: true }, {}, /--accelerate needs at least one --host-dev/],
    [{ accelerate: true, 'host-dev': ['a/b'] }, {}, /invalid --host-dev 'a\/b'/],
    [{}, { VMPEER_PROC: 'maybe' }, /invalid VMPEER_PROC 'maybe'/],
    [{ 'netns-prefix': 'a/b' }, {}, /invalid --netns-prefix/],
  ];
  for (const [flags, env, message] of bad) {
    const e = t.throws(() => parseConfig(flags, env), { message });
    t.is((e as { exitCode?: number }).exitCode, 2);
  }
});

test('listen addresses and durations', (t) => {
  t.deepEqual(parseListenAddress(':9808'), { host: '', port: 9808, text: ':9808' });
  t.deepEqual(parseListenAddress('0.0.0.0:1'), { host: '0.0.0.0', port: 1, text: '0.0.0.0:1' });
  t.deepEqual(parseListenAddress('localhost:9808'), { host: 'localhost', port: 9808, text: 'localhost:9808' });
  t.is(parseDuration('30', 'x', 1, 1e9), 30_000);
  t.is(parseDuration('1.5s', 'x', 1, 1e9), 1500);
  t.is(parseDuration('1h', 'x', 1, 1e10), 3_600_000);
});

const link = (l: Partial<Link> & { ifname: string; ifindex: number }): Link => l;

test('pod shape: plain, partial (a bridge, not yet the VM layout), VM', (t) => {
  const veth = (ifname: string, ifindex: number, peer: number, master?: string) =>
    link({ ifname, ifindex, master, link_index: peer, link_netnsid: 0, linkinfo: { info_kind: 'veth' } });
  const bridge = (ifname: string, ifindex: number) => link({ ifname, ifindex, linkinfo: { info_kind: 'bridge' } });
  const lo = link({ ifname: 'lo', ifindex: 1 });
  t.deepEqual(shapeOf([lo, veth('eth0', 2, 17)]), { shape: 'plain', peers: [17] });
  t.deepEqual(shapeOf([lo, veth('eth0-nic', 2, 17, 'k6t-eth0'), bridge('k6t-eth0', 3)]), { shape: 'partial', peers: [17] });
  t.deepEqual(
    shapeOf([lo, veth('eth0-nic', 2, 17, 'k6t-eth0'), bridge('k6t-eth0', 3), link({ ifname: 'tap0', ifindex: 4, master: 'k6t-eth0', linkinfo: { info_kind: 'tun' } })]),
    { shape: 'vm', peers: [17] },
  );
});
