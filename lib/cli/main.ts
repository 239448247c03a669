/**
 * The vmpeer command line. Exit codes (docs/design.md §8): 0 done, 1 failed at run
 * time (nothing half-applied), 2 bad usage or bad input. Errors are one line
 * on stderr; VMPEER_DEBUG=1 adds the stack.
 */
import { parseArgs } from 'node:util';
import { version } from '../version.js';
import type { Command, Io, Values } from './command.js';
import { attachCommand } from './commands/attach.js';
import { detachCommand } from './commands/detach.js';
import { statusCommand } from './commands/status.js';
import { demoCommand } from './commands/demo.js';
import { daemonCommand } from './commands/daemon.js';
import { gcCommand } from './commands/gc.js';
import { VmpeerError } from '../errors.js';
import { AddonLoadError } from '../support.js';

const commands: Command[] = [attachCommand, detachCommand, statusCommand, gcCommand, demoCommand, daemonCommand];

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `vmpeer keeps the eBPF peer-redirect fast path working for KubeVirt VMs bridged onto the pod network.

Usage: vmpeer <command> [options]

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run 'vmpeer <command> --help' for a command's options and examples.`;
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    io.out(version());
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    io.err(`vmpeer: unknown command '${name}' (commands: ${commands.map((c) => c.name).join(', ')})`);
    return 2;
  }
  try {
    const { values, positionals } = parseArgs({ args: rest, options: command.options, strict: true, allowPositionals: true });
    if (values.help) {
      io.out(command.help);
      return 0;
    }
    if (positionals.length > 0) {
      io.err(`vmpeer ${name}: unexpected argument '${positionals[0]}' (see 'vmpeer ${name} --help')`);
      return 2;
    }
    return await command.run(values as Values, io);
  } catch (e) {
    return report(e, name, io);
  }
}

function report(e: unknown, name: string, io: Io): number {
  const debug = process.env.VMPEER_DEBUG ? `\n${(e as Error).stack}` : '';
  if (e instanceof VmpeerError || e instanceof AddonLoadError) {
    io.err(`vmpeer ${name}: ${e.message}${debug}`);
    return e.exitCode;
  }
  const code = (e as { code?: string }).code ?? '';
  if (code.startsWith('ERR_PARSE_ARGS')) {
    io.err(`vmpeer ${name}: ${(e as Error).message} (see 'vmpeer ${name} --help')`);
    return 2;
  }
  if (code === 'EACCES' || code === 'EPERM') {
    io.err(`vmpeer ${name}: permission denied (${(e as Error).message}): run as root; vmpeer needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN${debug}`);
    return 2;
  }
  io.err(`vmpeer ${name}: ${(e as Error).message ?? String(e)}${debug}`);
  return 1;
}
