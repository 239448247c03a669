/**
 * The constants lib/dataplane copies from bpf/vmpeer.h, checked against the
 * header itself: a small C program includes it, prints its #defines, enum
 * values, struct offsets and vmpeer_slot() of sample keys under sample hash
 * keys, and the test
 * compares them with layout.ts and endpoint-table.ts. (The BTF check in
 * test/bpf covers the struct layout as the object has it; this one covers
 * what BTF cannot carry: macros and the hash.)
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { packageRoot } from '../../lib/native.js';
import { encodeKey } from '../../lib/dataplane/codec.js';
import { randomHashKey, slotOf } from '../../lib/dataplane/endpoint-table.js';
import { ENDPOINT, HASH_KEY, EP_BYPASS, EP_DELETED, EP_LIVE, EP_REDIRECT, PROBES, SLOT_BITS, SLOTS, STAT_NAMES, statEnumName } from '../../lib/dataplane/layout.js';

const BPF_DIR = path.join(packageRoot, 'bpf');
const SAMPLE_IPS = [
  '1.2.3.4',
  '198.18.1.10',
  '10.244.1.17',
  '223.255.255.254',
  '2001:db8::a',
  'fe80::1',
  '2001:db8:ffff:ffff:ffff:ffff:ffff:fffe',
  ...Array.from({ length: 256 }, (_, i) => `10.${i}.${(i * 37) & 255}.${1 + ((i * 101) % 254)}`),
];
const KEYS = SAMPLE_IPS.map((ip) => encodeKey(ip));
/** Hash keys: a random one, one with every bit set (the sums wrap), and one a little above zero. */
const HASH_KEYS = [randomHashKey(), Buffer.alloc(HASH_KEY.size, 0xff), Buffer.from(Array.from({ length: HASH_KEY.size }, (_, i) => (i % 8 === 0 ? i + 1 : 0)))];

const PROGRAM = `#include <stdio.h>
#include <stddef.h>
#include <linux/types.h>
#include "vmpeer.h"
#define P(name, value) printf("%s %llu\\n", name, (unsigned long long)(value))
int main(void) {
  P("SLOT_BITS", VMPEER_SLOT_BITS);
  P("SLOTS", VMPEER_SLOTS);
  P("PROBES", VMPEER_PROBES);
  P("EP_LIVE", VMPEER_EP_LIVE);
  P("EP_REDIRECT", VMPEER_EP_REDIRECT);
  P("EP_DELETED", VMPEER_EP_DELETED);
  P("EP_BYPASS", VMPEER_EP_BYPASS);
  P("STAT_MAX", VMPEER_STAT_MAX);
${STAT_NAMES.map((n) => `  P("${statEnumName(n)}", ${statEnumName(n)});`).join('\n')}
  P("sizeof", sizeof(struct vmpeer_endpoint));
  P("sizeof hash_key", sizeof(struct vmpeer_hash_key));
  P("offsetof hash_key.mul", offsetof(struct vmpeer_hash_key, mul));
  P("offsetof hash_key.add", offsetof(struct vmpeer_hash_key, add));
${Object.keys(ENDPOINT.fields).map((f) => `  P("offsetof ${f}", offsetof(struct vmpeer_endpoint, ${f}));\n  P("sizeof ${f}", sizeof(((struct vmpeer_endpoint *)0)->${f}));`).join('\n')}
  struct vmpeer_hash_key k;
  unsigned long long m[5];
  __u32 w[4];
  char what[8];
  while (scanf("%7s", what) == 1) {
    if (what[0] == 'k' && scanf("%llx %llx %llx %llx %llx", &m[0], &m[1], &m[2], &m[3], &m[4]) == 5) {
      for (int i = 0; i < 4; i++) k.mul[i] = m[i];
      k.add = m[4];
    } else if (what[0] == 'w' && scanf("%x %x %x %x", &w[0], &w[1], &w[2], &w[3]) == 4) {
      P("slot", vmpeer_slot(&k, w));
    } else return 1;
  }
  return 0;
}
`;

interface HeaderFacts {
  values: Map<string, number>;
  slots: number[];
}

