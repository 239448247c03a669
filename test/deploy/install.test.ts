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
import test from 'ava';
import { buildTestImage, imageScript, podman, TEST_IMAGE } from '../helpers/pod.js';

const PKG = '/opt/vmpeer/node_modules/vmpeer';
let mounted = '';

test.before(async () => {
  buildTestImage();
  const r = await podman(['image', 'mount', TEST_IMAGE]);
  if (r.status !== 0) throw new Error(`podman image mount: ${r.stderr}`);
  mounted = r.stdout.trim();
});
test.after.always(async () => {
  if (mounted) await podman(['image', 'unmount', TEST_IMAGE]);
});

function debianBase(suite: string): string {
  return imageScript(['--debian-base', suite]);
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
  test(`Debian ${suite} (minbase, no libbpf1): the install and the first load say what to install`, async (t) => {
    const image = debianBase(suite);
    const install = await onSystem(image, [`${PKG}/scripts/install.mjs`]);
    t.is(install.status, 1, 'the install fails');
    const lines = install.stderr.trim().split('\n');
    t.is(lines.length, 1, install.stderr);
    t.regex(lines[0]!, what);
    t.regex(lines[0]!, /vmpeer supports Linux x86_64 with glibc >= 2\.34 and libbpf 1\.x/);
    t.notRegex(install.stderr, /gyp (ERR|info)|node-gyp rebuild|Traceback|\n\s+at /, 'no node-gyp, no stack');

    const load = await onSystem(image, FIRST_LOAD);
    t.is(load.status, 2);
    t.regex(load.stderr.trim(), /^AddonLoadError: vmpeer's native addon cannot be loaded: /);
    t.regex(load.stderr, what);
    t.is(load.stderr.trim().split('\n').length, 1);
  });
}

test('the image itself: the install step passes (the prebuilt addon loads)', async (t) => {
  const r = await podman(['run', '--rm', '--network', 'none', '--entrypoint', 'node', TEST_IMAGE, `${PKG}/scripts/install.mjs`]);
  t.is(r.status, 0, r.stderr);
  t.is(`${r.stdout}${r.stderr}`, '');
});
