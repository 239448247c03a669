/** Checks made before anything changes: privileges and kernel support (no kernel needed). */
import test from 'ava';
import { effectiveCapabilities, memlockNeeded, requirePrivileges } from '../../lib/privileges.js';
import { parseConfig, scopeWarning } from '../../lib/daemon/config.js';
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

test('CAP_SYS_RESOURCE: needed where BPF maps count against a limited RLIMIT_MEMLOCK (before 5.11)', (t) => {
  const limited = 'Max locked memory         8388608              8388608              bytes     \n';
  const unlimited = 'Max locked memory         unlimited            unlimited            bytes     \n';
  t.true(memlockNeeded('5.10.0-32-amd64', limited));
  t.false(memlockNeeded('5.10.0-32-amd64', unlimited));
  t.false(memlockNeeded('5.11.0', limited));
  t.false(memlockNeeded('6.18.44-fc', limited));
  const noResource = (1n << 12n) | (1n << 21n) | (1n << 39n);
  t.notThrows(() => requirePrivileges('vmpeer daemon', noResource, false));
  t.is(t.throws(() => requirePrivileges('vmpeer daemon', noResource, true))!.message, 'vmpeer daemon needs CAP_SYS_RESOURCE: run it as root (or grant those capabilities)');
  t.notThrows(() => requirePrivileges('vmpeer daemon', noResource | (1n << 24n), true));
});

test('outside Kubernetes, a daemon without --netns-prefix says every netns is in scope', (t) => {
  const all = parseConfig({}, {});
  t.regex(scopeWarning(all, {})!, /^not on a Kubernetes node .* every network namespace under \/var\/run\/netns is in scope.*--netns-prefix/);
  t.is(scopeWarning(all, { KUBERNETES_SERVICE_HOST: '10.96.0.1' }), null, 'a Kubernetes node: its netns are pods');
  t.is(scopeWarning(parseConfig({ 'netns-prefix': 'cni-' }, {}), {}), null, 'narrowed by a prefix');
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
