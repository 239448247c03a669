/** vmpeer detach: remove exactly what attach added for a VM pod, or for a host interface. */
import { COMMON_HELP, commonOptions, type Command } from '../command.js';
import { resolveNetns } from '../netns.js';
import { requirePrivileges } from '../../privileges.js';
import { Dataplane, netnsInode, type AttachmentRecord } from '../../dataplane/dataplane.js';
import type { Endpoint } from '../../dataplane/codec.js';
import { describe } from '../../bpf/link.js';
import { UsageError } from '../../errors.js';
import { parseIfname } from '../../validate.js';
import { iproute } from '../../discovery/iproute.js';
import { killPoint } from '../../kill-point.js';

export const detachCommand: Command = {
  name: 'detach',
  summary: 'undo attach for a VM pod or a host interface',
  help: `Usage:
  vmpeer detach --netns <name|path> [--dev <ifname>]
  vmpeer detach --accelerate --host-dev <ifname>

Removes what \`vmpeer attach\` added: the fixup attachment(s) in that pod's
network namespace (and from_guest, with the bridge bypass) and the endpoints
of its guests (with --dev, only that interface's), or the redirect attachment on a host interface. Programs
vmpeer did not attach are never touched. When nothing is left, vmpeer's pinned
state is removed too (its own pins and folders, nothing else). While the
vmpeer daemon runs on this node, it alone changes vmpeer's state: detach is
refused then (exit 1), unless there is nothing to detach.

Options:
  --netns <name|path>  the VM pod's netns (as for attach)
  --dev <ifname>       only this uplink port and the guest behind it
  --accelerate         detach redirect from --host-dev instead
  --host-dev <ifname>  the host interface
${COMMON_HELP}

Examples:
  vmpeer detach --netns cni-1b2c3d4e-0000-1111-2222-333344445555
  vmpeer detach --accelerate --host-dev eth0`,
  options: {
    ...commonOptions,
    netns: { type: 'string' },
    dev: { type: 'string' },
    accelerate: { type: 'boolean' },
    'host-dev': { type: 'string' },
  },
  async run(values, io) {
    requirePrivileges(`vmpeer ${this.name}`);
    const root = values.bpffs as string | undefined;
    if (values.accelerate) {
      if (values.netns !== undefined || values.dev !== undefined) {
        throw new UsageError('--accelerate takes --host-dev, not --netns/--dev');
      }
      if (typeof values['host-dev'] !== 'string') throw new UsageError('detach --accelerate needs --host-dev <ifname>');
      const target = { ifname: parseIfname(values['host-dev'], '--host-dev'), hook: 'ingress' as const };
      if (!hasRecord(root, (r) => r.program === 'redirect' && r.ifname === target.ifname && r.netnsInode === netnsInode(undefined))) return nothing(io, describe(target));
      const dp = Dataplane.open({ root });
      try {
        io.out(dp.detach('redirect', target) ? `detached redirect from ${describe(target)}` : `nothing attached on ${describe(target)}`);
      } finally {
        dp.closeAndPruneIfEmpty();
      }
      return 0;
    }

    if (values['host-dev'] !== undefined) throw new UsageError('--host-dev goes with --accelerate');
    if (typeof values.netns !== 'string') throw new UsageError('detach needs --netns <name|path> (or --accelerate --host-dev <ifname>)');
    const netns = resolveNetns(values.netns);
    const dev = values.dev === undefined ? undefined : parseIfname(values.dev as string, '--dev');
    const inode = netnsInode(netns);
    // nothing of this pod's: nothing to change, and no lock to take (a daemon may hold it)
    if (!hasRecord(root, (r) => r.netnsInode === inode, (e) => e.podNetns === inode)) return nothing(io, netns);
    // the guest behind --dev is the one whose host veth is that port's peer, its guest port the other port of that bridge
    const links = dev === undefined ? [] : await iproute.links(netns);
    const port = links.find((l) => l.ifname === dev);
    const hostIfindex = port?.link_index;
    const guestPorts = links.filter((l) => port?.master !== undefined && l.master === port.master && l !== port).map((l) => l.ifname);
    const ours = (r: AttachmentRecord) => (r.program === 'fixup' && (!dev || r.ifname === dev)) || (r.program === 'from_guest' && (!dev || guestPorts.includes(r.ifname)));

    const dp = Dataplane.open({ root });
    try {
      // from_guest first: the guest's traffic goes back to the bridge before fixup goes
      const records = dp
        .attachments()
        .filter((r) => r.netnsInode === inode && ours(r))
        .sort((a, b) => Number(b.program === 'from_guest') - Number(a.program === 'from_guest'));
      const endpoints = dp.endpoints().filter((e) => e.podNetns === inode && (!dev || e.hostIfindex === hostIfindex));
      if (records.length === 0 && endpoints.length === 0) return nothing(io, dev ? `${dev} in ${netns}` : netns);
      for (const r of records) {
        dp.removeRecord(r, netns);
        io.out(`detached ${r.program} from ${describe({ netns, ifname: r.ifname, hook: r.hook })}`);
      }
      killPoint('detach-record');
      for (const e of endpoints) {
        dp.deleteEndpoint(e.guestIp);
        io.out(`removed endpoint ${e.guestIp} (${e.guestMac})`);
      }
      killPoint('detach-endpoint');
    } finally {
      dp.closeAndPruneIfEmpty();
    }
    return 0;
  },
};

/** Whether vmpeer's state has a record (or an endpoint) that matches, read without the lock. */
function hasRecord(root: string | undefined, record: (r: AttachmentRecord) => boolean, endpoint: (e: Endpoint) => boolean = () => false): boolean {
  const view = Dataplane.view({ root });
  if (!view) return false;
  try {
    return view.attachments().some(record) || view.endpoints().some(endpoint);
  } finally {
    view.close();
  }
}

function nothing(io: { out(line: string): void }, where: string): number {
  io.out(`nothing attached in ${where}`);
  return 0;
}
