/**
 * The DaemonSet's pod template, as rendered, run as a pod by podman (`podman
 * kube play`) in a lab's node netns: the image built by scripts/image, and
 * what the kubelet would do that podman does not, done here field by field:
 *   - env valueFrom.fieldRef: spec.nodeName and status.podIP (the node's IP:
 *     hostNetwork) become values; any other valueFrom is an error;
 *   - $(VAR) in command and args expanded from the container's env;
 *   - hostNetwork ports: the node's own (hostPort == containerPort, asserted);
 *     podman refuses port mappings without a bridge, so they are dropped;
 *   - probes: podman would turn them into curl healthchecks (no curl in the
 *     image); they are dropped here and probeUrls() gives what the kubelet
 *     would GET, which the tests do themselves.
 * Any other field goes to podman as rendered. What podman made of the
 * security context, mounts, env and args is checked by the tests on the
 * running process (/proc), not trusted.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { stringify } from 'yaml';
import { packageRoot } from '../../lib/native.js';
import type { Obj } from './kustomize.js';

export const TEST_IMAGE = 'localhost/vmpeer:test';

export interface PodEnv {
  name: string;
  nodeName: string;
  podIp: string;
  restartPolicy?: 'Always' | 'Never';
  /** Edit the daemon's container after mapping (least-privilege runs). */
  edit?: (container: Obj) => void;
}

const FIELD_REFS: Record<string, (p: PodEnv) => string> = {
  'spec.nodeName': (p) => p.nodeName,
  'status.podIP': (p) => p.podIp,
  'status.hostIP': (p) => p.podIp,
};

/** A Pod for `podman kube play` from a rendered DaemonSet. */
export function podFromDaemonSet(ds: Obj, p: PodEnv): Obj {
  const spec = structuredClone(ds.spec.template.spec) as Obj;
  for (const c of [...(spec.containers as Obj[]), ...((spec.initContainers as Obj[]) ?? [])]) {
    c.env = ((c.env as Obj[]) ?? []).map((e) => {
      if (e.valueFrom === undefined) return e;
      const ref = e.valueFrom.fieldRef?.fieldPath as string | undefined;
      const value = ref !== undefined ? FIELD_REFS[ref] : undefined;
      if (Object.keys(e.valueFrom).length !== 1 || !value) throw new Error(`${c.name}: env ${e.name}: cannot map valueFrom ${JSON.stringify(e.valueFrom)}`);
      return { name: e.name, value: value(p) };
    });
    // the kubelet expands $(VAR) in command and args from the container's env ($$ escapes); podman does not
    const vars = Object.fromEntries((c.env as Obj[]).map((e) => [e.name as string, String(e.value)]));
    const expand = (a: string) => a.replace(/\$\$|\$\((\w+)\)/g, (m, v?: string) => (v === undefined ? '$' : (vars[v] ?? m)));
    for (const key of ['command', 'args']) if (c[key]) c[key] = (c[key] as string[]).map(expand);
    for (const port of (c.ports as Obj[]) ?? []) {
      if (!spec.hostNetwork || port.hostPort !== port.containerPort) throw new Error(`${c.name}: port ${port.name}: only hostNetwork ports with hostPort == containerPort can be mapped`);
    }
    delete c.ports;
    delete c.livenessProbe;
    delete c.readinessProbe;
  }
  const main = (spec.containers as Obj[])[0]!;
  p.edit?.(main);
  spec.restartPolicy = p.restartPolicy ?? spec.restartPolicy ?? 'Always';
  // podman 4.3 removes a "once" init container as it exits and races with it
  // ("cannot remove container ... as it is running"): keep it instead
  const annotations = { ...ds.spec.template.metadata.annotations, 'io.podman.annotations.init.container.type': 'always' };
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: p.name, labels: ds.spec.template.metadata.labels, annotations }, spec };
}

/** What the kubelet's probes would GET: path → URL on the pod's IP and the named port. */
export function probeUrls(ds: Obj, podIp: string): { liveness: string; readiness: string } {
  const c = ds.spec.template.spec.containers[0] as Obj;
  const url = (probe: Obj) => {
    const port = typeof probe.httpGet.port === 'number' ? probe.httpGet.port : (c.ports as Obj[]).find((x) => x.name === probe.httpGet.port)!.containerPort;
    return `http://${podIp}:${port}${probe.httpGet.path}`;
  };
  return { liveness: url(c.livenessProbe), readiness: url(c.readinessProbe) };
}

/**
 * The tier's own container storage, under the checkout's .cache: images,
 * layers, containers and podman's state live there, so the tests add nothing
 * to the machine's storage, and scripts/image --prune-cache keeps it to the
 * bases, one build's layer cache and the tagged images.
 */
export const STORE = path.join(packageRoot, '.cache/containers');

