/**
 * Every program vmpeer ships through this kernel's verifier, with the count of
 * instructions the verifier processed (bpf_prog_info.verified_insns since
 * 5.16, the "processed N insns" line of its statistics log before). Run on
 * every kernel of the VM matrix; the "kernel-fact: verified_insns.<program>="
 * lines go into the README's compatibility table.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { native, packageRoot } from '../../lib/native.js';
import { OBJECT_PATH } from '../../lib/dataplane/dataplane.js';

const SHIPPED = [
  { object: OBJECT_PATH, programs: ['fixup', 'redirect', 'from_guest'] },
  { object: path.join(packageRoot, 'dist', 'bpf', 'cni_emulator.bpf.o'), programs: null },
];

for (const { object, programs } of SHIPPED) {
  test(`${path.basename(object)}: every program loads, and the verifier says how many instructions it processed`, (t) => {
    const obj = native().openObject(object, { verifierStats: true });
    t.teardown(() => obj.close());
    const names = obj.programs.map((p) => p.name);
    if (programs) t.deepEqual([...names].sort(), [...programs].sort(), 'the programs the object ships');
    t.true(names.length > 0);
    for (const p of obj.programs) {
      const n = p.verifiedInsns ?? 0;
      // at least every instruction once, and far below the 1M limit: a count of 0 is a parse failure
      t.true(n >= p.insnCount && n < 1_000_000, `${p.name}: ${n} verified for ${p.insnCount} instructions`);
      if (object === OBJECT_PATH) process.stdout.write(`kernel-fact: verified_insns.${p.name}=${n}\n`);
    }
  });
}

// The endpoint table is a per-CPU array (bpf/vmpeer.h): newer kernels inline its
// lookup into array arithmetic (no call in the translated program), older ones call
// percpu_array_map_lookup_elem. Which one this kernel does is a fact for the README.
test('the per-CPU endpoint table lookup: inlined by the verifier or a call to the map', (t) => {
  const obj = native().openObject(OBJECT_PATH);
  t.teardown(() => obj.close());
  const forms = new Set<string>();
  for (const p of obj.programs) {
    const calls = execFileSync('bpftool', ['prog', 'dump', 'xlated', 'id', String(p.id)], { encoding: 'utf8' })
      .split('\n').map((l) => /\bcall ([a-z_]+)/.exec(l)?.[1]).filter((c): c is string => !!c);
    const lookups = calls.filter((c) => c.includes('lookup'));
    t.true(lookups.every((c) => c === 'percpu_array_map_lookup_elem'), `${p.name} calls ${lookups.join(', ')}`);
    forms.add(lookups.length > 0 ? 'call' : 'inlined');
  }
  t.is(forms.size, 1, 'every program looks the table up the same way');
  process.stdout.write(`kernel-fact: percpu_lookup=${[...forms][0]}\n`);
});

test('without verifierStats no count is reported (the product loads without a log)', (t) => {
  const obj = native().openObject(OBJECT_PATH);
  t.teardown(() => obj.close());
  t.true(obj.programs.every((p) => p.verifiedInsns === undefined));
});
