/**
 * A named point in a transaction where a test may kill this process
 * (VMPEER_TEST_KILL_AT=<name>: SIGKILL, as an OOM kill or a node reboot
 * would), to prove that the next vmpeer run finds the state it left and
 * repairs it, or (in-process tests) run something there: what other
 * processes, or the kernel's programs, might do at that moment. Does
 * nothing unless that variable or a hook is set.
 */
export const pointHooks = new Map<string, () => void>();

export function killPoint(name: string): void {
  pointHooks.get(name)?.();
  if (process.env.VMPEER_TEST_KILL_AT === name) process.kill(process.pid, 'SIGKILL');
}