/** Compiles PROGRAM against the vmpeer.h in `includeDir`, runs it on KEYS. */
function headerFacts(includeDir: string): HeaderFacts {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmpeer-header-'));
  try {
    fs.writeFileSync(path.join(dir, 'facts.c'), PROGRAM);
    const cc = spawnSync(process.env.CC ?? 'gcc', ['-Wall', '-Werror', `-I${includeDir}`, '-o', path.join(dir, 'facts'), path.join(dir, 'facts.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`compiling against ${includeDir}/vmpeer.h failed: ${cc.stderr || cc.error?.message}`);
    const input = HASH_KEYS.flatMap((hk) => [
      `k ${[0, 8, 16, 24, 32].map((o) => hk.readBigUInt64LE(o).toString(16)).join(' ')}`,
      ...KEYS.map((k) => `w ${[0, 4, 8, 12].map((o) => k.readUInt32LE(o).toString(16)).join(' ')}`),
    ]).join('\n');
    const run = spawnSync(path.join(dir, 'facts'), { input, encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`the header program failed: ${run.stderr}`);
    const values = new Map<string, number>();
    const slots: number[] = [];
    for (const line of run.stdout.trim().split('\n')) {
      const at = line.lastIndexOf(' ');
      const [name, value] = [line.slice(0, at), Number(line.slice(at + 1))];
      if (name === 'slot') slots.push(value);
      else values.set(name, value);
    }
    return { values, slots };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** What lib/dataplane says the header says, in the program's words. */
function tsFacts(): HeaderFacts {
  const values = new Map<string, number>([
    ['SLOT_BITS', SLOT_BITS],
    ['SLOTS', SLOTS],
    ['PROBES', PROBES],
    ['EP_LIVE', EP_LIVE],
    ['EP_REDIRECT', EP_REDIRECT],
    ['EP_DELETED', EP_DELETED],
    ['EP_BYPASS', EP_BYPASS],
    ['STAT_MAX', STAT_NAMES.length],
    ...STAT_NAMES.map((n, i) => [statEnumName(n), i] as [string, number]),
    ['sizeof', ENDPOINT.size],
    ['sizeof hash_key', HASH_KEY.size],
    ['offsetof hash_key.mul', HASH_KEY.fields.mul.offset],
    ['offsetof hash_key.add', HASH_KEY.fields.add.offset],
    ...Object.entries(ENDPOINT.fields).flatMap(([f, { offset, size }]) => [[`offsetof ${f}`, offset] as [string, number], [`sizeof ${f}`, size] as [string, number]]),
  ]);
  return { values, slots: HASH_KEYS.flatMap((hk) => KEYS.map((k) => slotOf(k, hk))) };
}

test('lib/dataplane agrees with bpf/vmpeer.h: geometry, flags, stat slots, endpoint layout', (t) => {
  const header = headerFacts(BPF_DIR);
  t.deepEqual(Object.fromEntries(header.values), Object.fromEntries(tsFacts().values));
});

test("slotOf() hashes every sample key to the header's vmpeer_slot()", (t) => {
  const header = headerFacts(BPF_DIR);
  t.is(header.slots.length, KEYS.length * HASH_KEYS.length);
  t.deepEqual(tsFacts().slots, header.slots);
  t.true(new Set(header.slots.slice(0, KEYS.length)).size > KEYS.length * 0.9, 'the samples spread over the table');
});

test('the check fails when the header drifts', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmpeer-drift-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const header = fs.readFileSync(path.join(BPF_DIR, 'vmpeer.h'), 'utf8');
  const drifted = header.replace('#define VMPEER_PROBES 32', '#define VMPEER_PROBES 33').replace('0xff51afd7ed558ccdULL', '0xff51afd7ed558ccfULL');
  t.not(drifted, header);
  fs.writeFileSync(path.join(dir, 'vmpeer.h'), drifted);
  const facts = headerFacts(dir);
  t.is(facts.values.get('PROBES'), 33);
  t.notDeepEqual(facts.slots, tsFacts().slots);
});
