import assert from 'node:assert/strict';
import { createServer, get } from 'node:http';
import { describe, test } from 'node:test';
import { millisToHrTime } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, InMemoryMetricExporter, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { Accumulator } from '../../src/totals/accumulator.js';
import { EMPTY_MARK_MAP, type MarkMap, type SeriesOwner } from '../../src/attribution/mark-map.js';
import { createLogger, type LogFields } from '../../src/log.js';
import { TelemetryPipeline } from '../../src/export/pipeline.js';
import type { ListenerLimits } from '../../src/shared/listener-limits.js';
import { SelfStats } from '../../src/export/self-stats.js';
import { SharedScrapes } from '../../src/export/shared-scrapes.js';
import { assertCapAndIdle } from './listener-check.js';
import { freePort, until } from './waits.js';

const alice = { user_code: 'alice', user_intra_ip: '10.8.0.2' };
const bob = { user_code: 'bob', user_intra_ip: 'fd00:8::2' };

/** metric name -> "user_code@ip" (or other attributes) -> value, from the last export of an exporter. */
function points(exported: ResourceMetrics[]): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  const last = exported.at(-1);
  for (const scope of last?.scopeMetrics ?? []) {
    for (const metric of scope.metrics) {
      const series = new Map<string, number>();
      for (const point of metric.dataPoints) {
        const a = point.attributes;
        const key = a.user_code !== undefined ? `${a.user_code}@${a.user_intra_ip}` : JSON.stringify(a);
        series.set(key, point.value as number);
      }
      out.set(metric.descriptor.name, series);
    }
  }
  return out;
}

function setup(prometheus?: { host: string; port: number; limits?: ListenerLimits }) {
  const accumulator = new Accumulator();
  let productions = 0;
  const stats = new SelfStats();
  const exporters: InMemoryMetricExporter[] = [];
  const pipeline = new TelemetryPipeline({
    resource: resourceFromAttributes({ 'service.name': 'markmeter-test' }),
    exportIntervalMs: 3_600_000,
    exportTimeoutMs: 5_000,
    protocol: 'http/json',
    log: createLogger('silent'),
    prometheus,
    view: { users: () => (productions++, accumulator.users()), unattributed: () => accumulator.unattributed, interfaces: () => [], stats },
    createExporter: () => {
      const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
      exporters.push(exporter);
      return exporter;
    },
  });
  /** Puts `owners` in force, as a users update does; `add` then adds to one of them by its owner index, as a reading does. */
  let owners: SeriesOwner[] = [];
  let map: MarkMap = EMPTY_MARK_MAP;
  const setUsers = (list: SeriesOwner[], now: number) => {
    owners = list;
    map = { ...EMPTY_MARK_MAP, id: -now - 1, users: list };
    accumulator.setUsers(map, now);
  };
  const add = (user: SeriesOwner, direction: 'rx' | 'tx', packets: number | bigint, bytes: number | bigint) =>
    accumulator.sinkFor(map)(owners.indexOf(user), direction, packets, bytes);
  /** A rule's counter for the user as it would be read: the increase since the last reading. */
  const last = new Map<string, bigint>();
  const reading = (user: typeof alice, packets: bigint) => {
    const delta = packets - (last.get(user.user_code) ?? 0n);
    last.set(user.user_code, packets);
    add(user, 'tx', delta, delta * 100n);
  };
  return { accumulator, setUsers, add, stats, exporters, pipeline, reading, productions: () => productions };
}

/** One GET of /metrics with its own connection: status, Retry-After and body. */
function scrape(port: number): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode!, retryAfter: response.headers['retry-after'], body }));
    }).on('error', reject);
  });
}

