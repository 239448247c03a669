/**
 * deploy/components/monitoring: the PrometheusRule passes `promtool check
 * rules` and its unit tests (`promtool test rules`, monitoring.rules-test.yaml:
 * each alert fires when it should, and not before), the dashboard's queries
 * parse as PromQL, and every query of both names only metrics the daemon
 * registers (read from lib/daemon/metrics.ts, not from a list kept here).
 * promtool is Debian's, unpacked by scripts/bootstrap into .cache/prometheus.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { stringify } from 'yaml';
import { DaemonMetrics, type MetricsSource } from '../../lib/daemon/metrics.js';
import { packageRoot } from '../../lib/native.js';
import { render, type Obj } from '../helpers/kustomize.js';

const DEPLOY = path.join(packageRoot, 'deploy');
const PROMTOOL = path.join(packageRoot, '.cache/prometheus/usr/bin/promtool');

function monitoring(): { rule: Obj; monitor: Obj; dashboard: Obj } {
  const objs = render(DEPLOY, ['components/monitoring']);
  const rule = objs.find((o) => o.kind === 'PrometheusRule')!;
  const monitor = objs.find((o) => o.kind === 'PodMonitor')!;
  const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'vmpeer-grafana-dashboard')!;
  return { rule, monitor, dashboard: JSON.parse(cm.data['vmpeer-dashboard.json']) as Obj };
}

function promtool(t: ExecutionContext, dir: string, args: string[]): { status: number | null; out: string } {
  t.true(fs.existsSync(PROMTOOL), `${PROMTOOL}: run scripts/bootstrap`);
  const r = spawnSync(PROMTOOL, args, { cwd: dir, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function tmp(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpt-prom-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every series name the daemon's registry exports (histograms as _bucket, _sum, _count). */
function exportedNames(): Set<string> {
  const metrics = new DaemonMetrics({} as MetricsSource, { version: '0', node: 'n', kernel: 'k', fixupTag: '', redirectTag: '' });
  const names = new Set<string>();
  for (const m of metrics.registry.getMetricsAsArray()) {
    const { name, type } = m as unknown as { name: string; type: string };
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    else names.add(name);
  }
  return names;
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'offset', 'bool', 'inf', 'nan']);

/** The metric names a PromQL expression selects: identifiers outside strings, label matchers, groupings and ranges, not called. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  return [...bare.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()/g)].map((m) => m[1]!).filter((w) => !KEYWORDS.has(w.toLowerCase()));
}

/** The dashboard's queries as Prometheus would receive them (Grafana's variables filled in). */
function dashboardQueries(dashboard: Obj): string[] {
  const fill = (q: string) => q.replace(/\$__rate_interval/g, '5m').replace(/\$node/g, '.*');
  const targets = (dashboard.panels as Obj[]).flatMap((p) => (p.targets as Obj[]).map((x) => fill(x.expr as string)));
  const variables = (dashboard.templating.list as Obj[]).filter((v) => v.type === 'query').map((v) => /^label_values\((\w+), \w+\)$/.exec(v.query.query)![1]!);
  return [...targets, ...variables];
}

test('the PrometheusRule passes promtool check rules and its unit tests', (t) => {
  const { rule } = monitoring();
  const dir = tmp(t);
  fs.writeFileSync(path.join(dir, 'rules.yaml'), stringify(rule.spec));
  const check = promtool(t, dir, ['check', 'rules', 'rules.yaml']);
  t.is(check.status, 0, check.out);
  t.regex(check.out, /SUCCESS: 6 rules found/);
  fs.copyFileSync(path.join(packageRoot, 'test/deploy/monitoring.rules-test.yaml'), path.join(dir, 'tests.yaml'));
  const unit = promtool(t, dir, ['test', 'rules', 'tests.yaml']);
  t.is(unit.status, 0, unit.out);
  t.deepEqual(
    (rule.spec.groups[0].rules as Obj[]).map((r) => r.alert),
    ['VmpeerNotReady', 'VmpeerReconcileErrors', 'VmpeerPodsUncovered', 'VmpeerWaitingForGuestMac', 'VmpeerEndpointConflict', 'VmpeerAbsent'],
  );

  // negative control: an alert that fires too early fails its unit test
  const early = structuredClone(rule.spec);
  early.groups[0].rules[0].for = '1m';
  fs.writeFileSync(path.join(dir, 'rules.yaml'), stringify(early));
  const bad = promtool(t, dir, ['test', 'rules', 'tests.yaml']);
  t.not(bad.status, 0, 'promtool test rules catches a changed rule');
  t.regex(bad.out, /VmpeerNotReady/);
});

test("the dashboard's queries parse as PromQL", (t) => {
  const { dashboard } = monitoring();
  const queries = dashboardQueries(dashboard);
  t.true(queries.length >= 10);
  const dir = tmp(t);
  const asRules = (qs: string[]) => stringify({ groups: [{ name: 'dashboard', rules: qs.map((expr, i) => ({ record: `dashboard:query${i}`, expr })) }] });
  fs.writeFileSync(path.join(dir, 'dashboard.yaml'), asRules(queries));
  const check = promtool(t, dir, ['check', 'rules', 'dashboard.yaml']);
  t.is(check.status, 0, check.out);
  fs.writeFileSync(path.join(dir, 'broken.yaml'), asRules(['sum by (node (vmpeer_ready)']));
  t.not(promtool(t, dir, ['check', 'rules', 'broken.yaml']).status, 0, 'negative control: a malformed query fails');
});

test('every query of the rules and the dashboard names a metric the daemon exports', (t) => {
  const exported = exportedNames();
  t.true(exported.has('vmpeer_ready') && exported.has('vmpeer_reconcile_duration_seconds_bucket') && exported.has('process_resident_memory_bytes'));
  const { rule, dashboard, monitor } = monitoring();
  const queries = [...(rule.spec.groups as Obj[]).flatMap((g) => (g.rules as Obj[]).map((r) => r.expr as string)), ...dashboardQueries(dashboard)];
  for (const q of queries) {
    const names = metricNames(q);
    t.true(names.length > 0, `${q}: selects no metric`);
    for (const n of names) t.true(exported.has(n), `${q}: ${n} is not a metric the daemon exports`);
  }
  t.deepEqual(metricNames('vmper_ready == 0 and on (node) vmpeer_build_info'), ['vmper_ready', 'vmpeer_build_info'], 'negative control: a misspelled name is found');
  t.false(exported.has('vmper_ready'));

  // the PodMonitor scrapes the DaemonSet's pods on the port the probes use
  const ds = render(DEPLOY).find((o) => o.kind === 'DaemonSet')!;
  t.deepEqual(monitor.spec.selector.matchLabels, ds.spec.selector.matchLabels);
  t.is(monitor.spec.podMetricsEndpoints[0].port, ds.spec.template.spec.containers[0].ports[0].name);
  t.is(monitor.metadata.namespace, ds.metadata.namespace);
});
