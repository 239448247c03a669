/**
 * The packed tarball installs and works where neither clang, a C++ compiler,
 * make nor libbpf-dev is available: it ships the BPF object and a prebuilt
 * N-API addon that links the runtime libbpf1 only.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../lib/native.js';

const NO_BUILD_TOOLS = ['cc', 'gcc', 'g++', 'c++', 'clang', 'make', 'cmake', 'pkg-config', 'python3'];

test('npm pack → install into an empty directory without build tools → load and run', async (t) => {
  t.timeout(10 * 60_000);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vpt-pack-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

  // pack from a copy of the sources: prebuildify's node-gyp rebuild wipes build/, which the other tests use
  const src = path.join(work, 'src');
  for (const entry of fs.readdirSync(packageRoot)) {
    if (['build', 'dist', 'prebuilds', 'node_modules', '.cache', '.git'].includes(entry)) continue;
    fs.cpSync(path.join(packageRoot, entry), path.join(src, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(packageRoot, 'node_modules'), path.join(src, 'node_modules'));
  // --json: stdout is JSON alone (prepack's build output goes to stderr)
  const packed = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: src, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const [pack] = JSON.parse(packed) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const tarball = fs.readdirSync(work).find((f) => f.endsWith('.tgz'));
  t.truthy(tarball, 'npm pack made a tarball');
  t.is(pack!.filename, tarball!);
  const files = pack!.files.map((f) => f.path);
  t.true(files.includes('prebuilds/linux-x64/vmpeer.glibc.node'), 'the prebuild carries its libc tag');
  t.false(files.some((f) => /^prebuilds\/[^/]+\/vmpeer\.node$/.test(f)), 'and there is no untagged one');
  t.true(files.includes('scripts/install.mjs') && files.includes('dist/lib/support.js'), 'the install step and its messages');
  const listing = execFileSync('tar', ['-tzf', path.join(work, tarball!)], { encoding: 'utf8' }).split('\n');
  t.true(listing.includes('package/dist/bpf/vmpeer.bpf.o'), 'ships the BPF object');
  t.true(listing.some((f) => /^package\/prebuilds\/linux-x64\/.*\.node$/.test(f)), 'ships a prebuilt addon');
  t.true(listing.includes('package/dist/lib/cli/bin.js'), 'ships the CLI');
  t.false(listing.some((f) => f.startsWith('package/dist/test/') || f.startsWith('package/test/')), 'ships no tests');

  // a PATH with node, npm and a shell, and none of the build tools
  const bin = path.join(work, 'bin');
  fs.mkdirSync(bin);
  for (const tool of ['node', 'npm', 'sh', 'tar', 'gzip']) {
    const real = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
    fs.symlinkSync(fs.realpathSync(real), path.join(bin, tool));
  }
  const env = { HOME: process.env.HOME ?? '/root', PATH: bin, npm_config_nodedir: '/nonexistent' };
  for (const tool of NO_BUILD_TOOLS) {
    t.throws(() => execFileSync('sh', ['-c', `command -v ${tool}`], { env }), undefined, `${tool} is not on PATH`);
  }

  const app = path.join(work, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', private: true }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', path.join(work, tarball!)], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const installed = path.join(app, 'node_modules', 'vmpeer');
  t.false(fs.existsSync(path.join(installed, 'build', 'Release')), 'nothing was compiled on install');

  const script = `
    import { BpfObject, OBJECT_PATH } from 'vmpeer';
    const obj = BpfObject.open(OBJECT_PATH);
    const frame = Buffer.alloc(60); frame[12] = 0x08; frame[13] = 0x06;
    const out = obj.program('fixup').testRun({ data: frame });
    console.log(JSON.stringify({ programs: [...obj.programs.keys()], retval: out.retval }));
    obj.close();`;
  const result = JSON.parse(execFileSync(path.join(bin, 'node'), ['--input-type=module', '-e', script], { cwd: app, env, encoding: 'utf8' }));
  t.deepEqual(result, { programs: ['fixup', 'from_guest', 'redirect'], retval: -1 });

  const help = execFileSync(path.join(app, 'node_modules', '.bin', 'vmpeer'), ['--help'], { cwd: app, env, encoding: 'utf8' });
  t.regex(help, /Usage: vmpeer <command>/);
});
