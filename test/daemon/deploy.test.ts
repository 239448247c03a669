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
import path from 'node:path';
import { parseArgs } from 'node:util';
import test from 'ava';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_RESYNC_INTERVAL, ENV, parseConfig, type Flags } from '../../lib/daemon/config.js';
import { daemonCommand } from '../../lib/cli/commands/daemon.js';
import { OBJECT_PATH } from '../../lib/dataplane/dataplane.js';
import { packageRoot } from '../../lib/native.js';
import { components, daemonSet, KUSTOMIZE, kustomizeOverlay, render, type Obj } from '../helpers/kustomize.js';
import { strictCheck } from '../helpers/schema.js';

const DEPLOY = path.join(packageRoot, 'deploy');

function validate(o: Obj): void {
  if (o.kind === 'DaemonSet') new DaemonSet(o as never).validate();
  else if (o.kind === 'ServiceAccount') new ServiceAccount(o as never).validate();
  else if (o.kind === 'ConfigMap') new ConfigMap(o as never).validate();
  else if (o.kind === 'PrometheusRule' || o.kind === 'PodMonitor') return; // CRDs: test/deploy/monitoring.test.ts
  else throw new Error(`no schema check for ${o.kind}`);
  strictCheck(o as { kind: string; apiVersion: string });
}

/** The daemon's flags from container args (with $(VAR) expanded the way the kubelet does). */
function daemonFlags(container: Obj, vars: Record<string, string>): Flags {
  const args = (container.args as string[]).map((a) => a.replace(/\$\((\w+)\)/g, (_, v: string) => vars[v] ?? `$(${v})`));
  if (args[0] !== 'daemon') throw new Error(`container args must start with 'daemon': ${args.join(' ')}`);
  const { values, positionals } = parseArgs({ args: args.slice(1), options: daemonCommand.options, strict: true, allowPositionals: true });
  if (positionals.length > 0) throw new Error(`unexpected argument ${positionals[0]}`);
  return values as Flags;
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
  // and misspelled fields, at any depth (kubernetes-models alone accepts them)
  for (const [where, edit] of [
    ['securityContext.capabilites', (c: Obj) => (c.securityContext.capabilites = c.securityContext.capabilities)],
    ['volumeMounts[0].mountPropagaton', (c: Obj) => (c.volumeMounts[0].mountPropagaton = 'HostToContainer')],
    ['readinessProbe.httpget', (c: Obj) => (c.readinessProbe.httpget = c.readinessProbe.httpGet)],
  ] as const) {
    const typo = structuredClone(daemonSet(objs));
    edit(typo.spec.template.spec.containers[0]);
    t.notThrows(() => new DaemonSet(typo as never).validate(), `kubernetes-models alone misses ${where}`);
    t.throws(() => validate(typo), { message: new RegExp(where.replace(/[.[\]]/g, '\\$&').replace(/^/, '\\.') + ': no such field') }, where);
  }
  const typoSpec = structuredClone(daemonSet(objs));
  typoSpec.spec.template.spec.hostNetwrok = true;
  t.throws(() => validate(typoSpec), { message: /spec\.template\.spec\.hostNetwrok: no such field/ });
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
  t.deepEqual([...sc.capabilities.add].sort(), ['NET_ADMIN', 'SYS_ADMIN', 'SYS_RESOURCE'], 'least privilege: test/deploy/pod.test.ts measures each');
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
  const flags = daemonFlags(main!, { NODE_IP: '10.0.0.7' });
  const env = Object.fromEntries((main!.env as Obj[]).filter((e) => e.value !== undefined).map((e) => [e.name, e.value as string]));
  const config = parseConfig(flags, { ...env, NODE_NAME: 'node-1' });
  // bound to the node's IP, from the downward API, not to every address
  t.deepEqual((main!.env as Obj[]).find((e) => e.name === 'NODE_IP')?.valueFrom, { fieldRef: { fieldPath: 'status.hostIP' } });
  t.true((main!.args as string[]).includes('--metrics-address=$(NODE_IP):9808'));
  t.deepEqual(config.metrics, { host: '10.0.0.7', port: port!.containerPort, text: `10.0.0.7:${port!.containerPort}` });
  t.is(config.nodeName, 'node-1');
  t.is(env.VMPEER_RESYNC_INTERVAL, DEFAULT_RESYNC_INTERVAL, 'the resync interval the README documents as the default');
  t.false(config.cleanupOnExit, 'a rolling update must not clean up');
  const known = new Set<string>([...Object.values(ENV), 'NODE_IP']);
  for (const e of main!.env as Obj[]) t.true(known.has(e.name), `env ${e.name} is read by the daemon`);
});

