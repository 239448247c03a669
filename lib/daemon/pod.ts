/**
 * What the daemon knows of one pod netns (keyed by its nsfs inode), and the
 * request to check it. The reconciler's collaborators share this record; none
 * of them owns it.
 */
import fs from 'node:fs';
import type { VmPort } from '../discovery/vm-pod.js';
import { Credit } from './credit.js';
import type { Monitor } from './monitor.js';

/** A new netns may still become a VM pod: watched (monitor, polls) this long. */
export const YOUNG_MS = 60_000;
/**
 * A bridge that learned more MACs than this on its guest ports has a guest
 * sending from many (a flood, or a nested network): its FDB events no longer
 * start checks (each would re-read the whole FDB), it is polled this slowly.
 */
export const AMBIGUOUS_MACS = 16;
export const AMBIGUOUS_POLL_MS = 5_000;
/** Checks of one pod start at most once per CHECK_EVERY_MS on average, after a burst of CHECK_BURST (credit.ts). */
export const CHECK_EVERY_MS = 50;
export const CHECK_BURST = 3;

export interface Pod {
  inode: number;
  path: string;
  via: 'dir' | 'proc';
  seenAt: number;
  vmAt: number | null;
  kind: 'unknown' | 'plain' | 'vm';
  ports: VmPort[];
  /**
   * "program@ifname" → when its record was last verified against the kernel:
   * the port's ifindexes then, and for a tcx link its "linkId/progId" (a later
   * look at the pin alone tells whether it is still that link: attachments.ts).
   */
  verified: Map<string, { generation: string; link: string | null }>;
  /** When a full resync last looked into it (0: never): the periodic resync looks into those looked into longest ago. */
  lookedAt: number;
  waitingLogged: boolean;
  /** Why the bridge bypass is unsafe for this pod, as last logged (null: safe, or nothing logged). */
  bridgeKeptLogged: string | null;
  /** Guest IPs whose endpoint cannot be written (the table has no slot for them), and why: the pod is uncovered. */
  uncovered: Map<string, string>;
  /** Its bridge learned more than AMBIGUOUS_MACS MACs on a guest port: polled, FDB events ignored. */
  ambiguous: boolean;
  lastCheckAt: number;
  /** What its events may still start checks for (rate limit per pod). */
  credit: Credit;
  monitor: Monitor | null;
  monitorAt: number;
  monitorRestarts: number;
  timer: NodeJS.Timeout | null;
  /** The pending kick (checks.ts): a timer, or an immediate when the pod has credit. */
  kick: { cancel(): void } | null;
  /** When the pending kick fires (Date.now()). */
  kickAt: number;
  /** The pending kick verifies the pod's attachments against the kernel (an event said one may be gone). */
  kickVerify: boolean;
  running: Promise<void> | null;
  /** The check this pod waits a slot for (not started yet): later requests merge into it. */
  queued: CheckRequest | null;
  /** A check asked for while one runs: it runs right after. */
  again: CheckRequest | null;
  failures: number;
  gone: boolean;
}

export interface CheckRequest {
  reason: string;
  verify: boolean;
  /** Asked for by a full resync: waits behind the checks that events and polls ask for. */
  background: boolean;
}

export function newPod(inode: number, path: string, via: 'dir' | 'proc'): Pod {
  return {
    inode,
    path,
    via,
    seenAt: Date.now(),
    vmAt: null,
    kind: 'unknown',
    ports: [],
    verified: new Map(),
    lookedAt: 0,
    waitingLogged: false,
    bridgeKeptLogged: null,
    uncovered: new Map(),
    ambiguous: false,
    lastCheckAt: 0,
    credit: new Credit(CHECK_BURST, CHECK_EVERY_MS),
    monitor: null,
    monitorAt: 0,
    monitorRestarts: 0,
    timer: null,
    kick: null,
    kickAt: 0,
    kickVerify: false,
    running: null,
    queued: null,
    again: null,
    failures: 0,
    gone: false,
  };
}

/** A VM pod, or one that may still become one, is watched by a monitor. */
export function wantsMonitor(pod: Pod): boolean {
  return pod.kind !== 'plain' || Date.now() - pod.seenAt < YOUNG_MS;
}

/** The pod's netns file still holds its namespace. */
export function stillThere(pod: Pod): boolean {
  return inodeOf(pod.path) === pod.inode;
}

export function inodeOf(file: string): number | null {
  try {
    return fs.statSync(file).ino;
  } catch {
    return null;
  }
}
