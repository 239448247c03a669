/** What every vmpeer subcommand provides, and the output channels it writes to. */
import type { ParseArgsConfig } from 'node:util';

export interface Io {
  out(line: string): void;
  err(line: string): void;
}

export type Values = Record<string, string | boolean | undefined>;

export interface Command {
  name: string;
  summary: string;
  help: string;
  options: NonNullable<ParseArgsConfig['options']>;
  run(values: Values, io: Io): Promise<number>;
}

/** Options every command that touches the dataplane accepts. */
export const commonOptions = {
  bpffs: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const COMMON_HELP = `  --bpffs <dir>     where vmpeer keeps its pinned state (default /sys/fs/bpf/vmpeer)
  -h, --help        show this help`;
