/**
 * A real QEMU guest on the VM pod's tap (tap0), as virt-launcher runs it:
 * a Debian kernel, the busybox initramfs of initramfs.ts, virtio-net on the
 * tap with the guest MAC. KVM when /dev/kvm works, software emulation (TCG,
 * ~10 s to boot) otherwise. QEMU gets SIGKILL when the lab process dies.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { killAndWait, run, spawnIn } from './exec.js';
import { guestInitramfs, READY_MARK } from './initramfs.js';
import { type GuestKernel, guestKernel } from './kernel.js';

export interface QemuGuestOptions {
  /** netns path of the VM pod (where the tap is). */
  podNs: string;
  tap: string;
  mac: string;
  ip: string;
  /** Kernel series or Debian release (default "6.1"). */
  kernel?: string;
  /** Queues of a multi-queue tap (> 1 only for taps created multi_queue). */
  queues?: number;
  memoryMb?: number;
  bootTimeoutMs?: number;
  accel?: 'auto' | 'kvm' | 'tcg';
  /** A QMP socket (unix path) to drive QEMU with, e.g. for live migration (migration.ts). */
  qmpSocket?: string;
  /**
   * A live-migration target: QEMU waits for the guest's state on this URI
   * (`-incoming unix:…`) instead of booting it. boot() then resolves once the
   * QMP socket exists; the guest runs when the migration has completed.
   */
  incoming?: string;
}

const QBOOT = '/usr/share/qemu/qboot.rom';
const CONSOLE_KEEP = 64 * 1024;

/** The process name of lab guests (`pgrep -f vmpeer-lab-guest`). */
export const QEMU_NAME = 'vmpeer-lab-guest';
const KVM_PROBE_TIMEOUT_MS = 20_000;
const TCG_BOOT_TIMEOUT_MS = 120_000;

let kvmChecked: Promise<boolean> | undefined;
let kvmBroken = false;

/** Whether QEMU can use KVM here (the device may exist and still refuse). */
export function kvmUsable(): Promise<boolean> {
  kvmChecked ??= (async () => {
    if (!existsSync('/dev/kvm')) return false;
    const r = await run(
      'qemu-system-x86_64',
      ['-machine', 'none,accel=kvm', '-nodefaults', '-display', 'none', '-qmp', 'stdio'],
      {
        input: '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
        allowFail: true,
        timeoutMs: 20_000,
      },
    ).catch(() => ({ code: 1 }));
    return r.code === 0;
  })();
  return kvmChecked;
}

export class QemuGuest {
  private console = '';
  /** Characters dropped from the front of `console` (offsets stay absolute). */
  private dropped = 0;
  private exited = false;
  private queue: Promise<unknown> = Promise.resolve();
  private waiters: Array<() => void> = [];

