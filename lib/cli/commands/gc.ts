/** vmpeer gc: remove what `vmpeer status` shows as stale (records and endpoints the kernel no longer backs). */
import { COMMON_HELP, commonOptions, type Command } from '../command.js';
import { requirePrivileges } from '../../privileges.js';
import { Dataplane } from '../../dataplane/dataplane.js';
import { describeStale, findStale } from '../../dataplane/stale.js';
import { native } from '../../native.js';

export const gcCommand: Command = {
  name: 'gc',
  summary: 'remove stale records and endpoints (pods deleted without detach)',
  help: `Usage:
  vmpeer gc

Removes vmpeer's state that the kernel no longer backs: records of
attachments whose network namespace or interface is gone or whose program is
no longer at its hook, and endpoints whose pod is gone or whose host ifindex
is no longer the veth peer of that pod (a pod deleted without \`vmpeer
detach\`). Attachments that are still in place are never touched. While the
vmpeer daemon runs, it does this itself and gc is refused.
${COMMON_HELP}`,
  options: { ...commonOptions },
  async run(values, io) {
    requirePrivileges('vmpeer gc');
    const root = values.bpffs as string | undefined;
    if (!Dataplane.exists(root)) {
      io.out('nothing stale: vmpeer has no state here');
      return 0;
    }
    const n = native();
    const dp = Dataplane.open({ root });
    try {
      const stale = await findStale(dp, n);
      for (const s of stale) {
        if (s.kind === 'record') dp.forgetRecord(s.record, s.netns);
        else dp.deleteEndpoint(s.guestIp);
        io.out(`removed ${describeStale(s)}`);
      }
      if (stale.length === 0) io.out('nothing stale');
    } finally {
      dp.closeAndPruneIfEmpty();
    }
    return 0;
  },
};