test('every component renders onto the base, alone and all together, and validates', (t) => {
  const all = components(DEPLOY);
  t.true(all.length >= 4, all.join(', '));
  for (const set of [...all.map((c) => [c]), all]) {
    const objs = render(DEPLOY, set);
    for (const o of objs) t.notThrows(() => validate(o), `${set.join('+')}: ${o.kind} ${o.metadata.name}`);
    t.is(objs.filter((o) => o.kind === 'DaemonSet').length, 1);
  }
});

test('components: host-pid (/proc discovery), uninstall (--cleanup-on-exit) and keep-bridge', (t) => {
  const hostPid = daemonSet(render(DEPLOY, ['components/host-pid']));
  t.notThrows(() => validate(hostPid));
  t.true(hostPid.spec.template.spec.hostPID);
  const main = hostPid.spec.template.spec.containers[0];
  t.true(main.securityContext.capabilities.add.includes('SYS_PTRACE'));
  t.true(parseConfig(daemonFlags(main, { NODE_IP: '10.0.0.7' }), {}).proc);

  const uninstall = daemonSet(render(DEPLOY, ['components/uninstall']));
  t.notThrows(() => validate(uninstall));
  t.true(parseConfig(daemonFlags(uninstall.spec.template.spec.containers[0], { NODE_IP: '10.0.0.7' }), {}).cleanupOnExit);

  const keep = daemonSet(render(DEPLOY, ['components/keep-bridge']));
  t.notThrows(() => validate(keep));
  t.false(parseConfig(daemonFlags(keep.spec.template.spec.containers[0], { NODE_IP: '10.0.0.7' }), {}).bypassBridge, 'keep-bridge: the bridge stays on the path');
  t.true(parseConfig(daemonFlags(daemonSet(render(DEPLOY)).spec.template.spec.containers[0], { NODE_IP: '10.0.0.7' }), {}).bypassBridge, 'the base bypasses the bridge (the default)');
  t.false(parseConfig(daemonFlags(daemonSet(render(DEPLOY, components(DEPLOY))).spec.template.spec.containers[0], { NODE_IP: '10.0.0.7' }), {}).bypassBridge, 'all components together: keep-bridge holds');
});

test('kustomize renders the same objects as the renderer the tests use', (t) => {
  const version = spawnSync(KUSTOMIZE, ['version'], { encoding: 'utf8' });
  t.is(version.status, 0, `kustomize is needed at ${KUSTOMIZE} (scripts/bootstrap unpacks it): ${version.error?.message ?? version.stderr}`);
  if (version.status !== 0) return;
  const sets: Array<[string, string[]]> = [['plain', []], ...components(DEPLOY).map((c): [string, string[]] => [path.basename(c), [c]])];
  for (const [name, set] of sets) {
    const theirs = kustomizeOverlay(DEPLOY, { components: set });
    const ours = render(DEPLOY, set);
    const byKind = (list: Obj[]) => Object.fromEntries(list.map((o) => [`${o.kind}/${o.metadata.name}`, o]));
    t.deepEqual(byKind(theirs), byKind(ours), name);
  }
});

