/**
 * The C structs (bpf/vmpeer.h, as clang wrote them into the object's BTF) and
 * the TypeScript layout (lib/dataplane/layout.ts) must agree field by field.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { native, packageRoot } from '../../lib/native.js';
import { BpfObject } from '../../lib/bpf/object.js';
import { OBJECT_PATH } from '../../lib/dataplane/dataplane.js';
import { ENDPOINT, HASH_KEY, KEY, LAYOUT_VERSION, STAT_NAMES, statEnumName } from '../../lib/dataplane/layout.js';
import { PINNED_MAPS } from '../../lib/dataplane/pinned-maps.js';

for (const layout of [KEY, ENDPOINT, HASH_KEY]) {
  test(`struct ${layout.struct} matches its codec`, (t) => {
    const obj = BpfObject.open(OBJECT_PATH);
    t.teardown(() => obj.close());
    const btf = obj.btfStruct(layout.struct);
    t.truthy(btf, `struct ${layout.struct} in BTF`);
    t.is(btf!.size, layout.size);
    t.deepEqual(
      btf!.members.map((m) => [m.name, m.offset, m.size]),
      Object.entries(layout.fields).map(([name, f]) => [name, f.offset, f.size]),
    );
  });
}

test('enum vmpeer_stat lists the stat slots in codec order', (t) => {
  // array map keys must be plain integers for the kernel's BTF checks, so the
  // enum is not in the object's BTF: read it from the header instead
  const header = fs.readFileSync(path.join(packageRoot, 'bpf', 'vmpeer.h'), 'utf8');
  const body = /enum vmpeer_stat \{([^}]*)\}/.exec(header)![1]!;
  const names = [...body.matchAll(/^\s*(VMPEER_STAT_\w+)/gm)].map((m) => m[1]);
  t.deepEqual(names, [...STAT_NAMES.map(statEnumName), 'VMPEER_STAT_MAX']);
  t.regex(body, /VMPEER_STAT_FIXED = 0,/);
});

/** What each layout version stands for (a digest of the pinned maps' shapes, the endpoint struct and the stat names). */
const LAYOUTS: Record<number, string> = {
  2: '1a2c678daea4f2f5', // 88-byte endpoint, 15 stats (VMPEER_STAT_PASS_NEW_FLOW)
  3: '9b15eec7c68c5546', // 4096 slots, the hash_key map (keyed hash, 32 probes)
};

test('LAYOUT_VERSION is raised with every change of a pinned map (the stamp migrate.ts checks)', (t) => {
  const obj = BpfObject.open(OBJECT_PATH);
  t.teardown(() => obj.close());
  const shapes = PINNED_MAPS.map((name) => {
    const m = native().mapInfo(obj.map(name).fd);
    return [name, m.type, m.keySize, m.valueSize, m.maxEntries];
  });
  const digest = createHash('sha256')
    .update(JSON.stringify({ shapes, endpoint: obj.btfStruct(ENDPOINT.struct), stats: STAT_NAMES }))
    .digest('hex')
    .slice(0, 16);
  t.is(digest, LAYOUTS[LAYOUT_VERSION] ?? 'none recorded', `the layout is not version ${LAYOUT_VERSION}'s: raise LAYOUT_VERSION in lib/dataplane/layout.ts and record ${digest} for it here`);
});
