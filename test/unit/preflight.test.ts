/** Checks made before anything changes: privileges and kernel support (no kernel needed). */
import test from 'ava';
import { effectiveCapabilities, requirePrivileges } from '../../lib/privileges.js';
import { Dataplane } from '../../lib/dataplane/dataplane.js';
import { KernelUnsupportedError, NotPermittedError } from '../../lib/errors.js';
import type { Native } from '../../lib/native.js';

test('capabilities are read from /proc/self/status', (t) => {
  t.is(effectiveCapabilities('Name:\tx\nCapEff:\t000001ffffffffff\n'), 0x1ffffffffffn);
  t.is(effectiveCapabilities('Name:\tx\n'), 0n);
});

test('root passes; missing capabilities are named', (t) => {
  t.notThrows(() => requirePrivileges('vmpeer attach', 0x1ffffffffffn));
  const err = t.throws(() => requirePrivileges('vmpeer attach', (1n << 12n) | (1n << 39n)), { instanceOf: NotPermittedError });
  t.is(err!.message, 'vmpeer attach needs CAP_SYS_ADMIN: run it as root (or grant those capabilities)');
  t.is((err as NotPermittedError).exitCode, 2);
  t.regex(t.throws(() => requirePrivileges('x', 0n))!.message, /CAP_NET_ADMIN, CAP_SYS_ADMIN/);
});

test('a kernel without bpf_redirect_peer is refused before anything is loaded', (t) => {
  let loaded = false;
  const fake = {
    kernelFeatures: () => ({ tcx: false, redirectPeer: false }),
    openObject: () => {
      loaded = true;
      throw new Error('must not load');
    },
  } as unknown as Native;
  const err = t.throws(() => Dataplane.open({ native: fake, root: '/sys/fs/bpf/vpt-never' }), { instanceOf: KernelUnsupportedError });
  t.regex(err!.message, /lacks bpf_redirect_peer: vmpeer needs Linux 5\.10 or later/);
  t.false(loaded);
});