describe('TelemetryPipeline', () => {
  test('exports the four per-user counters with user_code and user_intra_ip, cumulative and monotonic', async () => {
    const { accumulator, setUsers, add, exporters, pipeline, reading } = setup();
    const since = Date.now();
    setUsers([alice, bob], since);
    reading(alice, 3n); reading(bob, 5n);
    await pipeline.flush();
    const exported = exporters[0]!.getMetrics();
    const p = points(exported);
    assert.equal(p.get('net_user_tx_packets')?.get('alice@10.8.0.2'), 3);
    assert.equal(p.get('net_user_tx_bytes')?.get('bob@fd00:8::2'), 500);
    assert.equal(p.get('net_user_rx_packets')?.get('bob@fd00:8::2'), 0);
    const metric = exported[0]!.scopeMetrics.flatMap((scope) => scope.metrics).find((m) => m.descriptor.name === 'net_user_rx_bytes')!;
    assert.equal(metric.descriptor.unit, 'By');
    assert.equal(metric.aggregationTemporality, AggregationTemporality.CUMULATIVE);
    assert.equal((metric as { isMonotonic?: boolean }).isMonotonic, true);
    // Cumulative sums start when the user's series began.
    assert.deepEqual(metric.dataPoints[0]!.startTime, millisToHrTime(since));
    await pipeline.shutdown();
  });

  test('a removed user is exported through the grace period, then has no point at all; the others continue unchanged', async () => {
    const { accumulator, setUsers, add, stats, exporters, pipeline, reading } = setup();
    setUsers([alice, bob], 0);
    reading(alice, 10n); reading(bob, 20n);
    stats.count(stats.collectionErrors, 'timeout', 3);
    await pipeline.flush();

    setUsers([alice], 1000);
    assert.deepEqual(accumulator.expireRemoved(1000 + 299_999, 300_000), []);
    await pipeline.flush();
    assert.equal(points(exporters[0]!.getMetrics()).get('net_user_tx_packets')?.get('bob@fd00:8::2'), 20, 'kept during grace');

    assert.deepEqual(accumulator.expireRemoved(1000 + 300_000, 300_000), [bob]);
    reading(alice, 15n);
    await pipeline.flush();
    const p = points(exporters[0]!.getMetrics());
    for (const name of ['net_user_rx_packets', 'net_user_tx_packets', 'net_user_rx_bytes', 'net_user_tx_bytes']) {
      assert.equal(p.get(name)?.has('bob@fd00:8::2'), false, `${name} has no point for bob`);
    }
    assert.equal(p.get('net_user_tx_packets')?.get('alice@10.8.0.2'), 15, 'alice continues from her total');
    assert.equal(p.get('net_user_tx_bytes')?.get('alice@10.8.0.2'), 1500);
    assert.equal(p.get('markmeter_collection_errors')?.get('{"kind":"timeout"}'), 3);
    await pipeline.shutdown();
  });

  test('every user reaches the export, far past the SDK\'s default cardinality limit of 2000 series', async () => {
    const { accumulator, setUsers, add, exporters, pipeline } = setup();
    const users = Array.from({ length: 2500 }, (_, i) => ({ user_code: `u${i}`, user_intra_ip: `10.9.${i >> 8}.${i & 255}` }));
    setUsers(users, 0);
    users.forEach((user, i) => add(user, 'rx', i, 10 * i));
    await pipeline.flush();
    const p = points(exporters[0]!.getMetrics());
    for (const name of ['net_user_rx_packets', 'net_user_tx_packets', 'net_user_rx_bytes', 'net_user_tx_bytes']) {
      assert.equal(p.get(name)?.size, 2500, `${name}: one point per user, no overflow series`);
    }
    assert.equal(p.get('net_user_rx_bytes')?.get('u2499@10.9.9.195'), 24990);
    await pipeline.shutdown();
  });

  test('a user with a display name has user_name on its series; a renamed user is a new series', async () => {
    const { setUsers, add, exporters, pipeline } = setup();
    const named = { ...alice, user_name: 'Alice Liddell' };
    setUsers([named, bob], 0);
    add(named, 'tx', 4, 400);
    await pipeline.flush();
    const metric = () => exporters[0]!.getMetrics().at(-1)!.scopeMetrics.flatMap((scope) => scope.metrics).find((m) => m.descriptor.name === 'net_user_tx_packets')!;
    assert.deepEqual(metric().dataPoints.map((p) => [p.attributes, p.value]), [
      [{ user_code: 'alice', user_intra_ip: '10.8.0.2', user_name: 'Alice Liddell' }, 4],
      [{ user_code: 'bob', user_intra_ip: 'fd00:8::2' }, 0],
    ]);
    const renamed = { ...alice, user_name: 'Alice L.' };
    setUsers([renamed, bob], 1000);
    add(renamed, 'tx', 1, 100);
    await pipeline.flush();
    // The old name's series stays (frozen) for the grace period; the new one starts with what comes after (in no set order).
    const byName = (points: [unknown, unknown][]) => points.map((p) => JSON.stringify(p)).sort();
    assert.deepEqual(byName(metric().dataPoints.map((p) => [p.attributes.user_name ?? null, p.value])), byName([
      ['Alice Liddell', 4],
      [null, 0],
      ['Alice L.', 1],
    ]));
    await pipeline.shutdown();
  });

  test('breakdown by mark: the series carry mark_id and peer_ip', async () => {
    const { accumulator, setUsers, add, exporters, pipeline } = setup();
    const owner = { ...alice, mark_id: '101', peer_ip: '192.0.2.7' };
    setUsers([owner], 0);
    add(owner, 'tx', 4, 400);
    await pipeline.flush();
    const metric = exporters[0]!.getMetrics().at(-1)!.scopeMetrics.flatMap((scope) => scope.metrics).find((m) => m.descriptor.name === 'net_user_tx_packets')!;
    assert.deepEqual(metric.dataPoints.map((p) => [p.attributes, p.value]), [
      [{ user_code: 'alice', user_intra_ip: '10.8.0.2', mark_id: '101', peer_ip: '192.0.2.7' }, 4],
    ]);
    await pipeline.shutdown();
  });
});

