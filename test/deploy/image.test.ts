/**
 * The image scripts/image builds from deploy/Dockerfile (with debootstrap
 * bases where no registry is reachable): its size, one layer, no compiler,
 * npm, headers or package manager, a bare run that starts nothing, `vmpeer
 * --version`, and the prebuilt addon loading inside it.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { packageRoot } from '../../lib/native.js';
import { buildTestImage, podman, TEST_IMAGE } from '../helpers/pod.js';

// Measured 131 MB: node itself is 103 MB (stripped); the rest is glibc,
// libstdc++, libbpf1 and what the init container runs (dash, coreutils'
// stat, mount), the package and its dependencies. The target is 150 MB.
const MAX_BYTES = 150e6;

const run = (args: string[]) => podman(['run', '--rm', '--network', 'none', ...args]);

test.before(() => {
  const { ms } = buildTestImage();
  console.log(`image ${TEST_IMAGE} ready in ${ms} ms`);
});

test('one layer, at most 150 MB, non-root by default', async (t) => {
  const [size, layers, user] = (await podman(['image', 'inspect', '--format', '{{.Size}} {{len .RootFS.Layers}} {{.Config.User}}', TEST_IMAGE])).stdout.trim().split(' ');
  t.log(`${TEST_IMAGE}: ${(Number(size) / 1e6).toFixed(1)} MB uncompressed`);
  t.true(Number(size) > 50e6 && Number(size) <= MAX_BYTES, `${size} bytes`);
  t.is(layers, '1', 'the image is the trimmed filesystem alone');
  t.is(user, '65532:65532');
});

test('no compiler, npm, system or Node headers, apt, dpkg, perl, bash or user tools (the package keeps its own sources, for --build-from-source); what the init container runs is there', async (t) => {
  const r = await run([
    '--entrypoint', '/bin/sh', TEST_IMAGE, '-c',
    'for x in gcc cc g++ c++ clang make cmake python3 npm npx node-gyp apt apt-get dpkg perl curl wget bash tar useradd login e2fsck; do command -v $x; done; ' +
      'ls -d /usr/local/include /usr/local/lib/node_modules /opt/vmpeer/node_modules/vmpeer/build 2>/dev/null; find / -xdev -name "*.h" -not -path "/opt/vmpeer/*" | head -3; ' +
      'echo --; for x in sh stat mount node; do command -v $x >/dev/null && echo $x; done',
  ]);
  t.is(r.status, 0, r.stderr);
  const [absent, present] = r.stdout.split('--\n');
  t.is(absent, '', `in the image: ${absent}`);
  t.deepEqual(present!.trim().split('\n'), ['sh', 'stat', 'mount', 'node']);
});

test('a bare run prints the usage and starts nothing; --version is the package version', async (t) => {
  const bare = await run([TEST_IMAGE]);
  t.is(bare.status, 0, bare.stderr);
  t.regex(bare.stdout, /^Usage: vmpeer <command>/m);
  t.regex(bare.stdout, /daemon .*the DaemonSet/);
  const version = await run([TEST_IMAGE, '--version']);
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  t.is(version.stdout.trim(), pkg.version);
});

test('the prebuilt addon (glibc-tagged) loads in the image', async (t) => {
  const r = await run([
    '--entrypoint', 'node', TEST_IMAGE, '--input-type=module', '-e',
    "const m = await import('/opt/vmpeer/node_modules/vmpeer/dist/lib/native.js'); const n = m.native(); " +
      "const fs = await import('node:fs'); console.log(typeof n.openObject, fs.readdirSync('/opt/vmpeer/node_modules/vmpeer/prebuilds/linux-x64').join(','));",
  ]);
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout.trim(), 'function vmpeer.glibc.node');
});
