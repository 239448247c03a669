/**
 * A long TCP flow under accelerate mode and a `ct state invalid drop` rule in
 * the node. redirect carries the client's packets after the handshake past
 * netfilter, so conntrack sees the handshake and then only the guest's
 * replies (lib/dataplane/egress-policy.ts): with strict window tracking those
 * are INVALID and dropped, which the CLI warns of; with
 * net.netfilter.nf_conntrack_tcp_be_liberal=1 a 60 s flow keeps every byte.
 */
import test from 'ava';
import { runIn } from '../../lib/lab/exec.js';
import { SINK_PORT } from '../../lib/lab/agent-main.js';
import { vmpeer } from '../helpers/cli.js';
import { State } from '../helpers/daemon.js';
import { lab } from '../helpers/lab.js';
import { bpffsDir } from '../helpers/netns.js';

const SECONDS = 60;

/** One TCP connection to the guest's sink: 4 KiB every 20 ms for `seconds`, then the sink's count. */
const SLOW_SENDER = `
import socket, sys, time, json
ip, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((ip, port), timeout=10)
chunk, sent, t0 = b"v" * 4096, 0, time.monotonic()
while time.monotonic() - t0 < seconds:
    s.sendall(chunk); sent += len(chunk); time.sleep(0.02)
s.shutdown(socket.SHUT_WR)
reply = s.makefile().readline().split()
print(json.dumps({"sent": sent, "received": int(reply[0]) if reply else 0, "seconds": time.monotonic() - t0}))
`;

test(`accelerate under ct state invalid drop: a ${SECONDS} s TCP flow keeps every byte (be_liberal), and the CLI warns while it is off`, async (t) => {
  const l = await lab(t, { vmPods: 1, plainPods: 0, emulator: false });
  const vm = l.vms[0]!;
  const node = l.node.ns.path;
  const root = `${bpffsDir(t)}/vmpeer`;
  const bpffs = ['--bpffs', root];
  const accel = ['attach', '--accelerate', '--host-dev', l.node.uplink.name, ...bpffs];
  t.teardown(async () => {
    await vmpeer(node, ['detach', '--accelerate', '--host-dev', l.node.uplink.name, ...bpffs]);
    await vmpeer(node, ['detach', '--netns', vm.podNs.name, ...bpffs]);
  });
  t.true((await l.tcpEcho(l.client, vm.podIp, 'the guest serves')).echoed);
  await runIn(node, 'iptables', ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP']);
  await runIn(node, 'sysctl', ['-qw', 'net.netfilter.nf_conntrack_tcp_be_liberal=0']);
  t.is((await vmpeer(node, ['attach', '--netns', vm.podNs.name, ...bpffs])).code, 0);
  const strict = await vmpeer(node, accel);
  t.is(strict.code, 0);
  t.regex(strict.stderr, /^warning: netfilter conntrack tracks TCP strictly here \(net\.netfilter\.nf_conntrack_tcp_be_liberal=0\)/m);

  await runIn(node, 'sysctl', ['-qw', 'net.netfilter.nf_conntrack_tcp_be_liberal=1']);
  t.notRegex((await vmpeer(node, accel)).stderr, /conntrack/, 'no warning once it is set');
  const state = new State(t, root);
  const before = state.dp.endpoint(vm.podIp)!.counters.redirected;
  const { stdout } = await runIn(l.client.ns.path, 'python3', ['-c', SLOW_SENDER, vm.podIp, String(SINK_PORT), String(SECONDS)], { timeoutMs: (SECONDS + 30) * 1000 });
  const r = JSON.parse(stdout) as { sent: number; received: number; seconds: number };
  t.log(`${r.sent} bytes in ${r.seconds.toFixed(1)} s`);
  t.true(r.seconds >= SECONDS);
  t.is(r.received, r.sent, 'every byte arrived, over one connection');
  t.true(state.dp.endpoint(vm.podIp)!.counters.redirected - before > 1000n, 'through the accelerated path');
  const drops = (await runIn(node, 'iptables', ['-L', 'FORWARD', '-v', '-n', '-x'])).stdout;
  t.regex(drops, /^\s*0\s+0\s+DROP.*ctstate INVALID/m, `nothing was INVALID:\n${drops}`);
});
