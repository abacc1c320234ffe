import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AggregationTemporality, InMemoryMetricExporter, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { Agent } from '../../src/agent.js';
import { createLogger, type LogFields, type Logger } from '../../src/log.js';
import type { CommandRunner } from '../../src/sources/iptables/save-command.js';
import { loadSettings } from '../../src/settings.js';
import { freePort, until } from './waits.js';

const DUMP = `*mangle
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
[3:252] -A PREROUTING -d 10.8.0.2/32 -j MARK --set-xmark 0x65/0xffffffff
[5:420] -A PREROUTING -d 10.8.0.3/32 -j MARK --set-xmark 0x66/0xffffffff
COMMIT
`;

/** A table with no rules: what the tests' runners print until the users document has arrived. */
const EMPTY = `*mangle
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
`;


let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-agent-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** A logger that keeps its lines, parsed. */
function keptLog(): { lines: LogFields[]; log: Logger } {
  const lines: LogFields[] = [];
  const keep = (line: string) => void lines.push(JSON.parse(line) as LogFields);
  return { lines, log: createLogger('info', {}, { out: keep, err: keep }) };
}

async function agentWith(
  env: Record<string, string>,
  runner: CommandRunner,
  exporter: PushMetricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
  log: Logger = createLogger('silent'),
) {
  const users = join(dir, `users-${Math.random()}.json`);
  await writeFile(
    users,
    JSON.stringify({
      users: [
        { user_code: 'alice', user_intra_ip: '10.8.0.2' },
        { user_code: 'bob', user_intra_ip: '10.8.0.3' },
      ],
    }),
  );
  const settings = loadSettings({ env: { MARKMETER_USERS_FILE: users, MARKMETER_IPV6: 'false', MARKMETER_INTERFACES: 'none0', MARKMETER_HEALTH_LISTEN: '127.0.0.1:0', ...env } });
  const agent = new Agent({ settings, log, runner, createExporter: () => exporter });
  return { agent, exporter: exporter as InMemoryMetricExporter };
}

