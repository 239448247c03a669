/** What accelerate mode (the redirect program on host interfaces) costs, in the words the CLI and the daemon print. */
export const ACCELERATE_WARNING =
  'warning: accelerate mode forwards VM traffic arriving on this interface straight into the VM pods: it bypasses host netfilter (iptables/nftables) for that traffic, and CNI programs placed after vmpeer\'s at this hook';
