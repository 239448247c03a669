/**
 * The C structs (bpf/vmpeer.h, as clang wrote them into the object's BTF) and
 * the TypeScript layout (lib/dataplane/layout.ts) must agree field by field.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { BpfObject } from '../../lib/bpf/object.js';
import { OBJECT_PATH } from '../../lib/dataplane/dataplane.js';
import { ENDPOINT, KEY, STAT_NAMES, statEnumName } from '../../lib/dataplane/layout.js';

for (const layout of [KEY, ENDPOINT]) {
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