test('Dockerfile: base images as build arguments, the packed vmpeer, one trimmed filesystem without compiler or npm', (t) => {
  const text = fs.readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const stages: string[][] = [];
  for (const l of lines) {
    if (/^FROM /i.test(l)) stages.push([]);
    stages.at(-1)?.push(l);
  }
  const args = Object.fromEntries(lines.filter((l) => l.startsWith('ARG ')).map((l) => l.slice(4).split('=') as [string, string]));
  t.true(['22', '24'].includes(args.NODE_VERSION!), `Node ${args.NODE_VERSION}`);
  t.is(args.BUILD_BASE, 'docker.io/library/node:${NODE_VERSION}-bookworm');
  t.is(args.RUNTIME_BASE, 'docker.io/library/debian:bookworm-slim');
  t.deepEqual(stages.map((st) => st[0]), ['FROM ${BUILD_BASE} AS build', 'FROM ${RUNTIME_BASE} AS rootfs', 'FROM scratch'], 'build, rootfs, and the image: that one filesystem');
  const [build, rootfs, image] = stages as [string[], string[], string[]];

  const installed = rootfs
    .filter((l) => l.startsWith('RUN '))
    .flatMap((l) => [...l.matchAll(/apt-get install ([^&]*)/g)].flatMap((m) => m[1]!.split(/\s+/).filter((w) => w && !w.startsWith('-'))));
  t.deepEqual(installed.sort(), ['libbpf1']);
  const compilers = /\b(gcc|g\+\+|cc|c\+\+|clang|llvm|make|cmake|build-essential|python3|node-gyp|prebuildify|libbpf-dev|tsc|npm|npx)\b/;
  for (const l of [...rootfs.slice(1).filter((x) => !x.startsWith('RUN ')), ...image.slice(1)]) t.notRegex(l.replace(/^(ENTRYPOINT|CMD) .*/, ''), compilers, l);
  t.deepEqual(rootfs.filter((l) => l.startsWith('COPY')), [
    'COPY --from=build /opt/node /usr/local/bin/node',
    'COPY --from=build /opt/vmpeer/node_modules /opt/vmpeer/node_modules',
  ], 'only node and the installed package come in');
  t.regex(rootfs.find((l) => l.startsWith('RUN '))!, /rm -rf .*\/usr\/local\/lib\/node_modules/, "the base's npm goes");
  t.deepEqual(image.filter((l) => l.startsWith('COPY')), ['COPY --from=rootfs / /']);
  t.regex(image.find((l) => l.startsWith('USER'))!, /^USER 65532/, 'non-root by default');
  t.regex(image.find((l) => l.startsWith('ENTRYPOINT'))!, /^ENTRYPOINT \["node", ("--[a-z-]+(=\d+)?", )*"\/opt\/vmpeer\/node_modules\/vmpeer\/dist\/lib\/cli\/bin\.js"\]$/);
  t.is(image.find((l) => l.startsWith('CMD')), 'CMD ["--help"]', 'a bare run starts no daemon');

  // the build stage packs vmpeer the way npm publishes it (prepack: prebuildify, BPF, tsc), against local headers
  t.truthy(build.find((l) => /^ENV npm_config_nodedir=/.test(l)), 'node-gyp downloads no headers');
  t.truthy(build.find((l) => /mkdir -p \/out && npm pack .*--pack-destination \/out/.test(l)));
  for (const l of build.filter((x) => x.startsWith('COPY ') && !x.includes('--from'))) {
    for (const src of l.split(/\s+/).slice(1, -1)) t.true(fs.existsSync(path.join(packageRoot, src)), `build context has ${src}`);
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { files: string[]; scripts: Record<string, string> };
  t.regex(pkg.scripts.prepack!, /prebuild/);
  t.true(pkg.files.includes('dist/lib'), 'the CLI the entrypoint runs is packed');
  t.true(pkg.files.includes('prebuilds'), 'the prebuilt addon is packed');
  const object = path.relative(packageRoot, OBJECT_PATH);
  t.true(pkg.files.some((f) => f === object || (f.includes('*') && new RegExp(`^${f.replace(/\./g, '\\.').replace(/\*/g, '[^/]*')}$`).test(object))), `${object} is packed`);
  const ignore = fs.readFileSync(path.join(DEPLOY, 'Dockerfile.dockerignore'), 'utf8');
  for (const p of ['.cache', 'node_modules', '.git']) t.true(ignore.split('\n').includes(p), `the build context leaves out ${p}`);
});
