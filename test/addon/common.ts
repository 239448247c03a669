/** What the addon tests share: the addon, the shipped object, a pod-like netns. */
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { native, packageRoot, type NativeError, type NativeMap, type NativeObject, type NativeProgram, type OpenOptions } from '../../lib/native.js';
import { netns, uniqueName, veth, type Netns } from '../helpers/netns.js';
import { STAT_NAMES } from '../../lib/dataplane/layout.js';

export const addon = native();
export const OBJECT_PATH = path.join(packageRoot, 'dist/bpf/vmpeer.bpf.o');

/** Slots of the stats map (enum vmpeer_stat; test/unit/header checks STAT_NAMES against bpf/vmpeer.h). */
export const STAT_PASS_UNKNOWN = STAT_NAMES.indexOf('passUnknown');
export const STAT_PASS_NOT_UNICAST = STAT_NAMES.indexOf('passNotUnicast');

/** Whether this kernel has tcx (Linux >= 6.6): the VM matrix runs these tests on 6.1 too. */
export const TCX = addon.kernelFeatures().tcx;

/**
 * A test of tcx behaviour. On a kernel without tcx it becomes a test that the
 * kernel refuses a tcx attachment, so that it asserts something everywhere.
 */
export function tcxTest(title: string, fn: (t: ExecutionContext) => void | Promise<void>): void {
  if (TCX) {
    test(title, fn);
    return;
  }
  test(`${title} [no tcx on this kernel: a tcx attach is refused]`, (t) => {
    const { ns, ifname } = pod(t);
    const obj = openObject(t);
    const err = t.throws(() => addon.attach({ netns: ns.path, ifname, hook: 'ingress', mode: 'tcx', progFd: program(obj, 'fixup').fd }));
    t.regex((err as NativeError).code, /^(EINVAL|EOPNOTSUPP|ENOTSUPP|EPERM)$/);
    t.deepEqual(addon.listHook({ netns: ns.path, ifname, hook: 'ingress' }), []);
  });
}

/** The shipped object, loaded for this test and closed after it. */
export function openObject(t: ExecutionContext, options?: OpenOptions): NativeObject {
  const obj = addon.openObject(OBJECT_PATH, options);
  t.teardown(() => obj.close());
  return obj;
}

export function program(obj: NativeObject, name: string): NativeProgram {
  const p = obj.programs.find((x) => x.name === name);
  if (!p) throw new Error(`no program ${name}`);
  return p;
}

export function map(obj: NativeObject, name: string): NativeMap {
  const m = obj.maps.find((x) => x.name === name);
  if (!m) throw new Error(`no map ${name}`);
  return m;
}

/** Closes an fd the addon returned (an unpinned tcx link) when the test ends. */
export function closeLater(t: ExecutionContext, fd: number | undefined): void {
  if (fd === undefined) throw new Error('expected an fd');
  t.teardown(() => addon.closeFd(fd));
}

/** A netns with a veth pair inside it, like a pod's interface: attach to `ifname`. */
export function pod(t: ExecutionContext): { ns: Netns; ifname: string; peer: string } {
  const ns = netns(t, 'p');
  const ifname = uniqueName('i');
  const peer = uniqueName('j');
  veth(t, { ns, name: ifname }, { ns, name: peer });
  return { ns, ifname, peer };
}

/** One slot of a per-CPU u64 array map, summed over the CPUs. */
export function statSlot(mapFd: number, slot: number): bigint {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(slot);
  const value = addon.mapLookup(mapFd, key, 8 * addon.possibleCpus());
  if (!value) throw new Error(`no stats slot ${slot}`);
  let sum = 0n;
  for (let i = 0; i < value.length; i += 8) sum += value.readBigUInt64LE(i);
  return sum;
}

/**
 * Asserts that `fn` throws a NativeError with these fields, or with
 * `typeError` a TypeError (code EINVAL) for bad arguments, and returns it.
 */
export function throwsNative(
  t: ExecutionContext,
  fn: () => unknown,
  expected: Partial<Pick<NativeError, 'code' | 'errno' | 'op' | 'object'>> & { message?: RegExp; typeError?: boolean },
): NativeError {
  const { message, typeError, ...fields } = expected;
  const err = t.throws(fn, { instanceOf: typeError ? TypeError : Error, ...(message ? { message } : {}) }) as NativeError;
  if (err) t.like(err, typeError ? { code: 'EINVAL', errno: 22, ...fields } : fields);
  return err;
}
