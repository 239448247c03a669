/**
 * Compiling a BPF program the way scripts/build-bpf does: the flags are read
 * from bpf/clang.flags (the one place they live), the includes added here and
 * there the same way. For variants of the shipped objects (benchmarks, upgrades).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../native.js';

const BPF_DIR = path.join(packageRoot, 'bpf');

/** clang's argv before the extra flags: bpf/clang.flags, then the multiarch and bpf/ includes. */
export function clangFlags(): string[] {
  const flags = fs.readFileSync(path.join(BPF_DIR, 'clang.flags'), 'utf8').split('\n').filter((l) => l.trim() !== '');
  const multiarch = spawnSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).stdout?.trim() || 'x86_64-linux-gnu';
  return [...flags, `-I/usr/include/${multiarch}`, `-I${BPF_DIR}`];
}

/** Compiles `src` to `out` with `extra` flags; returns clang's complaint, or null when it built. */
export function compileBpf(src: string, out: string, extra: string[] = []): string | null {
  const r = spawnSync(process.env.CLANG ?? 'clang', [...clangFlags(), ...extra, '-c', src, '-o', out], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) return r.error.message;
  return r.status === 0 ? null : (r.stderr || `clang exit ${r.status}`).trim();
}
