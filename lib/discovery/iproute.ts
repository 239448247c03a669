/**
 * Reading links, addresses, routes, neighbours and bridge FDBs with
 * iproute2's JSON output, inside a given netns (nsenter keeps /sys/fs/bpf and
 * /var/run/netns visible, unlike `ip netns exec`).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Link {
  ifindex: number;
  ifname: string;
  address?: string;
  operstate?: string;
  flags?: string[];
  master?: string;
  link_index?: number; // veth: the peer's ifindex
  link_netnsid?: number; // present when the peer lives in another netns
  linkinfo?: {
    info_kind?: string;
    info_slave_kind?: string;
    info_slave_data?: { learning?: boolean };
    info_data?: { type?: string };
  };
}

export interface AddrInfo {
  family: 'inet' | 'inet6';
  local: string;
  prefixlen: number;
  scope: string;
}

export interface Address {
  ifindex: number;
  ifname: string;
  address?: string;
  addr_info: AddrInfo[];
}

export interface FdbEntry {
  mac: string;
  ifname: string;
  master?: string;
  state?: string; // 'permanent', 'static' or absent (learned)
  flags?: string[]; // 'self' for the port's own entries
}

export interface Neighbour {
  dst: string;
  dev: string;
  lladdr?: string;
  state?: string[];
}

export interface Route {
  dst: string;
  dev: string;
  scope?: string;
}

async function json<T>(netns: string | undefined, cmd: 'ip' | 'bridge', args: string[]): Promise<T> {
  const argv = netns ? ['nsenter', `--net=${netns}`, cmd, '-j', ...args] : [cmd, '-j', ...args];
  const { stdout } = await run(argv[0]!, argv.slice(1), { maxBuffer: 64 * 1024 * 1024 });
  return (stdout.trim() ? JSON.parse(stdout) : []) as T;
}

export const iproute = {
  links: (netns?: string) => json<Link[]>(netns, 'ip', ['-d', 'link', 'show']),
  addresses: (netns?: string) => json<Address[]>(netns, 'ip', ['addr', 'show']),
  fdb: (netns: string | undefined, bridge: string) => json<FdbEntry[]>(netns, 'bridge', ['fdb', 'show', 'br', bridge]),
  neighbours: (netns: string | undefined, dev: string) => json<Neighbour[]>(netns, 'ip', ['neigh', 'show', 'dev', dev]),
  routes: (netns: string | undefined, dev: string) => json<Route[]>(netns, 'ip', ['-4', 'route', 'show', 'dev', dev]),
};

export type IpRoute = typeof iproute;
