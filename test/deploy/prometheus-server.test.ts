/**
 * A real Prometheus (Debian's package) scraping the agent's /metrics in a
 * namespace lab with real per-user traffic: every PromQL expression of the
 * dashboard (variables set) and of the rules runs through Prometheus's HTTP
 * API without error, the user variable lists the active users (by the regex
 * Grafana applies), the per-user rate query has one series per active user,
 * and each user's net_user_tx_packets_total equals the packets sent.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import YAML from 'yaml';
import { Lab } from '../../src/demo/netns.js';
import { requireLab } from '../lab/gate.js';
import { seriesText, variableOptions } from './grafana-variable.js';

const CLI = resolve('dist/cli.js');

test('a real Prometheus scrapes the agent; dashboard and rule queries run; totals equal the pings', { timeout: 120_000 }, async (t) => {
  if (!(await requireLab(t))) return;
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
  if (!existsSync('/usr/bin/prometheus')) {
    if (process.env.CI) throw new Error('prometheus is not installed (apt-get install prometheus)');
    t.skip('prometheus is not installed');
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'markmeter-prom-'));
  const lab = await Lab.create();
  try {
    const gw = lab.ns.gw;
    for (const [user, mark] of [
      ['10.8.0.2', '101'],
      ['10.8.0.3', '103'],
    ] as const) {
      await lab.exec(gw, 'iptables', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', user, '-d', '192.0.2.7', '-j', 'MARK', '--set-mark', mark]);
      await lab.exec(gw, 'iptables', ['-t', 'mangle', '-A', 'PREROUTING', '-s', '192.0.2.7', '-d', user, '-j', 'MARK', '--set-mark', mark]);
    }
    const users = join(dir, 'users.json');
    await writeFile(users, JSON.stringify({ users: [{ user_code: 'alice', user_intra_ip: '10.8.0.2', user_name: 'Alice Liddell' }, { user_code: 'bob', user_intra_ip: '10.8.0.3' }] }));
    const agent = lab.spawn(gw, process.execPath, [CLI, 'run'], {
      env: {
        ...process.env,
        MARKMETER_USERS_FILE: users,
        MARKMETER_COLLECT_INTERVAL_MS: '500',
        MARKMETER_PROMETHEUS_PORT: '19464',
        MARKMETER_HEALTH_LISTEN: '',
        MARKMETER_INTERFACES: 'gu0',
        MARKMETER_LOG_LEVEL: 'error',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
      },
    });
    let agentLog = '';
    agent.stderr!.on('data', (chunk: Buffer) => (agentLog += chunk.toString()));

    await writeFile(
      join(dir, 'prometheus.yml'),
      YAML.stringify({
        global: { scrape_interval: '1s', evaluation_interval: '1s' },
        rule_files: [resolve('docker/prometheus/rules.yml')],
        scrape_configs: [{ job_name: 'markmeter', static_configs: [{ targets: ['127.0.0.1:19464'] }] }],
      }),
    );
    lab.spawn(gw, '/usr/bin/prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      '--web.listen-address=127.0.0.1:19090',
      '--log.level=warn',
    ]);

    // Prometheus listens on the gateway namespace's loopback: ask it from there.
    const api = async (path: string, params: Record<string, string>): Promise<unknown> => {
      const script = `fetch('http://127.0.0.1:19090/api/v1/' + process.argv[1] + '?' + process.argv[2]).then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { process.stdout.write(JSON.stringify({ status: 'down', error: String(e) })); })`;
      return JSON.parse(await lab.exec(gw, process.execPath, ['-e', script, path, new URLSearchParams(params).toString()])) as unknown;
    };
    const query = async (promql: string) =>
      (await api('query', { query: promql })) as { status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
    const waitFor = async (what: string, check: () => Promise<boolean>) => {
      for (let i = 0; i < 120; i++) {
        if (await check().catch(() => false)) return;
        await sleep(500);
      }
      assert.fail(`timed out waiting for ${what}; agent log: ${agentLog.slice(-1000)}`);
    };
    await waitFor('Prometheus to scrape the agent', async () => (await query('up{job="markmeter"}')).data.result[0]?.value[1] === '1');

    await lab.ping({ from: 'users', source: '10.8.0.2', to: '192.0.2.7', count: 5, size: 100 });
    await lab.ping({ from: 'users', source: '10.8.0.3', to: '192.0.2.7', count: 3, size: 100 });
    const sent: Record<string, string> = { alice: '5', bob: '3' };
    await waitFor('the totals to reach Prometheus', async () => {
      const result = (await query('net_user_tx_packets_total')).data.result;
      return result.length === 2 && result.every((r) => r.value[1] === sent[r.metric.user_code!]);
    });
    for (const r of (await query('net_user_tx_packets_total')).data.result) assert.equal(r.value[1], sent[r.metric.user_code!]);
    await sleep(3000); // a few more scrapes, so rates have points to work on

    // Every expression of the dashboard, with its variables set as Grafana would.
    const dashboard = JSON.parse(await readFile('docker/grafana/dashboards/markmeter.json', 'utf8')) as {
      templating: { list: { name: string; definition: string; regex?: string }[] };
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const expand = (expr: string) => expr.replaceAll('$__rate_interval', '1m').replaceAll('$user', 'alice|bob').replaceAll('$instance', '.+');
    for (const variable of dashboard.templating.list) {
      const metric = /^label_values\((\w+), (\w+)\)$/.exec(variable.definition);
      if (metric) {
        const values = await query(`count by (${metric[2]}) (${metric[1]})`);
        assert.equal(values.status, 'success', variable.name);
        assert.ok(values.data.result.length > 0, `variable ${variable.name} has values`);
        continue;
      }
      // A series query: what Grafana asks over the dashboard's range, then its regex.
      const now = Math.floor(Date.now() / 1000);
      const series = (await api('series', { 'match[]': variable.definition, start: String(now - 3600), end: String(now) })) as { status: string; data: Record<string, string>[] };
      assert.equal(series.status, 'success', variable.name);
      const options = variableOptions(variable.regex!, series.data.map(seriesText));
      assert.deepEqual(options.map((o) => o.value).sort(), ['alice', 'bob'], variable.name);
      // Each shown as its series' user_name, if the agent exports one, else as its user_code.
      for (const { value, text } of options) assert.equal(text, series.data.find((s) => s.user_code === value)!.user_name ?? value);
    }
    for (const panel of dashboard.panels) {
      for (const target of panel.targets) {
        const result = await query(expand(target.expr));
        assert.equal(result.status, 'success', `${panel.title}: ${target.expr}: ${result.error}`);
      }
    }
    // The per-user rate panel: one series per active user.
    const rxRate = dashboard.panels.find((p) => p.title.startsWith('RX packets'))!.targets[0]!.expr;
    assert.deepEqual((await query(expand(rxRate))).data.result.map((r) => r.metric.user_code).sort(), ['alice', 'bob']);

    // Every expression of the recording rules and alerts.
    const rules = YAML.parse(await readFile('docker/prometheus/rules.yml', 'utf8')) as { groups: { rules: { record?: string; alert?: string; expr: string }[] }[] };
    let count = 0;
    for (const group of rules.groups) {
      for (const rule of group.rules) {
        const result = await query(rule.expr);
        assert.equal(result.status, 'success', `${rule.record ?? rule.alert}: ${result.error}`);
        count += 1;
      }
    }
    assert.equal(count, 13);
    const perUser = await query('sum by (user_code) (rate(net_user_tx_packets_total[1m]))');
    assert.equal(perUser.data.result.length, 2);
  } finally {
    await lab.destroy();
    await rm(dir, { recursive: true, force: true });
  }
});