/**
 * podman's and buildah's environment for the tests: the private store
 * (CONTAINERS_STORAGE_CONF, and podman's tmp_dir beside it), and default
 * ulimits that do not exceed this process's (podman as root raises them past
 * 1M otherwise, which fails where root lacks CAP_SYS_RESOURCE).
 */
function podmanEnv(): NodeJS.ProcessEnv {
  const storage = path.join(STORE, 'storage.conf');
  if (!fs.existsSync(storage)) {
    fs.mkdirSync(STORE, { recursive: true });
    fs.writeFileSync(`${storage}.tmp`, `[storage]\ndriver = "overlay"\ngraphroot = "${STORE}/storage"\nrunroot = "${STORE}/run"\n`);
    fs.renameSync(`${storage}.tmp`, storage);
  }
  const conf = path.join(os.tmpdir(), `vpt-containers-${process.pid}.conf`);
  if (!fs.existsSync(conf)) {
    const limits = fs.readFileSync('/proc/self/limits', 'utf8');
    const hard = (what: string) => Number(new RegExp(`^${what}\\s+\\S+\\s+(\\S+)`, 'm').exec(limits)?.[1]) || 1024;
    const nofile = Math.min(hard('Max open files'), 1 << 20);
    const nproc = Math.min(hard('Max processes'), 32768);
    fs.writeFileSync(conf, `[containers]\ndefault_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]\n[engine]\ntmp_dir = "${STORE}/tmp"\n`);
    process.once('exit', () => fs.rmSync(conf, { force: true }));
  }
  return { ...process.env, CONTAINERS_CONF: conf, CONTAINERS_STORAGE_CONF: storage };
}

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * podman, as a child the test waits for without blocking: the lab's traffic
 * (ping in a child process, its output read by this event loop) goes on
 * meanwhile. A spawnSync() here stopped the loop for as long as podman took
 * (`pod stop`: seconds, `kube play`: up to 20 s on a loaded host), the ping's
 * stdout pipe filled, ping blocked in write(2) and stopped sending: echoes
 * counted as lost that no packet path ever dropped.
 */
export function podman(args: string[], options: { netns?: string; input?: string } = {}): Promise<Run> {
  const argv = options.netns ? ['nsenter', `--net=${options.netns}`, 'podman', ...args] : ['podman', ...args];
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: podmanEnv(), stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], timeout: 120_000 });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => (stderr += String(e)));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    if (child.stdin) {
      child.stdin.on('error', (e) => (stderr += String(e))); // podman gone before reading it: its status says why
      child.stdin.end(options.input);
    }
  });
}

/** Plays the pod in `netns` (hostNetwork: the node's netns is the pod's); removed when the test ends. */
export async function playPod(t: ExecutionContext, pod: Obj, netns: string): Promise<void> {
  const name = pod.metadata.name as string;
  t.teardown(async () => {
    await podman(['pod', 'rm', '-f', '-t', '0', name]);
  });
  const r = await podman(['kube', 'play', '-'], { netns, input: stringify(pod) });
  if (r.status !== 0) throw new Error(`podman kube play: ${r.stderr}`);
}

/** The daemon container's name in a played pod. */
export function containerName(pod: Obj): string {
  return `${pod.metadata.name}-${pod.spec.containers[0].name}`;
}

/** The container's log lines, parsed (JSON lines; others as raw). */
export async function containerLogs(name: string): Promise<Array<Record<string, any>>> {
  const r = await podman(['logs', name]);
  return `${r.stdout}${r.stderr}`
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, any>;
      } catch {
        return { level: 'raw', msg: l };
      }
    });
}

export async function inspect(name: string, format: string): Promise<string> {
  return (await podman(['inspect', '--format', format, name])).stdout.trim();
}

/** buildah on the tier's store. */
export function buildah(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('buildah', args, { encoding: 'utf8', env: podmanEnv(), timeout: 120_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/**
 * scripts/image on the tier's store, one at a time (its cache is shared by the
 * test files); its stdout. The bases are made here (--base local) unless
 * VMPEER_IMAGE_BASE says otherwise: the same images on every machine, and no
 * registry pull timing out where none is reachable.
 */
export function imageScript(args: string[]): string {
  fs.mkdirSync(path.join(packageRoot, '.cache/image'), { recursive: true });
  const r = spawnSync('flock', [path.join(packageRoot, '.cache/image/.build-lock'), path.join(packageRoot, 'scripts/image'), ...args], {
    cwd: packageRoot,
    encoding: 'utf8',
    env: { ...podmanEnv(), VMPEER_IMAGE_BASE: process.env.VMPEER_IMAGE_BASE ?? 'local' },
    timeout: 600_000,
  });
  if (r.status !== 0) throw new Error(`scripts/image ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Builds the image once per run for every test file that needs it (cached layers make a second call cheap). */
export function buildTestImage(tag = TEST_IMAGE): { ms: number } {
  const t0 = Date.now();
  imageScript(['--tag', tag, '--prune-cache']);
  return { ms: Date.now() - t0 };
}
