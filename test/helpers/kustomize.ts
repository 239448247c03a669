/**
 * The kustomize subset deploy/ uses, so tests render the manifests exactly as
 * `kubectl apply -k` would without a kustomize binary: resources, namespace,
 * labels, images, configMapGenerator (files, no hash suffix), and components
 * with resources, configMapGenerators and JSON patches. A field it does not
 * handle is an error, not silently ignored.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';

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
