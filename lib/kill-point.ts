/**
 * A named point in a transaction where a test may kill this process
 * (VMPEER_TEST_KILL_AT=<name>: SIGKILL, as an OOM kill or a node reboot
 * would), to prove that the next vmpeer run finds the state it left and
 * repairs it. Does nothing unless that variable is set.
 */
export function killPoint(name: string): void {
  if (process.env.VMPEER_TEST_KILL_AT === name) process.kill(process.pid, 'SIGKILL');
}
