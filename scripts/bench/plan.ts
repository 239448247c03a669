/** What a benchmark run measures: the full run and the smoke test. */
import type { E2eOptions } from './e2e.js';
import { DIAGNOSTIC, PRIMARY } from './paths.js';

/** What a run measures: the end-to-end knobs, the per-packet ones, and whether it is the smoke test. */
export type Plan = Pick<
  E2eOptions,
  'rounds' | 'rrSeconds' | 'tputSeconds' | 'omitSeconds' | 'paths' | 'profilePaths' | 'profileMetrics' | 'profileSeconds' | 'unpinnedPaths' | 'unpinnedSeconds'
> & { quick: boolean; perPacket: { repeat: number; rounds: number } };

export const FULL: Plan = {
  quick: false,
  rounds: 5,
  rrSeconds: 2,
  tputSeconds: 2,
  omitSeconds: 1,
  perPacket: { repeat: 1_000_000, rounds: 7 },
  paths: [...PRIMARY, ...DIAGNOSTIC],
  profilePaths: ['A', 'B', 'C', 'D', 'Cb', 'Db'],
  profileMetrics: ['throughput', 'rr'],
  profileSeconds: 2,
  unpinnedPaths: ['B', 'C'],
  unpinnedSeconds: 2,
};

export const QUICK: Plan = {
  quick: true,
  rounds: 1,
  rrSeconds: 1,
  tputSeconds: 1,
  omitSeconds: 0,
  perPacket: { repeat: 20_000, rounds: 1 },
  // the diagnostic paths with set-up of their own; A0, Bf and Cn only differ in switches the others use
  paths: [...PRIMARY, 'Cv'],
  profilePaths: ['C'],
  profileMetrics: ['throughput'],
  profileSeconds: 1,
  unpinnedPaths: ['C'],
  unpinnedSeconds: 1,
};
