/**
 * Structure of the deployment files in docker/: they parse, the sidecar
 * shares the tunnel client's namespace with two capabilities and no
 * privileged flag, the collector wires otlp -> prometheusremotewrite, and
 * Prometheus' configuration passes promtool. (No Docker engine runs here:
 * nothing is built or started.)
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { deployedEnv } from '../bench/whole-process.js';
import { seriesText, variableOptions } from './grafana-variable.js';

const read = (path: string) => readFile(join('docker', path), 'utf8');
interface Dashboard {
  templating: { list: { name: string; definition: string; regex: string; query: { query: string; qryType?: number; seriesQuery?: string }; multi: boolean; includeAll: boolean }[] };
  panels: { title: string; description?: string; datasource: { uid: string }; targets: { expr: string; legendFormat?: string }[] }[];
}
const readDashboard = async () => JSON.parse(await read('grafana/dashboards/markmeter.json')) as Dashboard;
type Service = Record<string, unknown> & { cap_add?: string[]; volumes?: string[]; command?: string[]; image?: string };
/** Compose's byte values ("2g", "512m") in MiB. */
const mebibytes = (value: string): number => {
  const match = /^(\d+)([kmg])b?$/i.exec(value);
  if (!match) throw new Error(`not a compose byte value: ${value}`);
  return Number(match[1]) * { k: 1 / 1024, m: 1, g: 1024 }[match[2]!.toLowerCase() as 'k' | 'm' | 'g'];
};

