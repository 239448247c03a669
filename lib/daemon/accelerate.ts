/**
 * Accelerate mode: `redirect` attached at the configured host interfaces
 * (adopted, upgraded in place or attached; removed where it is no longer
 * configured), and per guest IP whether `redirect` may skip its host veth's
 * egress (egress-policy.ts).
 */
import type { HookTarget } from '../bpf/link.js';
import type { NetnsId } from '../dataplane/dataplane.js';
import { conntrackWarning, policyInTheWay, SKIP_EGRESS_FLAG } from '../dataplane/egress-policy.js';
import { swapProgram } from '../dataplane/swap-program.js';
import { verifyRecord } from '../dataplane/verify.js';
import type { VmPort } from '../discovery/vm-pod.js';
import type { ProgramSyncDeps } from './changes.js';
import type { DaemonMetrics } from './metrics.js';
import type { Pod } from './pod.js';

export interface AccelerateDeps extends ProgramSyncDeps {
  selfInode: number;
  /** The node's netns (this process's), inode and cookie. */
  selfNetns: () => NetnsId;
  metrics: () => DaemonMetrics | null;
}

export class Accelerate {
  /** Guest IPs accelerate mode leaves to the kernel path: their host veth has egress programs. */
  readonly notAccelerated = new Set<string>();
  private readonly missingHostDevs = new Set<string>();
  private conntrackWarned = false;

  constructor(private readonly d: AccelerateDeps) {}

  /** Accelerate mode: whether `redirect` may skip the host veth's egress (egress-policy.ts). */
  mayRedirect(pod: Pod, port: VmPort): boolean {
    const { cfg, log } = this.d;
    if (!cfg.accelerate || cfg.skipEgressPrograms) return true;
    const policy = policyInTheWay(port.hostVeth, this.d.native);
    const refused = policy !== null;
    if (refused !== this.notAccelerated.has(port.guestIp)) {
      if (refused) {
        this.notAccelerated.add(port.guestIp);
        log.warn(
          { netns: pod.path, guestIp: port.guestIp, hostVeth: port.hostVeth.ifname, egress: policy.programs },
          `accelerate: not for ${port.guestIp}: ${policy.why} (its policy), which redirect would skip; its traffic takes the kernel path (--${SKIP_EGRESS_FLAG} redirects past it)`,
        );
      } else {
        this.notAccelerated.delete(port.guestIp);
        log.info({ netns: pod.path, guestIp: port.guestIp, hostVeth: port.hostVeth.ifname }, `accelerate: ${port.guestIp} accelerated again (no programs at its host veth's egress)`);
      }
    }
    return !refused;
  }

  /** The pod's guest IPs are forgotten with it. */
  forgetPod(pod: Pod): void {
    for (const p of pod.ports) this.notAccelerated.delete(p.guestIp);
  }

  ensureRedirects(reason: string): void {
    const { cfg, dp, log, changes, tags, selfInode } = this.d;
    const want = cfg.accelerate ? cfg.hostDevs : [];
    const conntrack = want.length > 0 && !this.conntrackWarned ? conntrackWarning() : null;
    if (conntrack) {
      this.conntrackWarned = true;
      log.warn({}, `accelerate: ${conntrack}`);
    }
    const records = dp.attachments().filter((r) => r.program === 'redirect');
    for (const r of records) {
      if (r.netnsInode === selfInode && want.includes(r.ifname)) continue;
      changes.dropRecord(r, null);
      changes.change('detach', { program: 'redirect', ifname: r.ifname, mode: r.mode }, 'detached redirect', 'accelerate mode is not configured for this interface');
    }
    const self = this.d.selfNetns();
    for (const ifname of want) {
      const target: HookTarget = { ifname, hook: 'ingress' };
      let record = records.find((r) => r.ifname === ifname && r.netnsInode === selfInode);
      try {
        if (record) {
          const v = verifyRecord(this.d.native, record, target, self, tags.redirect);
          if (v.state !== 'stale') record = changes.upgradeRecord(record, target, self);
          if (v.state === 'ok') continue;
          if (v.state === 'outdated') {
            swapProgram(this.d.native, record, target, dp.program('redirect'));
            changes.change('upgrade', { ifname, from: v.tag, to: tags.redirect }, 'upgraded redirect', 'the attached program differs from this object');
            continue;
          }
          changes.dropRecord(record, null);
          changes.change('drop_stale', { ifname, pin: record.pin }, 'dropped a stale attachment record', v.why);
        }
        const { record: created } = dp.attach('redirect', target, self, { mode: cfg.mode, first: cfg.first });
        this.missingHostDevs.delete(ifname);
        changes.recordAdded(created);
        changes.change('attach', { program: 'redirect', ifname, mode: created.mode, first: cfg.first }, 'attached redirect', `accelerate mode (${reason})`);
      } catch (e) {
        if ((e as Error).name === 'NoSuchInterfaceError' || (e as { code?: string }).code === 'ENODEV') {
          if (!this.missingHostDevs.has(ifname)) log.warn({ ifname }, 'accelerate: no such host interface yet; it is attached when it appears');
          this.missingHostDevs.add(ifname);
        } else {
          this.d.metrics()?.reconcileErrors.inc({ kind: 'redirect' });
          log.error({ ifname, err: (e as Error).message }, 'accelerate: attaching redirect failed');
        }
      }
    }
  }
}