describe('OTLP push failures', () => {
  test('the first failed push is logged when its first attempt fails, naming the endpoint (never its credentials); its end is logged too', async () => {
    const port = await freePort();
    const saved = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://collector:s3cret@127.0.0.1:${port}`;
    const lines: LogFields[] = [];
    const sink = (line: string) => void lines.push(JSON.parse(line) as LogFields);
    const pipeline = new TelemetryPipeline({
      resource: resourceFromAttributes({ 'service.name': 'markmeter-test' }),
      exportIntervalMs: 3_600_000,
      exportTimeoutMs: 10_000,
      protocol: 'http/json',
      log: createLogger('info', {}, { out: sink, err: sink }),
      view: { users: () => [], unattributed: () => new Accumulator().unattributed, interfaces: () => [], stats: new SelfStats() },
    });
    // The collector comes up only once the failure has been logged: the exporter's retry then gets through.
    const collector = createServer((request, response) => request.resume().on('end', () => response.writeHead(200).end()));
    try {
      assert.equal(pipeline.endpoint, `http://***@127.0.0.1:${port}/v1/metrics`);
      const started = Date.now();
      const pushed = pipeline.flush();
      await until(() => lines.some((l) => l.level === 'error'), 'the failure to be logged', 1500);
      const failure = lines.find((l) => l.level === 'error')!;
      assert.ok(Date.now() - started < 1500, `logged ${Date.now() - started} ms after the push began`);
      assert.match(String(failure.msg), new RegExp(`^OTLP push failed \\(endpoint http://\\*\\*\\*@127\\.0\\.0\\.1:${port}/v1/metrics\\)`));
      assert.match(JSON.stringify(failure), /ECONNREFUSED/);
      assert.doesNotMatch(JSON.stringify(lines), /s3cret/);
      await new Promise<void>((resolve) => collector.listen(port, '127.0.0.1', resolve));
      await pushed;
      assert.deepEqual(lines.filter((l) => l.level !== 'info' || /OTLP/.test(String(l.msg))).map((l) => l.level), ['error', 'info'], 'one failure, then its end');
      assert.match(String(lines.at(-1)!.msg), /OTLP push succeeded again/);
    } finally {
      if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
      else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = saved;
      // Bounded: with no collector (the test failed early) the last push would be retried for seconds.
      await pipeline.finish(500);
      collector.close();
    }
  });
});

describe('/metrics', () => {
  test('concurrent scrapes share one production: complete bodies, 503 with Retry-After past the bound', async () => {
    const { accumulator, setUsers, add, pipeline, productions } = setup({ host: '127.0.0.1', port: 0 });
    const users = Array.from({ length: 5000 }, (_, i) => ({ user_code: `u${i}`, user_intra_ip: `10.9.${i >> 8}.${i & 255}` }));
    setUsers(users, 0);
    users.forEach((user, i) => add(user, 'rx', i, 10 * i));
    const server = (await pipeline.servePrometheus())!;
    try {
      const port = (server.address() as { port: number }).port;
      const before = productions();
      const results = await Promise.all(Array.from({ length: 40 }, () => scrape(port)));
      const served = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status !== 200);
      assert.ok(productions() - before <= 4, `${productions() - before} productions for 40 scrapes`);
      assert.ok(served.length >= 16, `${served.length} served`);
      for (const r of served) {
        assert.equal(r.body.match(/^net_user_rx_packets_total\{/gm)?.length, 5000, 'every user in every body');
        assert.match(r.body, /^net_user_rx_packets_total\{user_code="u4999",user_intra_ip="10\.9\.19\.135",otel_scope_name="markmeter"\} 4999$/m);
      }
      for (const r of refused) {
        assert.equal(r.status, 503);
        assert.equal(r.retryAfter, '1');
      }
    } finally {
      server.close();
      await pipeline.shutdown();
    }
  });

  test('connections past the cap are closed at once, idle ones after the idle timeout; a scrape works after', async () => {
    const limits = { maxConnections: 4, idleTimeoutMs: 400, headersTimeoutMs: 400, requestTimeoutMs: 400 };
    const { pipeline } = setup({ host: '127.0.0.1', port: 0, limits });
    const server = (await pipeline.servePrometheus())!;
    try {
      const port = (server.address() as { port: number }).port;
      await assertCapAndIdle(port, 4, 400);
      assert.equal((await scrape(port)).status, 200);
    } finally {
      server.close();
      await pipeline.shutdown();
    }
  });
});

describe('SharedScrapes', () => {
  test('requests share the pending production up to the bound; the next starts no sooner than the last one lasted', async () => {
    let clock = 0;
    const started: number[] = [];
    let finish: (body: string) => void = () => {};
    const shared = new SharedScrapes(() => (started.push(clock), new Promise((resolve) => (finish = resolve))), 3, () => clock);
    const first = [shared.body(), shared.body(), shared.body()];
    assert.equal(shared.body(), undefined, 'the 4th is turned away');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(started, [0]);
    clock = 50;
    finish('A');
    assert.deepEqual(await Promise.all(first), ['A', 'A', 'A']);
    const second = shared.body()!;
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(started, [0], 'waits the 50 ms the last one lasted');
    clock = 100;
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.deepEqual(started, [0, 100]);
    finish('B');
    assert.equal(await second, 'B');
  });
});


