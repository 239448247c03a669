/**
 * Install failures speak: the package as the image installed it (npm pack,
 * then npm install of the tarball), on systems it does not support, run by
 * podman:
 *   - Debian 12 minbase without libbpf1;
 *   - Debian 11 (bullseye, glibc 2.31).
 * Its install step (scripts/install.mjs, what npm runs) and the first load of
 * the addon each print one line that says what is missing, what to install
 * and which systems are supported; no node-gyp, no stack. (`npm pack --json`
 * is parsed in test/package.)
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import test from 'ava';
import { packageRoot } from '../../lib/native.js';
import { buildTestImage, podman, TEST_IMAGE } from '../helpers/pod.js';

const PKG = '/opt/vmpeer/node_modules/vmpeer';
let mounted = '';

test.before(() => {
  buildTestImage();
  const r = podman(['image', 'mount', TEST_IMAGE]);
  if (r.status !== 0) throw new Error(`podman image mount: ${r.stderr}`);
  mounted = r.stdout.trim();
});
test.after.always(() => {
  if (mounted) podman(['image', 'unmount', TEST_IMAGE]);
});

function debianBase(suite: string): string {
  const r = spawnSync('flock', [path.join(packageRoot, '.cache/image/.build-lock'), path.join(packageRoot, 'scripts/image'), '--debian-base', suite], { cwd: packageRoot, encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`scripts/image --debian-base ${suite}: ${r.stderr}`);
  return r.stdout.trim();
}

/** node and the installed package from the image, on another system. */
function onSystem(image: string, args: string[]) {
  return podman([
    'run', '--rm', '--network', 'none',
    '-v', `${mounted}/opt/vmpeer:/opt/vmpeer:ro`,
    '-v', `${mounted}/usr/local/bin/node:/usr/local/bin/node:ro`,
    image, '/usr/local/bin/node', ...args,
  ]);
}

const FIRST_LOAD = ['--input-type=module', '-e', `const m = await import('${PKG}/dist/lib/native.js'); try { m.native(); } catch (e) { console.error(e.name + ': ' + e.message); process.exit(e.exitCode ?? 1); }`];

for (const [suite, what] of [
  ['bookworm', /libbpf\.so\.1 is missing: install libbpf1 \(Debian\/Ubuntu: apt-get install libbpf1/],
  ['bullseye', /this system's glibc is 2\.31, older than the 2\.34 the addon needs/],
] as const) {
  test(`Debian ${suite} (minbase, no libbpf1): the install and the first load say what to install`, (t) => {
    const image = debianBase(suite);
    const install = onSystem(image, [`${PKG}/scripts/install.mjs`]);
    t.is(install.status, 1, 'the install fails');
    const lines = install.stderr.trim().split('\n');
    t.is(lines.length, 1, install.stderr);
    t.regex(lines[0]!, what);
    t.regex(lines[0]!, /vmpeer supports Linux x86_64 with glibc >= 2\.34 and libbpf 1\.x/);
    t.notRegex(install.stderr, /gyp (ERR|info)|node-gyp rebuild|Traceback|\n\s+at /, 'no node-gyp, no stack');

    const load = onSystem(image, FIRST_LOAD);
    t.is(load.status, 2);
    t.regex(load.stderr.trim(), /^AddonLoadError: vmpeer's native addon cannot be loaded: /);
    t.regex(load.stderr, what);
    t.is(load.stderr.trim().split('\n').length, 1);
  });
}

test('the image itself: the install step passes (the prebuilt addon loads)', (t) => {
  const r = podman(['run', '--rm', '--network', 'none', '--entrypoint', 'node', TEST_IMAGE, `${PKG}/scripts/install.mjs`]);
  t.is(r.status, 0, r.stderr);
  t.is(`${r.stdout}${r.stderr}`, '');
});
