import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AggregationTemporality, InMemoryMetricExporter, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { Agent } from '../../src/agent.js';
import { createLogger } from '../../src/log.js';
import type { CommandRunner } from '../../src/mangle/dump.js';
import { loadSettings } from '../../src/settings.js';

const DUMP = `*mangle
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
[3:252] -A PREROUTING -d 10.8.0.2/32 -j MARK --set-xmark 0x65/0xffffffff
[5:420] -A PREROUTING -d 10.8.0.3/32 -j MARK --set-xmark 0x66/0xffffffff
COMMIT
`;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-agent-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function agentWith(env: Record<string, string>, runner: CommandRunner, exporter: PushMetricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)) {
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
  const agent = new Agent({ settings, log: createLogger('silent'), runner, createExporter: () => exporter });
  return { agent, exporter: exporter as InMemoryMetricExporter };
}

describe('Agent', () => {
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
    // Totals are still exact: the same dump read again adds nothing.
    const alice = [...agent.accumulator.users()].find((s) => s.user.user_code === 'alice')!;
    assert.equal(alice.totals.rxPackets, 3);
  });

  test('users beyond limits.maxUsers are refused, counted and their traffic is unattributed', async () => {
    const { agent, exporter } = await agentWith({ MARKMETER_MAX_USERS: '1' }, async (_f, _a, _o, onOutput) => onOutput(DUMP));
    await agent.start();
    await agent.stop();
    assert.deepEqual([...agent.accumulator.users()].map((s) => s.user.user_code), ['alice']);
    assert.equal(agent.stats.usersRefused, 1);
    assert.equal(agent.accumulator.unattributed.rxPackets, 5);
    const metrics = exporter.getMetrics().at(-1)!.scopeMetrics[0]!.metrics;
    const refused = metrics.find((m) => m.descriptor.name === 'markmeter_users_refused');
    assert.equal(refused?.dataPoints[0]?.value, 1);
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
      const agent = new Agent({
        settings,
        log: createLogger('silent'),
        runner: async (_f, _a, _o, onOutput) => onOutput(DUMP),
        createExporter: () => new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
      });
      await agent.start();
      await agent.stop();
      const erin = [...agent.accumulator.users()].find((u) => u.user.user_code === 'erin');
      assert.equal(erin?.totals.rxPackets, 3);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
