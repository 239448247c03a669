#!/usr/bin/env node
// The package's install step. An installed vmpeer uses its prebuilt addon
// (prebuilds/): it must load here, and when it cannot (libbpf1 missing, glibc
// too old) this says what to install and which systems are supported, and
// fails, instead of falling through to a node-gyp build that dies looking for
// Python. `npm rebuild vmpeer --build-from-source` compiles the addon instead
// (libbpf-dev, g++, make, python3), as does an install without prebuilds.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);
const fromSource = /^(1|true)$/i.test(process.env.npm_config_build_from_source ?? '') || !fs.existsSync(`${root}prebuilds`);
if (fromSource) {
  const r = spawnSync(process.execPath, [require.resolve('node-gyp-build/bin.js')], { cwd: root, stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
try {
  require('node-gyp-build')(root);
} catch (e) {
  const { explainLoadFailure } = await import('../dist/lib/support.js');
  console.error(explainLoadFailure(e));
  process.exit(1);
}
