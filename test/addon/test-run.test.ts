/** testRun(): BPF_PROG_TEST_RUN through the addon. */
import test from 'ava';
import { STAT_PASS_UNKNOWN, addon, map, openObject, program, statSlot, throwsNative } from './common.js';

/** A minimal IPv4/UDP frame to an address no guest has. */
function frame(): Buffer {
  const f = Buffer.alloc(14 + 20 + 8);
  Buffer.from('020000000001020000000002', 'hex').copy(f, 0);
  f.writeUInt16BE(0x0800, 12);
  f.writeUInt8(0x45, 14);
  f.writeUInt16BE(28, 16);
  f.writeUInt8(64, 22);
  f.writeUInt8(17, 23);
  Buffer.from([198, 18, 0, 2, 198, 18, 1, 99]).copy(f, 26);
  f.writeUInt16BE(8, 14 + 20 + 4);
  return f;
}

test('fixup passes a frame for an unknown guest: retval -1 (TC_ACT_UNSPEC), frame unchanged', (t) => {
  const obj = openObject(t);
  const stats = map(obj, 'stats');
  const input = frame();
  const result = addon.testRun(program(obj, 'fixup').fd, { data: input });
  t.is(result.retval, -1);
  t.deepEqual(result.data, input);
  t.true(Number.isInteger(result.durationNs) && result.durationNs >= 0);
  t.is(result.ctx, undefined);
  t.is(statSlot(stats.fd, STAT_PASS_UNKNOWN), 1n);
});

test('repeat runs the program that many times', (t) => {
  const obj = openObject(t);
  addon.testRun(program(obj, 'fixup').fd, { data: frame(), repeat: 5 });
  t.is(statSlot(map(obj, 'stats').fd, STAT_PASS_UNKNOWN), 5n);
});

test('a ctx (struct __sk_buff) goes in and comes back', (t) => {
  const obj = openObject(t);
  const ctx = Buffer.alloc(192); // sizeof(struct __sk_buff)
  ctx.writeUInt32LE(0x1234, 8); // mark
  const result = addon.testRun(program(obj, 'fixup').fd, { data: frame(), ctx });
  t.is(result.retval, -1);
  t.is(result.ctx?.length, 192);
  t.is(result.ctx?.readUInt32LE(8), 0x1234);
});

test('a frame shorter than an Ethernet header is refused by the kernel', (t) => {
  const obj = openObject(t);
  throwsNative(t, () => addon.testRun(program(obj, 'fixup').fd, { data: Buffer.alloc(4) }), {
    code: 'EINVAL',
    op: 'bpf_prog_test_run_opts',
  });
});

test('an output buffer too small for the frame is ENOSPC', (t) => {
  const obj = openObject(t);
  throwsNative(t, () => addon.testRun(program(obj, 'fixup').fd, { data: frame(), dataSizeOut: 10 }), { code: 'ENOSPC' });
});
