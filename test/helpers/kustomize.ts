/**
 * The kustomize subset deploy/ uses, so tests render the manifests as
 * `kubectl apply -k` would without running a binary (test/daemon/deploy
 * compares it with kustomize's own output, and kustomizeOverlay() below
 * builds with kustomize itself): resources, namespace,
 * labels, images, configMapGenerator (files, no hash suffix), and components
 * with resources, configMapGenerators and JSON patches. A field it does not
 * handle is an error, not silently ignored.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { packageRoot } from '../../lib/native.js';

export type Obj = Record<string, any>;

const NAMESPACED = new Set(['DaemonSet', 'ServiceAccount', 'ConfigMap', 'Service', 'PrometheusRule', 'PodMonitor']);
const KNOWN = new Set(['apiVersion', 'kind', 'namespace', 'labels', 'resources', 'images', 'components', 'patches', 'configMapGenerator']);

/** JSON patch (RFC 6902) add / replace / remove, what the components use. */
export function jsonPatch(doc: Obj, ops: Array<{ op: string; path: string; value?: unknown }>): void {
  for (const { op, path: p, value } of ops) {
    const keys = p.split('/').slice(1).map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = keys.pop()!;
    let at: Obj = doc;
    for (const k of keys) {
      if (at[k] === undefined) throw new Error(`patch ${op} ${p}: no ${k}`);
      at = at[k];
    }
    if (op === 'add' && Array.isArray(at)) at.splice(last === '-' ? at.length : Number(last), 0, value);
    else if (op === 'add' || op === 'replace') at[last] = value;
    else if (op === 'remove') delete at[last];
    else throw new Error(`unsupported patch op ${op}`);
  }
}

function readKustomization(dir: string, kind: string): Obj {
  const k = parseYaml(fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  if (k.kind !== kind) throw new Error(`${dir}: expected kind ${kind}, found ${k.kind}`);
  for (const key of Object.keys(k)) if (!KNOWN.has(key)) throw new Error(`${dir}: kustomization field ${key} is not handled by this renderer`);
  return k;
}

function resources(dir: string, k: Obj): Obj[] {
  const docs = ((k.resources as string[]) ?? []).flatMap((r) => parseAllDocuments(fs.readFileSync(path.join(dir, r), 'utf8')).map((d) => d.toJS() as Obj));
  for (const g of (k.configMapGenerator as Obj[]) ?? []) {
    for (const key of Object.keys(g)) if (!['name', 'namespace', 'files', 'options'].includes(key)) throw new Error(`${dir}: configMapGenerator field ${key} is not handled`);
    for (const key of Object.keys(g.options ?? {})) if (!['disableNameSuffixHash', 'labels'].includes(key)) throw new Error(`${dir}: configMapGenerator option ${key} is not handled`);
    if (g.options?.disableNameSuffixHash !== true) throw new Error(`${dir}: configMapGenerator ${g.name}: this renderer needs disableNameSuffixHash: true`);
    const data = Object.fromEntries((g.files as string[]).map((f) => [path.basename(f), fs.readFileSync(path.join(dir, f), 'utf8')]));
    docs.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: g.name, ...(g.namespace ? { namespace: g.namespace } : {}), ...(g.options?.labels ? { labels: { ...g.options.labels } } : {}) }, data });
  }
  return docs;
}

function applyComponent(objs: Obj[], dir: string, c: string): void {
  const cdir = path.join(dir, c);
  const comp = readKustomization(cdir, 'Component');
  objs.push(...resources(cdir, comp));
  for (const p of (comp.patches as Obj[]) ?? []) {
    const targets = objs.filter((x) => x.kind === p.target.kind && x.metadata.name === p.target.name);
    if (targets.length === 0) throw new Error(`${c}: patch target ${p.target.kind}/${p.target.name} not found`);
    for (const o of targets) jsonPatch(o, parseYaml(p.patch));
  }
}