  private constructor(
    private readonly child: ChildProcess,
    readonly release: string,
    readonly accel: 'kvm' | 'tcg',
    readonly ip: string,
    readonly mac: string,
  ) {
    const take = (b: Buffer) => {
      this.console += b.toString('latin1').replace(/\r/g, '');
      if (this.console.length > 2 * CONSOLE_KEEP) {
        this.dropped += this.console.length - CONSOLE_KEEP;
        this.console = this.console.slice(-CONSOLE_KEEP);
      }
      for (const w of this.waiters.splice(0)) w();
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    child.on('exit', () => {
      this.exited = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /**
   * Boots the guest; resolves once its network and servers are up. With
   * accel 'auto' (the default, or $VMPEER_LAB_ACCEL), KVM is tried first
   * where /dev/kvm answers, and software emulation when the KVM boot fails
   * (nested hosts may accept /dev/kvm and still crash or hang a guest); the
   * verdict is kept for the rest of the process.
   */
  static async boot(o: QemuGuestOptions): Promise<QemuGuest> {
    const kernel = await guestKernel(o.kernel ?? '6.1');
    const initrd = guestInitramfs(kernel);
    const want = o.accel ?? (process.env.VMPEER_LAB_ACCEL as QemuGuestOptions['accel']) ?? 'auto';
    const tries: Array<'kvm' | 'tcg'> =
      want === 'auto' ? (kvmBroken || !(await kvmUsable()) ? ['tcg'] : ['kvm', 'tcg']) : [want];
    for (let i = 0; ; i++) {
      const accel = tries[i]!;
      const last = i === tries.length - 1;
      const timeout = o.bootTimeoutMs ?? (accel === 'kvm' && !last ? KVM_PROBE_TIMEOUT_MS : TCG_BOOT_TIMEOUT_MS);
      try {
        return await QemuGuest.start(o, kernel, initrd, accel, timeout);
      } catch (e) {
        if (last) throw e;
        kvmBroken = true;
      }
    }
  }

  private static async start(
    o: QemuGuestOptions,
    kernel: GuestKernel,
    initrd: string,
    accel: 'kvm' | 'tcg',
    timeoutMs: number,
  ): Promise<QemuGuest> {
    const queues = o.queues ?? 1;
    const append = [
      'console=ttyS0',
      'rdinit=/init',
      'panic=-1',
      'quiet',
      'loglevel=3',
      'mitigations=off',
      'tsc=reliable',
      // software emulation on a loaded host: the boot-time IO-APIC timer check can miss its ticks
      // and panic ("IO-APIC + timer doesn't work"); the timer works, skip the check
      'no_timer_check',
      'i8042.noaux',
      'i8042.nokbd',
      'i8042.nopnp',
      `vmpeer.ip=${o.ip}`,
    ].join(' ');
    const netdev = `tap,id=n0,ifname=${o.tap},script=no,downscript=no,vhost=off${queues > 1 ? `,queues=${queues}` : ''}`;
    const device = `virtio-net-pci,netdev=n0,mac=${o.mac}${queues > 1 ? `,mq=on,vectors=${2 * queues + 2}` : ''}`;
    const args = [
      '--core=0', // prlimit: no core file if QEMU aborts (it does on some nested KVM hosts)
      'qemu-system-x86_64',
      '-name',
      QEMU_NAME,
      '-machine',
      'pc',
      ...(accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg', '-cpu', 'max']),
      ...(existsSync(QBOOT) ? ['-bios', QBOOT] : []),
      '-smp',
      '1',
      '-m',
      String(o.memoryMb ?? 256),
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-monitor',
      'none',
      '-no-reboot',
      '-serial',
      'stdio',
      '-kernel',
      kernel.image,
      '-initrd',
      initrd,
      '-append',
      append,
      '-netdev',
      netdev,
      '-device',
      device,
      ...(o.qmpSocket ? ['-qmp', `unix:${o.qmpSocket},server=on,wait=off`] : []),
      ...(o.incoming ? ['-incoming', o.incoming] : []),
    ];
    const child = spawnIn(o.podNs, 'prlimit', args);
    const guest = new QemuGuest(child, kernel.release, accel, o.ip, o.mac);
    try {
      if (o.incoming) await guest.waitForFile(o.qmpSocket ?? '', timeoutMs);
      else await guest.waitFor(new RegExp(`${READY_MARK} ip=\\S+ mac=\\S+`), timeoutMs);
    } catch (e) {
      await guest.kill();
      throw new Error(`QEMU guest (${accel}, ${kernel.release}) did not come up: ${(e as Error).message}`);
    }
    return guest;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The guest's serial console so far (at least the last 64 KiB). */
  get consoleText(): string {
    return this.console;
  }

  /** Absolute offset of the console's end, for waitFor(…, from). */
  get consoleOffset(): number {
    return this.dropped + this.console.length;
  }

  /** Waits until a file (QEMU's QMP socket) exists, or QEMU exits. */
  private async waitForFile(file: string, timeoutMs: number): Promise<void> {
    if (!file) throw new Error('QEMU guest: an incoming migration needs a QMP socket');
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(file)) {
      if (this.exited) throw new Error(`QEMU exited; console:\n${this.console.slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`QEMU guest: no QMP socket ${file} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Waits until the console from offset `from` on matches `re`; returns the match. */
  waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        done();
        reject(new Error(`QEMU guest: timed out waiting for ${re}; console:\n${this.console.slice(-3000)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
      };
      const check = () => {
        const m = re.exec(this.console.slice(Math.max(0, from - this.dropped)));
        if (m) {
          done();
          resolve(m);
        } else if (this.exited) {
          done();
          reject(new Error(`QEMU guest exited; console:\n${this.console.slice(-3000)}`));
        } else {
          this.waiters.push(check);
        }
      };
      check();
    });
  }

  /**
   * Runs a shell command in the guest (over the serial console); resolves
   * with its output and exit status. Commands run one at a time.
   */
  exec(command: string, timeoutMs = 30_000): Promise<{ code: number; output: string }> {
    const step = this.queue.then(async () => {
      const tag = `__VMPEER_${Math.random().toString(36).slice(2)}__`;
      const from = this.consoleOffset;
      this.child.stdin!.write(`echo ${tag}B; ( ${command} ) 2>&1; echo ${tag}E $?\n`);
      const m = await this.waitFor(new RegExp(`${tag}B\\n([\\s\\S]*?)${tag}E (\\d+)\\n`), timeoutMs, from);
      return { code: Number(m[2]), output: m[1]! };
    });
    this.queue = step.catch(() => undefined);
    return step;
  }

  /** Kills QEMU. Safe to call twice. */
  async kill(): Promise<void> {
    await killAndWait(this.child, 'SIGKILL');
  }
}
