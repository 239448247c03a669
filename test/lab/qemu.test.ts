/**
 * A real QEMU guest (Debian kernel, busybox initramfs, virtio-net on the VM
 * pod's tap) behind the lab's node: the kernel path works, the emulated
 * peer-redirect fast path shows the seed's symptoms. One boot (software
 * emulation takes seconds).
 */
import test from 'ava';
import { alive, lab } from '../helpers/lab.js';

test('QEMU guest: kernel path 5/5 and TCP; with the fast path, 1 of N and a stalled TCP stream', async (t) => {
  const start = performance.now();
  const l = await lab(t, { vmPods: 1, plainPods: 1, qemu: true, emulator: false });
  const vm = l.vms[0]!;
  const q = vm.qemu!;
  t.log(`booted ${q.release} (${q.accel}) in ${((performance.now() - start) / 1000).toFixed(1)} s`);
  t.is(vm.guest, null);
  t.true(alive(q.pid));

  // the guest configured itself as KubeVirt's DHCP would have
  const cfg = await q.exec('cat /sys/class/net/eth0/address; ip -4 addr show dev eth0; ip route');
  t.is(cfg.code, 0);
  t.true(cfg.output.includes(vm.guestMac));
  t.true(cfg.output.includes(`inet ${vm.podIp}/32`));
  t.regex(cfg.output, /default via 169\.254\.1\.1 dev eth0/);

  // kernel path
  // an emulated guest can be slow to answer on a loaded machine: wait longer for the last replies
  t.is((await l.ping(l.client, vm.podIp, { count: 5, waitS: 3 })).received, 5, 'client → guest');
  t.is((await l.ping(l.plain[0]!, vm.podIp, { count: 5, waitS: 3 })).received, 5, 'on-node pod → guest');
  const echo = await l.tcpEcho(l.client, vm.podIp, 'hello guest', { timeoutMs: 5000 });
  t.true(echo.echoed, `echo: ${echo.error}`);
  const x = await l.transfer(l.client, vm.podIp, 256 * 1024, { timeoutMs: 20_000 });
  t.is(x.intact, 256 * 1024, `transfer: ${x.error}`);
  const neigh = await q.exec('ip neigh show 169.254.1.1');
  t.regex(neigh.output, /lladdr ee:ee:ee:ee:ee:ee/, 'the gateway answered by proxy ARP');

  // the fast path
  l.setEmulator(true);
  const p = await l.ping(l.client, vm.podIp, { count: 8, waitS: 3 });
  t.deepEqual(p.replies, [0], 'client → guest: only the first echo');
  t.deepEqual((await l.ping(l.plain[0]!, vm.podIp, { count: 8, waitS: 3 })).replies, [0], 'on-node pod → guest');
  const stalled = await l.tcpEcho(l.client, vm.podIp, 'lost', { timeoutMs: 1500 });
  t.true(stalled.connected, 'the handshake completes');
  t.false(stalled.echoed, 'the payload never arrives');
  t.true(l.emulatorStats().redirected >= 14);

  await l.destroy();
  t.false(alive(q.pid), 'QEMU is gone');
});
