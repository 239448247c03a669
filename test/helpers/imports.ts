/**
 * The import graph of the TypeScript sources, read from the files themselves
 * (type-only imports included: they are arrows too, though tsc erases them).
 */
import fs from 'node:fs';
import path from 'node:path';

export interface Arrow {
  from: string;
  to: string;
}

const SPEC = /(?:^|[\s;])(?:import|export)\s(?:[^;'"]*?\sfrom\s)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

function sourcesUnder(root: string, dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = path.posix.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(r);
    }
  };
  walk(dir);
  return out.sort();
}

/** Every relative import in the .ts files under `dirs` of `root`, as root-relative .ts paths. */
export function importArrows(root: string, dirs: string[]): Arrow[] {
  const arrows: Arrow[] = [];
  for (const from of dirs.flatMap((d) => sourcesUnder(root, d))) {
    const text = fs.readFileSync(path.join(root, from), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    for (const m of text.matchAll(SPEC)) {
      const spec = m[1] ?? m[2]!;
      if (!spec.startsWith('.')) continue;
      arrows.push({ from, to: path.posix.join(path.posix.dirname(from), spec).replace(/\.js$/, '.ts') });
    }
  }
  return arrows;
}

/**
 * The layers of lib/, bottom up (docs/design.md, "Layers"). A file may import
 * its own layer and the layers below; layers of the same rank do not import
 * each other.
 */
export const LAYERS: ReadonlyArray<{ name: string; rank: number; dirs: string[] }> = [
  { name: 'base', rank: 0, dirs: ['lib'] },
  { name: 'bpf', rank: 1, dirs: ['lib/bpf'] },
  { name: 'discovery', rank: 1, dirs: ['lib/discovery'] },
  { name: 'dataplane', rank: 2, dirs: ['lib/dataplane'] },
  { name: 'daemon', rank: 3, dirs: ['lib/daemon'] },
  { name: 'lab', rank: 3, dirs: ['lib/lab'] },
  { name: 'testkit', rank: 4, dirs: ['lib/testkit'] },
  { name: 'cli', rank: 5, dirs: ['lib/cli', 'lib/cli/commands'] },
];

/** lib/index.ts is the package's front door: it sits above every layer. */
const ENTRY = 'lib/index.ts';

export function layerOf(file: string): { name: string; rank: number } | null {
  if (file === ENTRY) return { name: 'entry', rank: Infinity };
  const dir = path.posix.dirname(file);
  return LAYERS.find((l) => l.dirs.includes(dir)) ?? null;
}

/** Arrows that break the layer order (up or sideways), or leave lib/ for test/ or scripts/. */
export function badArrows(arrows: Arrow[]): string[] {
  const bad: string[] = [];
  for (const { from, to } of arrows) {
    if (!from.startsWith('lib/') && !from.startsWith('scripts/')) continue;
    if (to.startsWith('test/')) {
      bad.push(`${from} -> ${to}: product code and scripts never import test code`);
      continue;
    }
    if (!from.startsWith('lib/')) continue;
    if (!to.startsWith('lib/')) {
      bad.push(`${from} -> ${to}: lib/ imports only lib/`);
      continue;
    }
    if (to.startsWith('lib/testkit/') && !from.startsWith('lib/testkit/')) {
      bad.push(`${from} -> ${to}: only test/ and scripts/ use the test kit`);
      continue;
    }
    const a = layerOf(from);
    const b = layerOf(to);
    if (!a) bad.push(`${from}: its directory is in no layer`);
    else if (!b) bad.push(`${to}: its directory is in no layer`);
    else if (a.name !== b.name && a.rank <= b.rank) bad.push(`${from} -> ${to}: ${a.name} (${a.rank}) may not import ${b.name} (${b.rank})`);
  }
  return [...new Set(bad)];
}

/** Cycles among the files (each reported once, as the path around it). */
export function fileCycles(arrows: Arrow[]): string[][] {
  const next = new Map<string, string[]>();
  for (const { from, to } of arrows) next.set(from, [...(next.get(from) ?? []), to]);
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    stack.push(f);
    for (const t of next.get(f) ?? []) {
      if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t]);
      else if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of [...next.keys()].sort()) if (!state.has(f)) visit(f);
  return cycles;
}
