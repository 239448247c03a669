/**
 * A strict schema check for Kubernetes objects: every field of the object must
 * be one the API declares (kubernetes-models' validate() accepts unknown
 * fields, so `capabilites:` would pass it). The field lists come from
 * kubernetes-models' own type declarations, walked from the kind's interface
 * down through each field's declared type.
 */
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../lib/native.js';

interface Shape {
  fields: Map<string, string>;
  imports: Map<string, string>;
}

const shapes = new Map<string, Shape | null>();

function declarationFile(spec: string, from: string): string | null {
  const candidates = spec.startsWith('.')
    ? [path.resolve(path.dirname(from), `${spec}.d.ts`)]
    : [path.join(packageRoot, 'node_modules', `${spec}.d.ts`), path.join(packageRoot, 'node_modules', 'kubernetes-models', 'node_modules', `${spec}.d.ts`)];
  return candidates.find((c) => fs.existsSync(c)) ?? null;
}

/** The fields of the first interface declared in a .d.ts (null: not an interface, such as IntOrString). */
function shape(file: string): Shape | null {
  if (shapes.has(file)) return shapes.get(file)!;
  const text = fs.readFileSync(file, 'utf8');
  const imports = new Map<string, string>();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) {
    const f = declarationFile(m[2]!, file);
    if (f) imports.set(m[1]!, f);
  }
  const body = /^export interface \w+(?: extends \w+)? \{\n([\s\S]*?)^\}/m.exec(text)?.[1];
  let result: Shape | null = null;
  if (body !== undefined) {
    const fields = new Map<string, string>();
    for (const m of body.matchAll(/^ {4}"([^"]+)"\??: (.*?);?$/gm)) fields.set(m[1]!, m[2]!);
    result = { fields, imports };
  }
  shapes.set(file, result);
  return result;
}

function check(value: unknown, file: string, at: string, errors: string[]): void {
  const s = shape(file);
  if (!s || value === null || typeof value !== 'object' || Array.isArray(value)) return;
  for (const [key, v] of Object.entries(value)) {
    const type = s.fields.get(key);
    if (type === undefined) {
      errors.push(`${at}.${key}: no such field (${path.basename(file, '.d.ts')} has ${[...s.fields.keys()].join(', ')})`);
      continue;
    }
    const m = /^(?:Array<)?(I\w+)>?$/.exec(type);
    const next = m ? s.imports.get(m[1]!) : undefined;
    if (!next) continue;
    for (const [i, item] of (type.startsWith('Array<') && Array.isArray(v) ? v : [v]).entries()) {
      check(item, next, type.startsWith('Array<') ? `${at}.${key}[${i}]` : `${at}.${key}`, errors);
    }
  }
}

/** Throws, naming every field the API does not declare, for a DaemonSet, ServiceAccount, ... */
export function strictCheck(obj: { kind: string; apiVersion: string }, kind = obj.kind): void {
  const group = obj.apiVersion.includes('/') ? obj.apiVersion : `v1`;
  const dir = group === 'v1' ? 'v1' : group;
  const file = path.join(packageRoot, 'node_modules', 'kubernetes-models', dir, `${kind}.d.ts`);
  if (!fs.existsSync(file)) throw new Error(`no declared schema for ${obj.apiVersion} ${kind}`);
  const errors: string[] = [];
  check(obj, file, kind, errors);
  if (errors.length > 0) throw new Error(errors.join('; '));
}