describe('docker/', () => {
  test('Dockerfile: multi-stage on Node LTS slim, non-root with file capabilities, HEALTHCHECK on /readyz, markmeter run', async () => {
    const dockerfile = await read('Dockerfile');
    const froms = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    assert.equal(froms.length, 2);
    assert.ok(froms.every((f) => /^node:(22|24)-bookworm-slim/.test(f!)), froms.join());
    assert.match(dockerfile, /^USER node$/m);
    // What each backend's tools need, no more (test/integration/install.test.ts reads both
    // backends with exactly these): file capabilities are all or nothing, so a capability the
    // binary carries and the container lacks keeps the binary from starting at all.
    assert.match(dockerfile, /setcap cap_net_admin\+ep \/usr\/sbin\/xtables-nft-multi/);
    assert.match(dockerfile, /setcap cap_net_admin,cap_net_raw\+ep \/usr\/sbin\/xtables-legacy-multi/);
    assert.equal([...dockerfile.matchAll(/setcap /g)].length, 2);
    assert.match(dockerfile, /^HEALTHCHECK .*\n?.*\/readyz/m);
    assert.match(dockerfile, /^ENTRYPOINT \["node", "\/app\/dist\/cli\.js"\]$/m);
    // The young generation capped and large buffers given back when freed, as the systemd unit
    // does (and the bench runs the agent so).
    const unit = await readFile('config/markmeter.service', 'utf8');
    assert.deepEqual(deployedEnv(), { NODE_OPTIONS: '--max-semi-space-size=1', MALLOC_MMAP_THRESHOLD_: '131072' });
    for (const [name, value] of Object.entries(deployedEnv())) assert.match(unit, new RegExp(`^Environment=${name}=${value}$`, 'm'));
    assert.match(dockerfile, /^CMD \["run"/m);
    assert.doesNotMatch(dockerfile.replace(/^#.*$/gm, ''), /privileged/);
  });

  test('compose.yaml: the sidecar in the client\'s namespace, NET_ADMIN and NET_RAW only, read-only, users document read-only', async () => {
    const compose = YAML.parse(await read('compose.yaml')) as { services: Record<string, Service> };
    const { services } = compose;
    assert.deepEqual(Object.keys(services).sort(), ['grafana', 'markmeter', 'otel-collector', 'prometheus', 'tunnel-client']);
    const sidecar = services.markmeter!;
    assert.equal(sidecar.network_mode, 'service:tunnel-client');
    assert.deepEqual([...(sidecar.cap_add ?? [])].sort(), ['NET_ADMIN', 'NET_RAW']);
    assert.equal(sidecar.privileged, undefined);
    assert.equal(sidecar.read_only, true);
    assert.ok(sidecar.volumes?.some((v) => v.endsWith(':/etc/markmeter:ro')));
    assert.match(String((sidecar.environment as Record<string, string>).OTEL_EXPORTER_OTLP_ENDPOINT), /^http:\/\/otel-collector:4318$/);
    assert.match(services['otel-collector']!.image!, /opentelemetry-collector-contrib/);
    // The memory_limiter's limit (otel-collector.yaml) sits below the container's own.
    const collectorMiB = mebibytes(String(services['otel-collector']!.mem_limit));
    const limiter = (YAML.parse(await read('otel-collector.yaml')) as { processors: { memory_limiter: Record<string, number> } }).processors.memory_limiter;
    assert.equal(limiter.limit_percentage, undefined, 'a percentage of what? without a container limit it is the host\'s memory');
    assert.ok(limiter.limit_mib! > 0 && limiter.spike_limit_mib! > 0 && limiter.spike_limit_mib! < limiter.limit_mib!, JSON.stringify(limiter));
    assert.ok(limiter.limit_mib! <= collectorMiB * 0.85, `limit_mib ${limiter.limit_mib} leaves room under mem_limit ${collectorMiB} MiB`);
    assert.ok(services.prometheus!.command?.includes('--web.enable-remote-write-receiver'));
    assert.ok(services.grafana!.volumes?.some((v) => v.includes('grafana/provisioning')));
    for (const [name, service] of Object.entries(services)) assert.notEqual(service.privileged, true, `${name} is not privileged`);
  });

  test('otel-collector.yaml: otlp over http on 0.0.0.0 -> memory_limiter, batch -> prometheusremotewrite with queue and retry', async () => {
    const config = YAML.parse(await read('otel-collector.yaml')) as {
      receivers: { otlp: { protocols: { http: { endpoint: string } } } };
      exporters: { prometheusremotewrite: { endpoint: string; remote_write_queue: { enabled: boolean }; retry_on_failure: { enabled: boolean } } };
      service: { pipelines: { metrics: { receivers: string[]; processors: string[]; exporters: string[] } } };
    };
    assert.equal(config.receivers.otlp.protocols.http.endpoint, '0.0.0.0:4318');
    const pipeline = config.service.pipelines.metrics;
    assert.deepEqual(pipeline.receivers, ['otlp']);
    assert.deepEqual(pipeline.processors, ['memory_limiter', 'batch']);
    assert.deepEqual(pipeline.exporters, ['prometheusremotewrite']);
    assert.match(config.exporters.prometheusremotewrite.endpoint, /\/api\/v1\/write$/);
    assert.equal(config.exporters.prometheusremotewrite.remote_write_queue.enabled, true);
    assert.equal(config.exporters.prometheusremotewrite.retry_on_failure.enabled, true);
  });

  test('Grafana: provisioned datasource, and a dashboard with the user and agent variables and rates over $__rate_interval', async () => {
    const datasource = YAML.parse(await read('grafana/provisioning/datasources/prometheus.yaml')) as { datasources: { uid: string; url: string }[] };
    const dashboard = await readDashboard();
    const user = dashboard.templating.list.find((v) => v.name === 'user')!;
    assert.ok(user.multi && user.includeAll);
    assert.ok(dashboard.templating.list.some((v) => v.name === 'instance'));
    for (const panel of dashboard.panels) {
      assert.equal(panel.datasource.uid, datasource.datasources[0]!.uid, panel.title);
      for (const { expr } of panel.targets) if (expr.includes('rate(')) assert.match(expr, /\[\$__rate_interval\]/, panel.title);
    }
    const titles = dashboard.panels.map((p) => p.title).join(' | ');
    for (const wanted of [/RX packets/, /TX packets/, /RX bits/, /TX bits/, /Top 10/, /Interface total/, /Shaper drops/, /Shaper overlimits/, /collection errors/, /reading duration/, /syncs/]) {
      assert.match(titles, wanted);
    }
  });

  test('Grafana: the user variable is user_code, shown as user_name where the series carry one (iptables or TC series)', async () => {
    const user = (await readDashboard()).templating.list.find((v) => v.name === 'user')!;
    // A series query (Grafana asks /api/v1/series over the dashboard's range), not query_result.
    assert.equal(user.query.query, user.definition);
    assert.equal(user.query.seriesQuery, user.definition);
    assert.equal(user.query.qryType, 4);
    assert.match(user.definition, /net_user_rx_packets_total/);
    assert.match(user.definition, /net_user_tc_rx_packets_total/);
    const series = (labels: Record<string, string>) => seriesText({ __name__: 'net_user_rx_packets_total', instance: 'gw1', job: 'markmeter', ...labels });
    const texts = [
      series({ user_code: 'alice', user_intra_ip: '10.8.0.2', user_name: 'Alice Liddell' }),
      series({ user_code: 'bob', user_intra_ip: '10.8.0.3' }),
      seriesText({ __name__: 'net_user_tc_rx_packets_total', job: 'markmeter', instance: 'gw1', user_code: 'carol', user_intra_ip: '10.8.0.4', user_name: 'Carol "C", Jones' }),
      series({ user_code: 'alice', user_intra_ip: '10.8.0.2', user_name: 'Alice Liddell', mark_id: '101', peer_ip: '192.0.2.7' }),
      series({ user_code: 'dave', user_intra_ip: '10.8.0.5', zone: 'eu' }),
    ];
    assert.deepEqual(variableOptions(user.regex, texts), [
      { value: 'alice', text: 'Alice Liddell' },
      { value: 'bob', text: 'bob' },
      { value: 'carol', text: 'Carol "C", Jones' },
      { value: 'dave', text: 'dave' },
    ]);
    // The README shows the same query and regex.
    const readme = await readFile('README.md', 'utf8');
    assert.ok(readme.includes(user.definition) && readme.includes(user.regex), 'README quotes the variable');
  });

  test('Grafana: shaper panels (TC source) show drops/s and overlimits/s per user and direction for $user and $instance', async () => {
    const panels = (await readDashboard()).panels;
    const wanted = {
      'Shaper drops': ['net_user_tc_rx_dropped_packets_total', 'net_user_tc_tx_dropped_packets_total'],
      'Shaper overlimits': ['net_user_tc_rx_overlimits_total', 'net_user_tc_tx_overlimits_total'],
    };
    for (const [title, metrics] of Object.entries(wanted)) {
      const panel = panels.find((p) => p.title.startsWith(title))!;
      assert.ok(panel, title);
      assert.deepEqual(panel.targets.map((t) => /net_user_tc_\w+_total/.exec(t.expr)?.[0]), metrics, title);
      for (const { expr, legendFormat } of panel.targets) {
        assert.match(expr, /^sum by \(user_code\) \(rate\(\w+\{user_code=~"\$user", instance=~"\$instance"\}\[\$__rate_interval\]\)\)$/, title);
        assert.match(legendFormat ?? '', /\{\{user_code\}\} (rx|tx)/, title);
      }
      assert.match(panel.description ?? '', /empty unless the TC source is on \(`collect\.sources` includes `tc`/i, title);
    }
  });

  test('rules.yml: the shaper drops alert, sustained, on the recorded drop rate and share of both TC directions', async () => {
    type Rule = { record?: string; alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
    const rules = (YAML.parse(await read('prometheus/rules.yml')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
    const byName = new Map(rules.map((r) => [r.record ?? r.alert, r]));
    const drops = byName.get('user:net_user_tc_dropped_packets:rate5m')!;
    for (const metric of ['net_user_tc_rx_dropped_packets_total', 'net_user_tc_tx_dropped_packets_total']) assert.match(drops.expr, new RegExp(metric));
    assert.ok(byName.has('user:net_user_tc_dropped_ratio:rate5m'));
    const alert = byName.get('MarkmeterUserShaperDrops')!;
    assert.match(alert.expr, /user:net_user_tc_dropped_packets:rate5m > \d/);
    assert.match(alert.expr, /user:net_user_tc_dropped_ratio:rate5m > 0\.\d+/);
    assert.ok(Number.parseInt(alert.for ?? '0', 10) >= 5 && alert.for?.endsWith('m'), `for: ${alert.for}`);
    assert.equal(alert.labels?.severity, 'warning');
    assert.ok(alert.annotations?.summary && alert.annotations.description);
  });

  test('promtool check config: prometheus.yml with its rules', async (t) => {
    try {
      await promisify(execFile)('promtool', ['--version']);
    } catch {
      if (process.env.CI && !['false', '0'].includes(process.env.CI)) throw new Error('promtool is not installed (apt-get install prometheus)');
      t.skip('promtool is not installed');
      return;
    }
    // The file names the rules where the container mounts them: point it at the repository's copy.
    const dir = await mkdtemp(join(tmpdir(), 'markmeter-prom-'));
    try {
      const config = (await read('prometheus/prometheus.yml')).replace('/etc/prometheus/rules.yml', resolve('docker/prometheus/rules.yml'));
      await writeFile(join(dir, 'prometheus.yml'), config);
      const { stdout } = await promisify(execFile)('promtool', ['check', 'config', join(dir, 'prometheus.yml')]);
      assert.match(stdout, /SUCCESS: 13 rules found/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
