/** vmpeer daemon: keep every bridged VM pod of this node covered (what the DaemonSet runs). */
import { type Command } from '../command.js';
import { checkEnvironment, DEFAULT_METRICS_ADDRESS, ENV, parseConfig, type Flags } from '../../daemon/config.js';
import { Daemon } from '../../daemon/daemon.js';

export const daemonCommand: Command = {
  name: 'daemon',
  summary: 'find and fix every bridged VM pod on this node, continuously (the DaemonSet)',
  help: `Usage:
  vmpeer daemon [--metrics-address ${DEFAULT_METRICS_ADDRESS}] [--accelerate --host-dev <ifname>...] [options]

Finds every bridged VM pod on this node by itself and keeps the dataplane
equal to what it finds: fixup attached at each VM pod's bridge uplink, each
guest's endpoint current, the state of pods that are gone removed. Runs in
the node's network namespace (hostNetwork). Its state is pinned under the
bpffs root, so stopping, crashing or upgrading it never interrupts traffic:
on start it adopts what is there, and swaps in a changed program without a
gap. Logs are JSON lines on stdout, one per change with its reason.

HTTP on --metrics-address: /metrics (Prometheus), /healthz, /readyz (ready
once the first full reconcile is done).

Options (each also from the environment variable in brackets):
  --node-name <name>          node name for logs and metrics [${ENV['node-name']}]
  --bpffs <dir>               state root on a bpffs (default /sys/fs/bpf/vmpeer) [${ENV.bpffs}]
  --netns-dir <dir>           where pod netns files are, repeatable (default /var/run/netns) [${ENV['netns-dir']}, comma-separated]
  --netns-prefix <prefix>     only netns files whose name starts with this [${ENV['netns-prefix']}]
  --proc                      also find pods through /proc/<pid>/ns/net (hostPID) [${ENV.proc}]
  --proc-root <dir>           where the host's /proc is (default /proc) [${ENV['proc-root']}]
  --proc-interval <duration>  how often /proc is scanned (default 1s) [${ENV['proc-interval']}]
  --resync-interval <dur>     full resync, the safety net (default 2m) [${ENV['resync-interval']}]
  --log-level <level>         trace, debug, info (default), warn, error, fatal, silent [${ENV['log-level']}]
  --metrics-address <h:p>     HTTP address (default ${DEFAULT_METRICS_ADDRESS}) [${ENV['metrics-address']}]
  --accelerate                also attach redirect to --host-dev interfaces; VM traffic
                              arriving there then bypasses host netfilter [${ENV.accelerate}]
  --host-dev <ifname>         a host interface to accelerate, repeatable [${ENV['host-dev']}]
  --first                     accelerate: run before the programs already at the hook [${ENV.first}]
  --skip-egress-programs      accelerate even toward guests whose host veth has programs at its
                              tc egress (a CNI's policy for the workload): redirect skips them,
                              and the policy with them [${ENV['skip-egress-programs']}]
  --mode <mode>               tcx (Linux >= 6.6), clsact, or auto (default: clsact in VM
                              pods, tcx on host interfaces where the kernel has it) [${ENV.mode}]
  --keep-bridge               keep each VM pod's bridge on the path of its guest's IP
                              traffic; by default the bridge is bypassed where that is
                              safe (README "Bridge bypass") [${ENV['keep-bridge']}]
  --bypass-bridge             the default; accepted for earlier versions' deployments
                              (${ENV['bypass-bridge']}=false keeps the bridge) [${ENV['bypass-bridge']}]
  --cleanup-on-exit           remove every attachment, endpoint and pin on exit (uninstall) [${ENV['cleanup-on-exit']}]
  --object <file>             a BPF object other than the shipped one [${ENV.object}]
  -h, --help                  show this help

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed at run time, 2 bad
configuration (one line says what).

Examples:
  vmpeer daemon
  vmpeer daemon --metrics-address 0.0.0.0:9808 --log-level debug
  vmpeer daemon --proc --accelerate --host-dev eth0`,
  options: {
    'node-name': { type: 'string' },
    bpffs: { type: 'string' },
    'netns-dir': { type: 'string', multiple: true },
    'netns-prefix': { type: 'string' },
    proc: { type: 'boolean' },
    'proc-root': { type: 'string' },
    'proc-interval': { type: 'string' },
    'resync-interval': { type: 'string' },
    'log-level': { type: 'string' },
    'metrics-address': { type: 'string' },
    accelerate: { type: 'boolean' },
    'host-dev': { type: 'string', multiple: true },
    first: { type: 'boolean' },
    'skip-egress-programs': { type: 'boolean' },
    mode: { type: 'string' },
    'keep-bridge': { type: 'boolean' },
    'bypass-bridge': { type: 'boolean' },
    'cleanup-on-exit': { type: 'boolean' },
    object: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  async run(values) {
    const config = parseConfig(values as Flags, process.env);
    const warnings = checkEnvironment(config);
    const daemon = await Daemon.start(config, { warnings });
    // a bug must not leave a half-working daemon: log it, exit, be restarted (and adopt the state)
    const crash = (e: unknown) => {
      daemon.log.fatal({ err: e }, 'unexpected error; exiting (the dataplane stays as it is)');
      process.exit(1);
    };
    process.on('uncaughtException', crash);
    process.on('unhandledRejection', crash);
    return new Promise<number>((resolve) => {
      const onSignal = (signal: NodeJS.Signals) => {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        daemon.stop(signal).then(
          () => resolve(0),
          (e: Error) => {
            daemon.log.error({ err: e }, 'stopping failed');
            resolve(1);
          },
        );
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    });
  },
};
