/**
 * deploy/: the kustomization renders (base and components), every object
 * validates against the Kubernetes schema (kubernetes-models), the DaemonSet
 * keeps the promises the README makes (capabilities instead of privileged,
 * probes on the daemon's endpoints, mounts, priority, scrape annotations),
 * its daemon arguments pass the daemon's own configuration check, and the
 * Dockerfile's runtime stage has no compiler.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import test from 'ava';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { ENV, parseConfig, type Flags } from '../../lib/daemon/config.js';
import { daemonCommand } from '../../lib/cli/commands/daemon.js';
import { OBJECT_PATH } from '../../lib/dataplane/dataplane.js';
import { packageRoot } from '../../lib/native.js';

const DEPLOY = path.join(packageRoot, 'deploy');

type Obj = Record<string, any>;

const NAMESPACED = new Set(['DaemonSet', 'ServiceAccount', 'ConfigMap', 'Service']);

/** JSON patch (RFC 6902) add / replace / remove, what the components use. */
function jsonPatch(doc: Obj, ops: Array<{ op: string; path: string; value?: unknown }>): void {
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

/** The kustomize subset deploy/ uses: resources, namespace, labels, images, components with JSON patches. */
function render(dir: string, components: string[] = []): Obj[] {
  const k = parseYaml(fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  const known = new Set(['apiVersion', 'kind', 'namespace', 'labels', 'resources', 'images', 'components', 'patches']);
  for (const key of Object.keys(k)) if (!known.has(key)) throw new Error(`kustomization field ${key} is not handled by this test`);
  let objs: Obj[] = (k.resources as string[]).flatMap((r) =>
    parseAllDocuments(fs.readFileSync(path.join(dir, r), 'utf8')).map((d) => d.toJS() as Obj),
  );
  for (const c of [...((k.components as string[]) ?? []), ...components]) {
    const comp = parseYaml(fs.readFileSync(path.join(dir, c, 'kustomization.yaml'), 'utf8')) as Obj;
    if (comp.kind !== 'Component') throw new Error(`${c} is not a Component`);
    for (const p of comp.patches as Obj[]) {
      for (const o of objs.filter((x) => x.kind === p.target.kind && x.metadata.name === p.target.name)) jsonPatch(o, parseYaml(p.patch));
    }
  }
  objs = objs.map((o) => {
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
    return o;
  });
  return objs;
}

function validate(o: Obj): void {
  if (o.kind === 'DaemonSet') new DaemonSet(o as never).validate();
  else if (o.kind === 'ServiceAccount') new ServiceAccount(o as never).validate();
  else throw new Error(`no schema check for ${o.kind}`);
}

/** The daemon's flags from container args (with $(VAR) expanded the way the kubelet does). */
function daemonFlags(container: Obj, vars: Record<string, string>): Flags {
  const args = (container.args as string[]).map((a) => a.replace(/\$\((\w+)\)/g, (_, v: string) => vars[v] ?? `$(${v})`));
  if (args[0] !== 'daemon') throw new Error(`container args must start with 'daemon': ${args.join(' ')}`);
  const { values, positionals } = parseArgs({ args: args.slice(1), options: daemonCommand.options, strict: true, allowPositionals: true });
  if (positionals.length > 0) throw new Error(`unexpected argument ${positionals[0]}`);
  return values as Flags;
}

function daemonSet(objs: Obj[]): Obj {
  const ds = objs.find((o) => o.kind === 'DaemonSet');
  if (!ds) throw new Error('no DaemonSet');
  return ds;
}

test('the base renders and every object is valid against the Kubernetes schema', (t) => {
  const objs = render(DEPLOY);
  t.deepEqual(objs.map((o) => o.kind).sort(), ['DaemonSet', 'ServiceAccount']);
  for (const o of objs) {
    t.notThrows(() => validate(o), `${o.kind} ${o.metadata.name}`);
    t.is(o.metadata.namespace, 'kube-system');
    t.is(o.metadata.labels['app.kubernetes.io/part-of'], 'vmpeer');
  }
  // the schema check does catch mistakes
  const broken = structuredClone(daemonSet(objs));
  broken.spec.template.spec.containers[0].ports[0].containerPort = 'metrics';
  t.throws(() => validate(broken));
  const sa = objs.find((o) => o.kind === 'ServiceAccount')!;
  t.false(sa.automountServiceAccountToken, 'no API token: the daemon does not use the Kubernetes API');
});

test('the DaemonSet: node-wide, minimal privileges, probes, mounts, metrics', (t) => {
  const ds = daemonSet(render(DEPLOY));
  const pod = ds.spec.template.spec;
  t.true(pod.hostNetwork);
  t.is(pod.dnsPolicy, 'ClusterFirstWithHostNet');
  t.is(pod.priorityClassName, 'system-node-critical');
  t.false(pod.automountServiceAccountToken);
  t.deepEqual(pod.tolerations, [{ operator: 'Exists' }], 'runs on every node, tainted or not');
  t.deepEqual(ds.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'vmpeer' });
  t.like(ds.spec.template.metadata.labels, ds.spec.selector.matchLabels);

  const [main, ...others] = pod.containers as Obj[];
  t.is(others.length, 0);
  t.is(main!.name, 'vmpeer');
  const sc = main!.securityContext;
  t.not(sc.privileged, true, 'the daemon is not privileged');
  t.deepEqual(sc.capabilities.drop, ['ALL']);
  t.deepEqual([...sc.capabilities.add].sort(), ['BPF', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_RESOURCE']);
  t.not(sc.allowPrivilegeEscalation, false, 'Kubernetes rejects allowPrivilegeEscalation: false together with CAP_SYS_ADMIN');
  t.is(sc.runAsUser, 0);
  t.true(sc.readOnlyRootFilesystem);

  // init container: mounts bpffs when missing; the only privileged one (Bidirectional propagation needs it)
  const [init] = pod.initContainers as Obj[];
  t.is(init!.securityContext.privileged, true);
  t.regex(init!.command.join(' '), /mount -t bpf bpf \/sys\/fs\/bpf/);
  t.deepEqual(init!.volumeMounts, [{ name: 'bpffs', mountPath: '/sys/fs/bpf', mountPropagation: 'Bidirectional' }]);

  const volumes = Object.fromEntries((pod.volumes as Obj[]).map((v) => [v.name, v.hostPath.path]));
  t.deepEqual(volumes, { bpffs: '/sys/fs/bpf', netns: '/var/run/netns' });
  const mounts = Object.fromEntries((main!.volumeMounts as Obj[]).map((m) => [m.mountPath, m.mountPropagation]));
  t.deepEqual(mounts, { '/sys/fs/bpf': 'HostToContainer', '/var/run/netns': 'HostToContainer' });

  // hostNetwork: a declared container port must equal its host port
  const [port] = main!.ports as Obj[];
  t.is(port!.hostPort, port!.containerPort);
  for (const [probe, pathName] of [
    ['livenessProbe', '/healthz'],
    ['readinessProbe', '/readyz'],
  ] as const) {
    t.is(main![probe].httpGet.path, pathName);
    t.is(main![probe].httpGet.port, port!.name);
  }
  const annotations = ds.spec.template.metadata.annotations;
  t.is(annotations['prometheus.io/scrape'], 'true');
  t.is(annotations['prometheus.io/port'], String(port!.containerPort));
  t.is(annotations['prometheus.io/path'], '/metrics');

  for (const c of [main!, init!]) {
    t.truthy(c.resources.requests.cpu && c.resources.requests.memory, `${c.name}: requests`);
    t.truthy(c.resources.limits.memory, `${c.name}: memory limit`);
  }

  // the arguments and environment are what the daemon accepts, and listen where the probes look
  const flags = daemonFlags(main!, { POD_IP: '10.0.0.7' });
  const env = Object.fromEntries((main!.env as Obj[]).filter((e) => e.value !== undefined).map((e) => [e.name, e.value as string]));
  const config = parseConfig(flags, { ...env, NODE_NAME: 'node-1' });
  t.deepEqual(config.metrics, { host: '10.0.0.7', port: port!.containerPort, text: `10.0.0.7:${port!.containerPort}` });
  t.is(config.nodeName, 'node-1');
  t.false(config.cleanupOnExit, 'a rolling update must not clean up');
  const known = new Set<string>([...Object.values(ENV), 'POD_IP']);
  for (const e of main!.env as Obj[]) t.true(known.has(e.name), `env ${e.name} is read by the daemon`);
});

test('components: host-pid (/proc discovery), uninstall (--cleanup-on-exit) and bypass-bridge', (t) => {
  const hostPid = daemonSet(render(DEPLOY, ['components/host-pid']));
  t.notThrows(() => validate(hostPid));
  t.true(hostPid.spec.template.spec.hostPID);
  const main = hostPid.spec.template.spec.containers[0];
  t.true(main.securityContext.capabilities.add.includes('SYS_PTRACE'));
  t.true(parseConfig(daemonFlags(main, { POD_IP: '10.0.0.7' }), {}).proc);

  const uninstall = daemonSet(render(DEPLOY, ['components/uninstall']));
  t.notThrows(() => validate(uninstall));
  t.true(parseConfig(daemonFlags(uninstall.spec.template.spec.containers[0], { POD_IP: '10.0.0.7' }), {}).cleanupOnExit);

  const bypass = daemonSet(render(DEPLOY, ['components/bypass-bridge']));
  t.notThrows(() => validate(bypass));
  t.true(parseConfig(daemonFlags(bypass.spec.template.spec.containers[0], { POD_IP: '10.0.0.7' }), {}).bypassBridge);
  t.false(parseConfig(daemonFlags(daemonSet(render(DEPLOY)).spec.template.spec.containers[0], { POD_IP: '10.0.0.7' }), {}).bypassBridge, 'off in the base');
});

test('kubectl kustomize renders the same objects, where kubectl is installed', (t) => {
  const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
  if (kubectl.status !== 0) {
    t.log('kubectl is not installed: the rendering above is checked by this test only');
    t.pass();
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpt-kust-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(DEPLOY, path.join(dir, 'base'), { recursive: true });
  for (const [name, components] of [
    ['plain', []],
    ['host-pid', ['components/host-pid']],
    ['uninstall', ['components/uninstall']],
    ['bypass-bridge', ['components/bypass-bridge']],
  ] as const) {
    const overlay = path.join(dir, name);
    fs.mkdirSync(overlay);
    fs.writeFileSync(
      path.join(overlay, 'kustomization.yaml'),
      `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../base]\ncomponents: [${components.map((c) => `../base/${c}`).join(', ')}]\n`,
    );
    const r = spawnSync('kubectl', ['kustomize', overlay], { encoding: 'utf8' });
    t.is(r.status, 0, r.stderr);
    const theirs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
    const ours = render(DEPLOY, [...components]);
    const byKind = (list: Obj[]) => Object.fromEntries(list.map((o) => [o.kind, o]));
    t.deepEqual(byKind(theirs), byKind(ours), name);
  }
});

test('Dockerfile: Node 22/24 on bookworm-slim, the packed vmpeer, no compiler in the image', (t) => {
  const text = fs.readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const stages: string[][] = [];
  for (const l of lines) {
    if (/^FROM /i.test(l)) stages.push([]);
    stages.at(-1)?.push(l);
  }
  t.is(stages.length, 2, 'a build stage and a runtime stage');
  const args = Object.fromEntries(lines.filter((l) => l.startsWith('ARG ')).map((l) => l.slice(4).split('=') as [string, string]));
  t.true(['22', '24'].includes(args.NODE_VERSION!), `Node ${args.NODE_VERSION}`);
  const runtime = stages[1]!;
  t.regex(runtime[0]!, /^FROM node:\$\{NODE_VERSION\}-bookworm-slim$/);

  const installed = runtime
    .filter((l) => l.startsWith('RUN '))
    .flatMap((l) => [...l.matchAll(/apt-get install ([^&]*)/g)].flatMap((m) => m[1]!.split(/\s+/).filter((w) => w && !w.startsWith('-'))));
  t.deepEqual(installed.sort(), ['libbpf1']);
  const compilers = /\b(gcc|g\+\+|cc|c\+\+|clang|llvm|make|cmake|build-essential|python3|node-gyp|prebuildify|libbpf-dev|tsc|npm|npx)\b/;
  for (const l of runtime.slice(1)) t.notRegex(l.replace(/^(ENTRYPOINT|CMD) .*/, ''), compilers, `runtime stage: ${l}`);
  const copies = runtime.filter((l) => l.startsWith('COPY'));
  t.deepEqual(copies, ['COPY --from=build /opt/vmpeer/node_modules /opt/vmpeer/node_modules'], 'only the installed package comes in');
  t.regex(runtime.find((l) => l.startsWith('USER'))!, /^USER 65532/, 'non-root by default');
  t.regex(runtime.find((l) => l.startsWith('ENTRYPOINT'))!, /^ENTRYPOINT \["node", ("--[a-z-]+(=\d+)?", )*"\/opt\/vmpeer\/node_modules\/vmpeer\/dist\/lib\/cli\/bin\.js"\]$/);
  t.is(runtime.find((l) => l.startsWith('CMD')), 'CMD ["daemon"]');

  // the build stage packs vmpeer the way npm publishes it (prepack: prebuildify, BPF, tsc)
  const build = stages[0]!;
  t.truthy(build.find((l) => /npm pack/.test(l)));
  for (const l of build.filter((x) => x.startsWith('COPY ') && !x.includes('--from'))) {
    for (const src of l.split(/\s+/).slice(1, -1)) t.true(fs.existsSync(path.join(packageRoot, src)), `build context has ${src}`);
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { files: string[]; scripts: Record<string, string> };
  t.regex(pkg.scripts.prepack!, /prebuild/);
  t.true(pkg.files.includes('dist/lib'), 'the CLI the entrypoint runs is packed');
  t.true(pkg.files.includes('prebuilds'), 'the prebuilt addon is packed');
  const object = path.relative(packageRoot, OBJECT_PATH);
  t.true(pkg.files.some((f) => f === object || (f.includes('*') && new RegExp(`^${f.replace(/\./g, '\\.').replace(/\*/g, '[^/]*')}$`).test(object))), `${object} is packed`);
  t.true(fs.existsSync(path.join(DEPLOY, 'Dockerfile.dockerignore')));
});