/**
 * Renders a kustomization directory as `kubectl kustomize` does, then applies
 * `extra` components (paths relative to it) the way an overlay listing the
 * directory as a resource and those components would: after the directory's
 * own namespace, labels and images, which do not reach the components' objects.
 */
export function render(dir: string, extra: string[] = []): Obj[] {
  const k = readKustomization(dir, 'Kustomization');
  const objs = resources(dir, k);
  for (const c of (k.components as string[]) ?? []) applyComponent(objs, dir, c);
  for (const o of objs) {
    if (k.namespace && NAMESPACED.has(o.kind)) o.metadata.namespace = k.namespace;
    for (const l of (k.labels as Obj[]) ?? []) {
      o.metadata.labels = { ...o.metadata.labels, ...l.pairs };
      if (l.includeTemplates && o.spec?.template) o.spec.template.metadata.labels = { ...o.spec.template.metadata.labels, ...l.pairs };
    }
    for (const img of (k.images as Obj[]) ?? []) {
      const pod = o.spec?.template?.spec;
      for (const c of [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])]) {
        const [name, tag] = String(c.image).split(':');
        if (name === img.name) c.image = `${img.newName ?? name}:${img.newTag ?? tag ?? 'latest'}`;
      }
    }
  }
  for (const c of extra) applyComponent(objs, dir, c);
  return objs;
}

export function daemonSet(objs: Obj[]): Obj {
  const ds = objs.find((o) => o.kind === 'DaemonSet');
  if (!ds) throw new Error('no DaemonSet');
  return ds;
}

/** Every component under deploy/components, as render() takes them. */
export function components(dir: string): string[] {
  return fs.readdirSync(path.join(dir, 'components')).filter((c) => fs.existsSync(path.join(dir, 'components', c, 'kustomization.yaml'))).sort().map((c) => `components/${c}`);
}

/** kustomize itself, unpacked from Debian trixie's package by scripts/bootstrap. */
export const KUSTOMIZE = path.join(packageRoot, '.cache/kustomize/usr/bin/kustomize');

function kustomize(args: string[], cwd?: string): string {
  const r = spawnSync(KUSTOMIZE, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`kustomize ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
  return r.stdout;
}

export interface Overlay {
  /** Set as the README says: `kustomize edit set image vmpeer=<image>` in deploy/ (absent: the base's). */
  image?: string;
  /** Components (paths relative to deploy/) the overlay lists. */
  components?: string[];
  /** Environment the overlay adds to the daemon's container (a test's scope on a shared host). */
  env?: Record<string, string>;
}

/**
 * What an operator applies: a copy of `dir` with the image set by
 * `kustomize edit set image`, under an overlay with `components` and a JSON
 * patch adding `env` to the DaemonSet's first container, built by kustomize.
 */
export function kustomizeOverlay(dir: string, o: Overlay): Obj[] {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vpt-overlay-'));
  try {
    fs.cpSync(dir, path.join(tmp, 'base'), { recursive: true });
    if (o.image) kustomize(['edit', 'set', 'image', `vmpeer=${o.image}`], path.join(tmp, 'base'));
    const ds = daemonSet(render(dir));
    const env = Object.entries(o.env ?? {}).map(([name, value]) => ({ op: 'add', path: '/spec/template/spec/containers/0/env/-', value: { name, value } }));
    const overlay = {
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      resources: ['../base'],
      components: (o.components ?? []).map((c) => `../base/${c}`),
      patches: env.length > 0 ? [{ target: { kind: 'DaemonSet', name: ds.metadata.name }, patch: JSON.stringify(env) }] : [],
    };
    fs.mkdirSync(path.join(tmp, 'overlay'));
    fs.writeFileSync(path.join(tmp, 'overlay/kustomization.yaml'), JSON.stringify(overlay));
    return parseAllDocuments(kustomize(['build', path.join(tmp, 'overlay')])).map((d) => d.toJS() as Obj);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
