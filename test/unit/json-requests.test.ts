/**
 * The http/json push in requests of at most maxRequestBytes: random pushes
 * (self-metrics and user series, as the readers collect them) cut by random
 * limits must carry every point of the push exactly once, each request a
 * whole OTLP request with the resource, none past the limit but a lone point.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { JsonMetricsSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { JsonRequests } from '../../src/export/json-requests.js';
import { UserSeriesProducer } from '../../src/export/user-series.js';
import type { UserSeries } from '../../src/totals/accumulator.js';
import { decodeExport } from '../lab/otlp-decode.js';
import { random, type Random } from './random.js';

class TestReader extends MetricReader {
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const resource = resourceFromAttributes({ 'service.name': 'markmeter-test', 'host.name': 'gw-json' });

/** What a reader collects for a push: the SDK's self-metrics, then the producer's user series. */
async function collected(r: Random, users: number): Promise<ResourceMetrics> {
  const list: UserSeries[] = [];
  for (let i = 0; i < users; i++) {
    const name = r.next() < 0.3 ? { user_name: 'ü'.repeat(r.int(200)) } : {};
    const big = () => (r.next() < 0.05 ? 2n ** 63n + BigInt(r.int(1000)) : r.int(2 ** 40));
    list.push({ user: { user_code: `u${i}`, user_intra_ip: `10.8.${i >> 8}.${i & 255}`, ...name }, totals: { rxPackets: big(), txPackets: r.int(1e6), rxBytes: big(), txBytes: r.int(1e9) }, since: 1_700_000_000_000 });
  }
  // The shaper classes' metrics too, without points (no user has shaped totals): they go out all the same.
  const reader = new TestReader({ metricProducers: [new UserSeriesProducer(() => list, resource, { marked: true, shaped: true })] });
  const provider = new MeterProvider({ resource, readers: [reader] });
  const meter = provider.getMeter('markmeter');
  meter.createCounter('markmeter_collections').add(3, { source: 'iptables', result: 'ok' });
  meter.createGauge('markmeter_users').record(users);
  const { resourceMetrics } = await reader.collect();
  await provider.shutdown();
  return resourceMetrics;
}

const points = (body: Uint8Array) => decodeExport(body, 'json').map((p) => JSON.stringify(p));
const names = (body: Uint8Array) =>
  (JSON.parse(Buffer.from(body).toString()) as { resourceMetrics: { scopeMetrics: { metrics: { name: string }[] }[] }[] }).resourceMetrics.flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics.map((m) => m.name)));

describe('the http/json push in requests', () => {
  test('every point once, in requests of at most maxRequestBytes (a lone point excepted), each with the resource', async () => {
    let split = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const r = random(seed * 7_919);
      const metrics = await collected(r, r.next() < 0.1 ? 0 : r.int(400));
      const max = 400 + r.int(40_000);
      const requests = new JsonRequests(max);
      const whole = JsonMetricsSerializer.serializeRequest(metrics)!;
      const push = requests.beginPush(metrics);
      const bodies: Uint8Array[] = [];
      do {
        const from = push.next;
        requests.writing = push;
        bodies.push(requests.serializer().serializeRequest(metrics)!);
        requests.writing = undefined;
        assert.ok(push.next > from || push.done, 'a request wrote nothing');
      } while (!push.done);
      const at = `seed ${seed}, at most ${max} bytes, ${bodies.length} requests`;
      assert.deepEqual(bodies.flatMap(points).sort(), points(whole).sort(), `${at}: not every point once`);
      assert.deepEqual(new Set(bodies.flatMap(names)), new Set(names(whole)), `${at}: not every metric`);
      for (const [k, body] of bodies.entries()) {
        assert.ok(body.length <= max || points(body).length === 1, `${at}: request ${k} of ${body.length} bytes`);
        const request = JSON.parse(Buffer.from(body).toString()) as { resourceMetrics: { resource: { attributes: { key: string }[] } }[] };
        assert.equal(request.resourceMetrics.length, 1);
        assert.ok(request.resourceMetrics[0]!.resource.attributes.some((a) => a.key === 'host.name'), `${at}: request ${k} without the resource`);
      }
      // A small push is the SDK's own request, unchanged.
      if (whole.length <= max) assert.deepEqual(bodies, [whole], at);
      split += bodies.length - 1;
    }
    assert.ok(split > 30, `only ${split} requests past the first: the test tests little`);
  });

  test('no users: one request, with the user metrics and no points, as the SDK writes it', async () => {
    const metrics = await collected(random(3), 0);
    const requests = new JsonRequests(65_536);
    const push = requests.beginPush(metrics);
    requests.writing = push;
    const body = requests.serializer().serializeRequest(metrics)!;
    assert.ok(push.done);
    assert.deepEqual(body, JsonMetricsSerializer.serializeRequest(metrics));
    assert.match(Buffer.from(body).toString(), /"net_user_rx_packets"/);
  });
});
