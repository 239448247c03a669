/**
 * The import graph of lib/ and scripts/ (read from the sources): arrows only
 * point down the layers of docs/design.md, product code and scripts never
 * import test code, no two directories import each other, and only lib/bpf
 * opens BPF objects through the addon.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { packageRoot } from '../../lib/native.js';
import { badArrows, fileCycles, importArrows, layerOf } from '../helpers/imports.js';

const arrows = importArrows(packageRoot, ['lib', 'scripts']);

test('the graph was read', (t) => {
  t.true(arrows.length > 150, `only ${arrows.length} imports found: the parser missed them`);
  t.true(arrows.some((a) => a.from === 'lib/daemon/daemon.ts' && a.to === 'lib/dataplane/dataplane.ts'));
  t.true(arrows.some((a) => a.from === 'lib/bpf/link.ts' && a.to === 'lib/native.ts'), 'type-only imports are arrows too');
});

test('every arrow points down a layer; lib/ and scripts/ never import test/', (t) => {
  t.deepEqual(badArrows(arrows), []);
});

test('the layer check catches the arrows it exists for', (t) => {
  t.is(badArrows([{ from: 'lib/daemon/daemon.ts', to: 'lib/cli/commands/attach.ts' }]).length, 1, 'daemon -> cli');
  t.is(badArrows([{ from: 'lib/dataplane/x.ts', to: 'lib/daemon/y.ts' }]).length, 1, 'dataplane -> daemon');
  t.is(badArrows([{ from: 'lib/bpf/x.ts', to: 'lib/discovery/y.ts' }]).length, 1, 'sideways');
  t.is(badArrows([{ from: 'scripts/bench/x.ts', to: 'test/helpers/y.ts' }]).length, 1, 'scripts -> test');
  t.is(badArrows([{ from: 'lib/lab/x.ts', to: 'lib/testkit/y.ts' }]).length, 1, 'lab -> testkit');
  t.is(badArrows([{ from: 'lib/cli/x.ts', to: 'lib/testkit/y.ts' }]).length, 1, 'cli -> testkit: product code does not use the test kit');
  t.deepEqual(badArrows([{ from: 'scripts/bench/x.ts', to: 'lib/testkit/y.ts' }]), [], 'the bench uses the test kit');
  t.deepEqual(badArrows([{ from: 'lib/cli/x.ts', to: 'lib/daemon/y.ts' }]), [], 'cli -> daemon is down');
});

test('no two directories of lib/ import each other (lib/index.ts, the front door, aside)', (t) => {
  const dirOf = (f: string) => path.posix.dirname(f);
  const pairs = new Set(arrows.filter((a) => a.from.startsWith('lib/') && a.from !== 'lib/index.ts' && dirOf(a.from) !== dirOf(a.to)).map((a) => `${dirOf(a.from)} ${dirOf(a.to)}`));
  const back = [...pairs].filter((p) => {
    const [a, b] = p.split(' ');
    return pairs.has(`${b} ${a}`) && layerOf(`${a}/x.ts`)?.name !== layerOf(`${b}/x.ts`)?.name;
  });
  t.deepEqual(back, []);
});

test('no import cycles between files (type-only imports count)', (t) => {
  t.deepEqual(
    fileCycles(arrows).map((c) => c.join(' > ')),
    [],
  );
  const cycle = [
    { from: 'lib/discovery/a.ts', to: 'lib/discovery/b.ts' },
    { from: 'lib/discovery/b.ts', to: 'lib/discovery/a.ts' },
  ];
  t.deepEqual(fileCycles(cycle), [['lib/discovery/a.ts', 'lib/discovery/b.ts', 'lib/discovery/a.ts']], 'the cycle finder finds one');
});

test('only lib/bpf opens BPF objects through the addon', (t) => {
  const openers = arrows
    .map((a) => a.from)
    .filter((f, i, all) => all.indexOf(f) === i && f.startsWith('lib/') && !f.startsWith('lib/bpf/') && f !== 'lib/native.ts')
    .filter((f) => /\.openObject\(/.test(fs.readFileSync(path.join(packageRoot, f), 'utf8')));
  t.deepEqual(openers, []);
});
