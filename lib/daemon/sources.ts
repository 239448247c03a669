/**
 * Where pod network namespaces come from: files in netns directories
 * (/var/run/netns/cni-…, what container runtimes bind-mount) and, with
 * --proc, /proc/<pid>/ns/net of every process (hostPID). A namespace is
 * identified by the inode of its nsfs file; the same namespace seen several
 * ways is one entry, named by its most stable path (a netns file first).
 *
 * The daemon's own namespace is the node's and is never a pod. A process the
 * daemon started itself (a child of its own) is not evidence that a pod
 * exists: it would keep a deleted pod alive forever.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface NetnsEntry {
  inode: number;
  path: string;
  via: 'dir' | 'proc';
}

export interface SourceOptions {
  dirs: string[];
  prefix: string;
  proc: boolean;
  procRoot: string;
}

export interface ScanResult {
  found: Map<number, NetnsEntry>;
  /** Names in a netns dir that are not (yet) a namespace: a runtime creates the file, then mounts it. */
  unsettled: number;
}

export class NetnsSources {
  readonly selfInode: number;
  private readonly nsfsDev: number;
  private readonly ownPid = process.pid;

  constructor(private readonly options: SourceOptions) {
    const self = fs.statSync('/proc/self/ns/net');
    this.selfInode = self.ino;
    this.nsfsDev = self.dev;
  }

  scan(): ScanResult {
    const found = new Map<number, NetnsEntry>();
    let unsettled = 0;
    for (const dir of this.options.dirs) {
      let names: string[];
      try {
        names = fs.readdirSync(dir);
      } catch {
        continue; // checked at start; a directory that vanishes later holds nothing
      }
      for (const name of names.sort()) {
        if (!name.startsWith(this.options.prefix)) continue;
        const file = path.join(dir, name);
        let st: fs.Stats;
        try {
          st = fs.statSync(file);
        } catch {
          continue; // removed while we looked
        }
        if (st.dev !== this.nsfsDev) {
          if (st.isFile()) unsettled++;
          continue;
        }
        if (st.ino === this.selfInode || found.has(st.ino)) continue;
        found.set(st.ino, { inode: st.ino, path: file, via: 'dir' });
      }
    }
    if (this.options.proc) this.scanProc(found);
    return { found, unsettled };
  }

  private scanProc(found: Map<number, NetnsEntry>): void {
    const root = this.options.procRoot;
    let pids: string[];
    try {
      pids = fs.readdirSync(root);
    } catch {
      return;
    }
    const candidates = new Map<number, number[]>();
    for (const p of pids) {
      if (!/^\d+$/.test(p)) continue;
      const pid = Number(p);
      if (pid === this.ownPid) continue;
      let link: string;
      try {
        link = fs.readlinkSync(`${root}/${p}/ns/net`);
      } catch {
        continue; // exited, a kernel thread, or not ours to see
      }
      const m = /^net:\[(\d+)\]$/.exec(link);
      if (!m) continue;
      const ino = Number(m[1]);
      if (ino === this.selfInode || found.has(ino)) continue;
      const list = candidates.get(ino);
      if (list) list.push(pid);
      else candidates.set(ino, [pid]);
    }
    for (const [ino, list] of candidates) {
      // the first process that is not a child of ours names the namespace
      const pid = list.find((p) => this.parentOf(p) !== this.ownPid);
      if (pid !== undefined) found.set(ino, { inode: ino, path: `${root}/${pid}/ns/net`, via: 'proc' });
    }
  }

  private parentOf(pid: number): number | null {
    try {
      const stat = fs.readFileSync(`${this.options.procRoot}/${pid}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      return null;
    }
  }

  /** Watches the netns directories; `onChange` is called (coalesced) when names come or go. */
  watch(onChange: () => void): () => void {
    const watchers = this.options.dirs.flatMap((dir) => {
      try {
        const w = fs.watch(dir, { persistent: true }, () => onChange());
        w.on('error', () => {
          // the directory went away; the periodic resync still scans
        });
        return [w];
      } catch {
        return [];
      }
    });
    return () => {
      for (const w of watchers) w.close();
    };
  }
}
