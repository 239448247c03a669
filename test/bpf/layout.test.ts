/**
 * The C structs (bpf/vmpeer.h, as clang wrote them into the object's BTF) and
 * the TypeScript layout (lib/dataplane/layout.ts) must agree field by field.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
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
  // bpftool's raw BTF dump: "[N] ENUM 'vmpeer_stat' ..." followed by "'NAME' val=V" lines
  const dump = execFileSync('bpftool', ['btf', 'dump', 'file', OBJECT_PATH, 'format', 'raw'], { encoding: 'utf8' });
  const block = dump.split(/\n(?=\[)/).find((b) => /ENUM 'vmpeer_stat'/.test(b));
  t.truthy(block);
  const values = [...block!.matchAll(/'(VMPEER_STAT_\w+)' val=(\d+)/g)].map((m) => [m[1], Number(m[2])]);
  t.deepEqual(values, [...STAT_NAMES.map((name, i) => [statEnumName(name), i]), ['VMPEER_STAT_MAX', STAT_NAMES.length]]);
});