describe('Agent', () => {
  test('a local users file is loaded before the first reading: the counts from before the start go to its users', async () => {
    const runner: CommandRunner = async (_file, _args, _options, onOutput) => onOutput(DUMP);
    const { agent } = await agentWith({ MARKMETER_COLLECT_INTERVAL_MS: '60000' }, runner);
    await agent.start();
    try {
      const rx = Object.fromEntries([...agent.accumulator.users()].map((s) => [s.user.user_code, Number(s.totals.rxPackets)]));
      assert.deepEqual(rx, { alice: 3, bob: 5 });
      assert.equal(agent.accumulator.unattributed.rxPackets, 0);
    } finally {
      await agent.stop();
    }
  });

  test('a users document written just before a reading is in force for it (a stat before each reading, not only the watcher)', async () => {
    const file = join(dir, 'users-now.json');
    const alice = { user_code: 'alice', user_intra_ip: '10.8.0.2' };
    await writeFile(file, JSON.stringify({ users: [alice] }));
    let output = EMPTY;
    const runner: CommandRunner = async (_file, _args, _options, onOutput) => onOutput(output);
    const { agent } = await agentWith({ MARKMETER_COLLECT_INTERVAL_MS: '60000', MARKMETER_USERS_FILE: file }, runner);
    await agent.start();
    // bob and his rule appear together, as the tunnel client's config manager adds a user.
    await writeFile(`${file}.tmp`, JSON.stringify({ users: [alice, { user_code: 'bob', user_intra_ip: '10.8.0.3' }] }));
    await rename(`${file}.tmp`, file);
    output = DUMP;
    // The last reading comes at once: before the watcher's debounce would have reloaded.
    await agent.stop();
    const rx = Object.fromEntries([...agent.accumulator.users()].map((s) => [s.user.user_code, Number(s.totals.rxPackets)]));
    assert.deepEqual(rx, { alice: 3, bob: 5 });
    assert.equal(agent.accumulator.unattributed.rxPackets, 0);
  });

  test('a reading still running when the next is due makes that tick skip, counted', async () => {
    const slow: CommandRunner = async (_f, _a, _o, onOutput) => {
      await sleep(250);
      onOutput(DUMP);
    };
    const { agent } = await agentWith({ MARKMETER_COLLECT_INTERVAL_MS: '40' }, slow);
    await agent.start();
    await sleep(600);
    await agent.stop();
    const skipped = agent.stats.collections.get('all skipped') ?? 0;
    const done = agent.stats.collections.get('ipv4 ok') ?? 0;
    assert.ok(skipped >= 3, `skipped ${skipped} ticks`);
    assert.ok(done >= 2 && done <= 5, `${done} readings, none overlapping`);
    // Totals are still exact: the same dump read again adds nothing (the first reading may
    // come before the users document, so its traffic may be unattributed: sum every series).
    const users = [...agent.accumulator.users()].reduce((n, s) => n + Number(s.totals.rxPackets), 0);
    assert.equal(users + Number(agent.accumulator.unattributed.rxPackets), 8);
  });

  test('users beyond limits.maxUsers are refused, counted and their traffic is unattributed', async () => {
    let dump = EMPTY;
    const { agent, exporter } = await agentWith({ MARKMETER_MAX_USERS: '1' }, async (_f, _a, _o, onOutput) => onOutput(dump));
    await agent.start();
    await until(() => agent.stats.usersLoaded > 0, 'the users document');
    dump = DUMP;
    await agent.stop();
    assert.deepEqual([...agent.accumulator.users()].map((s) => s.user.user_code), ['alice']);
    assert.equal(agent.stats.usersRefused, 1);
    assert.equal(agent.accumulator.unattributed.rxPackets, 5);
    const metrics = exporter.getMetrics().at(-1)!.scopeMetrics[0]!.metrics;
    const refused = metrics.find((m) => m.descriptor.name === 'markmeter_users_refused');
    assert.equal(refused?.dataPoints[0]?.value, 1);
  });

  test('the start-up line names the OTLP endpoint (credentials masked) and the instance id; the first push follows the first reading', async () => {
    const posts: { url: string; body: string }[] = [];
    const collector = createServer((request, response) => {
      let body = '';
      request.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      request.on('end', () => (posts.push({ url: request.url!, body }), response.writeHead(200).end()));
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const port = (collector.address() as { port: number }).port;
    const saved = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://collector:s3cret@127.0.0.1:${port}`;
    const { lines, log } = keptLog();
    const settings = loadSettings({
      env: { MARKMETER_IPV6: 'false', MARKMETER_INTERFACES: 'none0', MARKMETER_HEALTH_LISTEN: '', OTEL_METRIC_EXPORT_INTERVAL: '60000', OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json' },
    });
    const agent = new Agent({ settings, log, runner: async (_f, _a, _o, onOutput) => onOutput(DUMP) });
    try {
      await agent.start();
      const starting = lines.find((l) => l.msg === 'markmeter starting')!;
      assert.equal(starting.otlp_endpoint, `http://***@127.0.0.1:${port}/v1/metrics`);
      assert.match(String(starting.service_instance_id), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-/);
      // The export interval is a minute: this push is the one right after the first reading.
      await until(() => posts.length > 0, 'the first push', 2000);
      assert.equal(posts[0]!.url, '/v1/metrics');
      const resource = (JSON.parse(posts[0]!.body) as { resourceMetrics: { resource: { attributes: { key: string; value: { stringValue?: string } }[] } }[] }).resourceMetrics[0]!.resource;
      assert.equal(resource.attributes.find((a) => a.key === 'service.instance.id')?.value.stringValue, starting.service_instance_id);
      assert.doesNotMatch(JSON.stringify(lines), /s3cret/);
    } finally {
      await agent.stop();
      if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
      else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = saved;
      collector.closeAllConnections();
      collector.close();
    }
  });

  test('readings that find no MARK rule are warned about once; their return is logged, and their going away again warned', async () => {
    let dump = EMPTY;
    const { lines, log } = keptLog();
    const { agent } = await agentWith({ MARKMETER_COLLECT_INTERVAL_MS: '20' }, async (_f, _a, _o, onOutput) => onOutput(dump), undefined, log);
    const readings = () => agent.stats.collections.get('ipv4 ok') ?? 0;
    const moreReadings = async (n: number) => {
      const target = readings() + n;
      await until(() => readings() >= target, `${n} more readings`);
    };
    await agent.start();
    try {
      await moreReadings(3);
      dump = DUMP;
      await moreReadings(3);
      dump = EMPTY;
      await moreReadings(3);
    } finally {
      await agent.stop();
    }
    const said = lines.filter((l) => /MARK rule/.test(String(l.msg)) && !/chains without a single direction/.test(String(l.msg)));
    assert.deepEqual(said.map((l) => l.level), ['warn', 'info', 'warn'], JSON.stringify(said));
    assert.match(String(said[0]!.msg), /find no MARK rule/);
    assert.match(String(said[1]!.msg), /^MARK rules found again: 2\b/);
  });

  test('stop() does not wait long for a collector that never answers', async () => {
    const silent: PushMetricExporter = { export: () => {}, forceFlush: async () => {}, shutdown: async () => {} };
    const { agent } = await agentWith({}, async (_f, _a, _o, onOutput) => onOutput(DUMP), silent);
    await agent.start();
    const started = Date.now();
    await agent.stop();
    const took = Date.now() - started;
    assert.ok(took < 5000, `stop() took ${took} ms`);
  });

  test('users.url: the agent loads its users over HTTP', async () => {
    const body = JSON.stringify({ users: [{ user_code: 'erin', user_intra_ip: '10.8.0.2' }] });
    const server = createServer((_request, response) => response.writeHead(200, { etag: '"e"' }).end(body));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const settings = loadSettings({
        env: { MARKMETER_USERS_URL: `http://127.0.0.1:${(server.address() as { port: number }).port}/users`, MARKMETER_IPV6: 'false', MARKMETER_INTERFACES: 'none0', MARKMETER_HEALTH_LISTEN: '' },
      });
      let dump = EMPTY;
      const agent = new Agent({
        settings,
        log: createLogger('silent'),
        runner: async (_f, _a, _o, onOutput) => onOutput(dump),
        createExporter: () => new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
      });
      await agent.start();
      await until(() => agent.stats.usersLoaded > 0, 'the users document');
      dump = DUMP;
      await agent.stop();
      const erin = [...agent.accumulator.users()].find((u) => u.user.user_code === 'erin');
      assert.equal(erin?.totals.rxPackets, 3);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  test('a slow users server holds back no reading: traffic is unattributed until users arrive, then the rule\'s first owner gets it all', async () => {
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    const body = JSON.stringify({ users: [{ user_code: 'erin', user_intra_ip: '10.8.0.2' }] });
    const server = createServer((_request, response) => void answered.then(() => response.writeHead(200).end(body)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const health = await freePort();
    let alicePackets = 3;
    const runner: CommandRunner = async (_f, _a, _o, onOutput) => onOutput(DUMP.replace('[3:252]', `[${alicePackets}:252]`));
    const settings = loadSettings({
      env: {
        MARKMETER_USERS_URL: `http://127.0.0.1:${(server.address() as { port: number }).port}/users`,
        MARKMETER_COLLECT_INTERVAL_MS: '50',
        MARKMETER_IPV6: 'false',
        MARKMETER_INTERFACES: 'none0',
        MARKMETER_HEALTH_LISTEN: `127.0.0.1:${health}`,
      },
    });
    const agent = new Agent({ settings, log: createLogger('silent'), runner, createExporter: () => new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE) });
    const readyz = async () => (await fetch(`http://127.0.0.1:${health}/readyz`)).status;
    try {
      const waited = await Promise.race([agent.start().then(() => false), sleep(2000).then(() => true)]);
      assert.equal(waited, false, 'start() waited for the users server');
      await until(() => (agent.stats.collections.get('ipv4 ok') ?? 0) >= 3, 'readings while the users server is silent');
      assert.equal(agent.accumulator.unattributed.rxPackets, 8, 'the traffic so far, unattributed');
      assert.equal([...agent.accumulator.users()].length, 0);
      assert.equal(await readyz(), 503, 'not ready without users');
      answer();
      await until(() => agent.stats.usersLoaded === 1, 'the users document');
      alicePackets = 10;
      // Her rule's counts from before she had an owner go to her too (its first owner); unattributed keeps what it counted then.
      await until(() => [...agent.accumulator.users()][0]?.totals.rxPackets === 10, "erin's traffic, all of it");
      assert.equal(agent.accumulator.unattributed.rxPackets, 8, 'unattributed unchanged');
      assert.equal(await readyz(), 200);
    } finally {
      answer();
      await agent.stop();
      server.closeAllConnections();
      server.close();
    }
  });
});

