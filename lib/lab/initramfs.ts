/**
 * The QEMU guest's initramfs, built at run time: a static busybox, an init
 * that loads the virtio-net driver and configures eth0 the way KubeVirt's
 * DHCP would (POD_IP/32, 169.254.1.1 on-link, default route through it),
 * then serves TCP echo (port 7) and the sink (port 9) like the lab agent,
 * and leaves a shell on the serial console for the lab to drive.
 *
 * The cpio (newc) archive is written here, so no cpio tool is needed; images
 * are cached by content under .cache/lab-kernel/.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, readSync, closeSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { packageRoot } from '../native.js';
import { ECHO_PORT, SINK_PORT } from './agent-main.js';
import type { GuestKernel } from './kernel.js';

export const READY_MARK = 'VMPEER-GUEST-READY';

const INIT = `#!/bin/sh
/bin/busybox mkdir -p /proc /sys /tmp /dev
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
for m in $(ls /lib/modules | sort); do insmod /lib/modules/$m || echo "init: insmod $m failed"; done
IP=
for x in $(cat /proc/cmdline); do
  case $x in vmpeer.ip=*) IP=\${x#vmpeer.ip=} ;; esac
done
ip link set lo up
n=0
while ! ip link show eth0 >/dev/null 2>&1; do
  n=$((n + 1)); [ $n -gt 300 ] && { echo "init: no eth0"; break; }
  sleep 0.1
done
ip link set eth0 up
ip addr add $IP/32 dev eth0
ip route add 169.254.1.1 dev eth0 scope link
ip route add default via 169.254.1.1 dev eth0
nc -ll -p ${ECHO_PORT} -e cat &
nc -ll -p ${SINK_PORT} -e /bin/sink &
stty -echo -onlcr 2>/dev/null
echo "${READY_MARK} ip=$IP mac=$(cat /sys/class/net/eth0/address)"
while true; do sh; done
`;

/** Reads to EOF from the peer, answers "<count> <sha256>" (as the lab agent's sink). */
const SINK = `#!/bin/sh
f=/tmp/sink.$$
mkfifo $f
sha256sum < $f > $f.h &
tee $f | wc -c > $f.c
wait
echo "$(($(cat $f.c))) $(cut -d' ' -f1 $f.h)"
rm -f $f $f.h $f.c
`;

interface Entry {
  name: string;
  mode: number; // including the file type bits
  data?: Buffer;
  rdev?: [number, number];
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

/** A newc cpio archive of `entries` (parents before children). */
export function cpioNewc(entries: Entry[]): Buffer {
  const parts: Buffer[] = [];
  const pad4 = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  let ino = 1;
  const push = (e: Entry) => {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(e.name + '\0');
    const header =
      '070701' +
      [
        ino++,
        e.mode,
        0, // uid
        0, // gid
        e.mode & S_IFDIR ? 2 : 1,
        0, // mtime: reproducible
        data.length,
        0,
        0,
        e.rdev?.[0] ?? 0,
        e.rdev?.[1] ?? 0,
        name.length,
        0,
      ]
        .map(hex)
        .join('');
    parts.push(Buffer.from(header, 'ascii'), name, pad4(110 + name.length), data, pad4(data.length));
  };
  entries.forEach(push);
  push({ name: 'TRAILER!!!', mode: 0 });
  return Buffer.concat(parts);
}

/** True when the ELF file has no PT_INTERP (a static executable that runs in an initramfs). */
export function isStaticElf(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const h = Buffer.alloc(64);
    readSync(fd, h, 0, 64, 0);
    if (h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2) return false; // ELF64 only
    const phoff = Number(h.readBigUInt64LE(32));
    const phentsize = h.readUInt16LE(54);
    const phnum = h.readUInt16LE(56);
    const ph = Buffer.alloc(phentsize * phnum);
    readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) if (ph.readUInt32LE(i * phentsize) === 3) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}

export function staticBusybox(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) {
    if (existsSync(p) && isStaticElf(p)) return p;
  }
  throw new Error('lab: a static busybox is needed for the QEMU guest (apt-get install busybox-static)');
}

function readModule(file: string): Buffer {
  if (file.endsWith('.xz')) return execFileSync('xz', ['-dc', file], { maxBuffer: 64 << 20 });
  if (file.endsWith('.zst')) return execFileSync('zstd', ['-qdc', file], { maxBuffer: 64 << 20 });
  if (file.endsWith('.gz')) return execFileSync('gzip', ['-dc', file], { maxBuffer: 64 << 20 });
  return readFileSync(file);
}

export function initramfsCacheDir(): string {
  return process.env.VMPEER_LAB_CACHE ?? path.join(packageRoot, '.cache', 'lab-kernel');
}

/** Builds (or finds in the cache) the guest initramfs for `kernel`; returns its path. */
export function guestInitramfs(kernel: GuestKernel): string {
  const busybox = staticBusybox();
  const bb = readFileSync(busybox);
  const modules = kernel.modules.map((f, i) => ({
    name: `lib/modules/${String(i + 1).padStart(2, '0')}-${path.basename(f).replace(/\.(xz|zst|gz)$/, '')}`,
    file: f,
  }));
  const key = createHash('sha256')
    .update(INIT)
    .update(SINK)
    .update(bb)
    .update(kernel.release)
    .update(modules.map((m) => m.file).join('\n'))
    .digest('hex')
    .slice(0, 16);
  const dir = initramfsCacheDir();
  const out = path.join(dir, `guest-${kernel.release}-${key}.cpio`);
  if (existsSync(out)) return out;

  const entries: Entry[] = [
    { name: 'bin', mode: S_IFDIR | 0o755 },
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: bb },
    { name: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') },
    { name: 'bin/sink', mode: S_IFREG | 0o755, data: Buffer.from(SINK) },
    { name: 'dev', mode: S_IFDIR | 0o755 },
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdev: [5, 1] },
    { name: 'dev/null', mode: S_IFCHR | 0o666, rdev: [1, 3] },
    { name: 'init', mode: S_IFREG | 0o755, data: Buffer.from(INIT) },
    { name: 'lib', mode: S_IFDIR | 0o755 },
    { name: 'lib/modules', mode: S_IFDIR | 0o755 },
    ...modules.map((m) => ({ name: m.name, mode: S_IFREG | 0o644, data: readModule(m.file) })),
    { name: 'proc', mode: S_IFDIR | 0o755 },
    { name: 'sys', mode: S_IFDIR | 0o755 },
    { name: 'tmp', mode: S_IFDIR | 0o1777 },
  ];
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, cpioNewc(entries));
  renameSync(tmp, out);
  return out;
}
