/**
 * The http/protobuf push writes the per-user series itself (cached per series)
 * instead of going through UserSeriesProducer and the SDK's serializer. Both
 * must put the same request on the wire: random user sets, exported several
 * times through one encoder (its cache), are encoded both ways and compared.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import type { HrTime } from '@opentelemetry/api';
import { JsonMetricsSerializer, ProtobufMetricsSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { SeriesOwner } from '../../src/attribution/mark-map.js';
import { addCount, type Count } from '../../src/shared/count.js';
import { zeroShaped, type ShapedTotals, type Totals, type UserSeries } from '../../src/totals/accumulator.js';
import { UserSeriesProducer } from '../../src/export/user-series.js';
import { createOtlpExporter, TelemetryPipeline } from '../../src/export/pipeline.js';
import { SelfStats } from '../../src/export/self-stats.js';
import { createLogger, type LogFields } from '../../src/log.js';
import type { ExportProtocol } from '../../src/settings.js';
import { freePort, until } from './waits.js';
import { UserSeriesEncoder, userSeriesSerializer, type UserSeriesPush } from '../../src/export/user-series-protobuf.js';
import { decodeExport, decodeMetrics, type WireMetric, type WirePoint } from '../lab/otlp-decode.js';
import { random, type Random } from './random.js';

/** A reader that only collects (as the SDK's own tests do). */
class TestReader extends MetricReader {
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Counts as the accumulator holds them: numbers up to 2^53 - 1, bigints above (up to u64 and past it). */
const EDGES: Count[] = [0, 1, 127, 128, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2n ** 53n + 1n, 2n ** 62n + 3n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n + 5n];
const count = (r: Random): Count => (r.next() < 0.5 ? r.pick(EDGES) : r.next() < 0.5 ? r.int(1000) : r.int(2 ** 40));
const NAMES = ['alice', 'Bob', 'zoë', '用户七', '🙂 smile', 'x'.repeat(130), 'ü'.repeat(70), '', 'lone \ud800 surrogate', 'a\udc00'];
/** Attribute values that are not strings (an integer mark_id, say): written as the SDK writes them. */
const OTHER_VALUES = [0, 101, 2 ** 40, 2 ** 63, -7, 1.5, true, false];

function owner(r: Random, i: number, breakdown: boolean): SeriesOwner {
  const ip = r.next() < 0.5 ? `10.8.${i >> 8}.${i & 255}` : `fd00:8::${i.toString(16)}`;
  const user: SeriesOwner = { user_code: r.next() < 0.2 ? `${r.pick(NAMES)}-${i}` : `u${i}`, user_intra_ip: ip };
  if (r.next() < 0.5) user.user_name = r.pick(NAMES);
  if (breakdown) {
    user.mark_id = r.next() < 0.2 ? '' : r.next() < 0.2 ? (r.pick(OTHER_VALUES) as unknown as string) : String(100 + i);
    user.peer_ip = r.next() < 0.2 ? '' : `192.0.2.${i & 255}`;
  }
  return user;
}

function fill<T extends Totals>(r: Random, totals: T): T {
  for (const key of Object.keys(totals) as (keyof T)[]) (totals[key] as Count) = count(r);
  return totals;
}

function series(r: Random, i: number, breakdown: boolean): UserSeries {
  const entry: UserSeries = { user: owner(r, i, breakdown), totals: fill(r, { rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 }), since: r.next() < 0.1 ? 0 : 1_700_000_000_000 + r.int(1e9) };
  if (r.next() < 0.6) entry.shaped = fill(r, zeroShaped());
  return entry;
}

/** Between two exports: users leave and come, totals move in place, a series gains shaped totals, an owner comes back as a new series. */
function churn(r: Random, list: UserSeries[], next: () => number, breakdown: boolean): void {
  for (let k = r.int(Math.ceil(list.length / 5) + 1); k > 0 && list.length > 0; k--) list.splice(r.int(list.length), 1);
  for (const entry of list) {
    if (r.next() < 0.5) fill(r, entry.totals);
    if (entry.shaped && r.next() < 0.5) fill(r, entry.shaped);
    else if (!entry.shaped && r.next() < 0.2) entry.shaped = fill(r, zeroShaped() as ShapedTotals);
  }
  if (list.length > 0 && r.next() < 0.5) {
    const back = list.splice(r.int(list.length), 1)[0]!;
    list.push({ user: back.user, totals: fill(r, { rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 }), since: back.since + 1 + r.int(5000) });
  }
  for (let k = r.int(Math.ceil(list.length / 5) + 2); k > 0; k--) list.splice(r.int(list.length + 1), 0, series(r, next(), breakdown));
}

/** The SDK's own metrics of one collection (the self-telemetry's place in a real push). */
async function selfMetrics(resource: Resource): Promise<ResourceMetrics> {
  const reader = new TestReader();
  const provider = new MeterProvider({ resource, readers: [reader] });
  const meter = provider.getMeter('markmeter');
  meter.createCounter('markmeter_collections', { unit: '{collection}' }).add(3, { source: 'iptables', result: 'ok' });
  meter.createGauge('markmeter_collection_duration_seconds', { unit: 's' }).record(0.25, { source: 'iptables' });
  const { resourceMetrics } = await reader.collect();
  await provider.shutdown();
  return resourceMetrics;
}

const sorted = <T>(xs: T[]) => xs.map((x) => JSON.stringify(x)).sort();
const sameMetrics = (a: WireMetric[]) => a.map((m) => ({ ...m, points: sorted(m.points) }));

describe('user series written straight to protobuf', () => {
  const cases = [
    { name: 'by user, MARK rules', breakdown: false, measures: { marked: true, shaped: false }, schemaUrl: undefined },
    { name: 'by mark, MARK rules', breakdown: true, measures: { marked: true, shaped: false }, schemaUrl: undefined },
    { name: 'by user, MARK rules and shaper classes', breakdown: false, measures: { marked: true, shaped: true }, schemaUrl: undefined },
    { name: 'by mark, shaper classes only, resource with a schema URL', breakdown: true, measures: { marked: false, shaped: true }, schemaUrl: 'https://opentelemetry.io/schemas/1.30.0' },
  ];
  for (const { name, breakdown, measures, schemaUrl } of cases) {
    test(`the same points, descriptors, start and end times as the SDK's serializer (${name})`, async () => {
      for (const seed of [1, 2, 3]) {
        const r = random(seed * 7919 + (breakdown ? 1 : 0) + (measures.shaped ? 2 : 0));
        let made = 0;
        const list: UserSeries[] = [];
        for (let i = r.int(40); i > 0; i--) list.push(series(r, made++, breakdown));
        const resource = resourceFromAttributes({ 'service.name': 'markmeter-test', 'host.name': 'gw-1' }, schemaUrl ? { schemaUrl } : undefined);
        let clock: HrTime = [0, 0];
        const stock = new UserSeriesProducer(() => list, resource, measures, () => clock);
        const encoder = new UserSeriesEncoder(() => list, measures, () => clock);
        const serializer = userSeriesSerializer(encoder);
        for (let round = 0; round < 8; round++) {
          const at = `seed ${seed}, round ${round}, ${list.length} users`;
          clock = [1_700_000_000 + round * 5 + r.int(5), r.int(1e9)];
          const self = await selfMetrics(resource);
          const users = (await stock.collect()).resourceMetrics;
          const expected = ProtobufMetricsSerializer.serializeRequest({ resource, scopeMetrics: [...self.scopeMetrics, ...users.scopeMetrics] })!;
          // Told of each request as the exporter tells it: from the second round on, the request's buffer is reused.
          encoder.began();
          const actual = serializer.serializeRequest(self)!;
          encoder.ended();

          assert.deepEqual(sameMetrics(decodeMetrics(actual)), sameMetrics(decodeMetrics(expected)), at);
          assert.deepEqual(sorted(decodeExport(actual, 'protobuf')), sorted(decodeExport(expected, 'protobuf')), at);
          const shaped = list.filter((s) => s.shaped).length;
          const points = (measures.marked ? 4 * list.length : 0) + (measures.shaped ? 8 * shaped : 0);
          assert.equal(decodeExport(actual, 'protobuf').filter((p) => p.metric.startsWith('net_user_')).length, points, at);
          // The same bytes, even: our ScopeMetrics comes last, where the SDK's serializer puts the producer's (but before a schema URL).
          if (!schemaUrl) assert.ok(Buffer.from(actual).equals(Buffer.from(expected)), `${at}: the bytes differ`);
          churn(r, list, () => made++, breakdown);
        }
      }
    });
  }

  test('totals past int64 (2^63 and up) are written as doubles, by our encoder and by the SDK, never wrapped', async () => {
    const resource = resourceFromAttributes({ 'service.name': 'markmeter-test' });
    const clock: HrTime = [1_700_000_000, 5];
    const measures = { marked: true, shaped: true };
    const big: UserSeries = {
      user: { user_code: 'big', user_intra_ip: '10.8.0.9' },
      totals: { rxPackets: 7, txPackets: 2n ** 63n - 1n, rxBytes: 2n ** 64n - 1n, txBytes: 2n ** 53n + 1n },
      shaped: { ...zeroShaped(), txDropped: 2n ** 63n + 5n, rxBytes: 2n ** 62n },
      since: 1_700_000_000_000,
    };
    const small: UserSeries = { user: { user_code: 'small', user_intra_ip: '10.8.0.10' }, totals: { rxPackets: 1, txPackets: 2, rxBytes: 3, txBytes: 4 }, shaped: zeroShaped(), since: 1_700_000_000_000 };
    const list = [big, small];
    const self = await selfMetrics(resource);
    const ours = userSeriesSerializer(new UserSeriesEncoder(() => list, measures, () => clock)).serializeRequest(self)!;
    const users = (await new UserSeriesProducer(() => list, resource, measures, () => clock).collect()).resourceMetrics;
    const all = { resource, scopeMetrics: [...self.scopeMetrics, ...users.scopeMetrics] };
    const stock = ProtobufMetricsSerializer.serializeRequest(all)!;
    const json = JsonMetricsSerializer.serializeRequest(all)!;
    const value = (points: ReturnType<typeof decodeExport>, metric: string, user: string) => points.find((p) => p.metric === metric && p.attributes.user_code === user)?.value;
    for (const [name, points] of [['ours', decodeExport(ours, 'protobuf')], ['the SDK, protobuf', decodeExport(stock, 'protobuf')], ['the SDK, json', decodeExport(json, 'json')]] as const) {
      // A metric with a point past int64 is all doubles (the SDK's data model has one value type per metric): 2^63 - 1 rounds to 2^63.
      assert.equal(value(points, 'net_user_tx_packets', 'big'), 2 ** 63, name);
      assert.equal(value(points, 'net_user_rx_bytes', 'big'), 2 ** 64, name);
      assert.equal(value(points, 'net_user_tc_tx_dropped_packets', 'big'), 2 ** 63, name);
      assert.equal(value(points, 'net_user_tx_packets', 'small'), 2, name);
      // The other metrics stay int64 (a decimal string here; the SDK's JSON prints a number past 2^53 as JavaScript does).
      assert.equal(value(points, 'net_user_rx_packets', 'big'), '7', name);
      assert.equal(value(points, 'net_user_tx_bytes', 'big'), String(2 ** 53), name);
      assert.equal(typeof value(points, 'net_user_tc_rx_bytes', 'big'), 'string', name);
      assert.equal(Number(value(points, 'net_user_tc_rx_bytes', 'big')), 2 ** 62, name);
    }
    assert.ok(Buffer.from(ours).equals(Buffer.from(stock)), 'ours and the SDK differ');
  });

  test("a request's buffer is written again only once no push is sending it", async () => {
    const r = random(11);
    const list: UserSeries[] = [];
    for (let i = 0; i < 30; i++) list.push(series(r, i, false));
    const resource = resourceFromAttributes({ 'service.name': 'markmeter-test' });
    const measures = { marked: true, shaped: false };
    const clock: HrTime = [1_700_000_000, 5];
    const encoder = new UserSeriesEncoder(() => list, measures, () => clock);
    const serializer = userSeriesSerializer(encoder);
    const self = await selfMetrics(resource);
    const expected = async () => {
      const users = (await new UserSeriesProducer(() => list, resource, measures, () => clock).collect()).resourceMetrics;
      return Buffer.from(ProtobufMetricsSerializer.serializeRequest({ resource, scopeMetrics: [...self.scopeMetrics, ...users.scopeMetrics] })!);
    };
    const raise = () => list.forEach((s) => (s.totals.rxPackets = addCount(s.totals.rxPackets, 1 + r.int(1000))));

    encoder.began();
    const first = serializer.serializeRequest(self)!;
    const sent = Buffer.from(first);
    raise();
    // The first is still being sent (a slow collector, retries) when the next push begins.
    encoder.began();
    const second = serializer.serializeRequest(self)!;
    assert.ok(Buffer.from(first).equals(sent), 'a request under way was written over');
    assert.notEqual(second.buffer, first.buffer);
    assert.ok(Buffer.from(second).equals(await expected()));
    encoder.ended();
    encoder.ended();

    // Nothing under way: each push writes the same buffer, and writes it right.
    const buffers = new Set<ArrayBufferLike>();
    for (let round = 0; round < 3; round++) {
      raise();
      encoder.began();
      const request = serializer.serializeRequest(self)!;
      buffers.add(request.buffer);
      assert.ok(Buffer.from(request).equals(await expected()), `round ${round}`);
      encoder.ended();
    }
    assert.equal(buffers.size, 1, 'the buffer was not reused');

    // The users went down: the next request's buffer is one of its size, not the large one kept.
    const large = [...buffers][0]!.byteLength;
    // (Enough users that a quarter of their request is more than a pooled small buffer: 64 KiB on Node 24.)
    for (let i = 0; i < 3000; i++) list.push(series(r, 30 + i, false));
    encoder.began();
    const grown = serializer.serializeRequest(self)!;
    encoder.ended();
    list.length = 3;
    encoder.began();
    const small = serializer.serializeRequest(self)!;
    encoder.ended();
    assert.ok(grown.buffer.byteLength > large && small.buffer.byteLength < grown.buffer.byteLength / 4, `${grown.buffer.byteLength} then ${small.buffer.byteLength} bytes kept`);
    assert.ok(Buffer.from(small).equals(await expected()));
  });

  test('a push in requests of at most maxRequestBytes: each the bytes the SDK writes for its series, every series once', async () => {
    const shapes = [
      { marked: true, shaped: false },
      { marked: true, shaped: true },
      { marked: false, shaped: true },
    ];
    let split = 0;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const r = random(seed * 104_729);
      const measures = shapes[seed % 3]!;
      const breakdown = seed % 2 === 0;
      let made = 0;
      const list: UserSeries[] = [];
      for (let i = 1 + r.int(120); i > 0; i--) list.push(series(r, made++, breakdown));
      const resource = resourceFromAttributes({ 'service.name': 'markmeter-test', 'host.name': 'gw-1' });
      let clock: HrTime = [0, 0];
      const max = 700 + r.int(6000);
      const encoder = new UserSeriesEncoder(() => list, measures, () => clock, max);
      const serializer = userSeriesSerializer(encoder);
      for (let round = 0; round < 6; round++) {
        clock = [1_700_000_000 + round * 5, r.int(1e9)];
        const self = await selfMetrics(resource);
        const push = encoder.beginPush();
        const requests: { body: Buffer; from: number; to: number }[] = [];
        do {
          const from = push.next;
          encoder.began();
          encoder.writing = push;
          const body = Buffer.from(serializer.serializeRequest(requests.length === 0 ? self : { resource, scopeMetrics: [] })!);
          encoder.writing = undefined;
          encoder.ended();
          requests.push({ body, from, to: push.next });
        } while (!push.done);
        const at = `seed ${seed}, round ${round}, ${list.length} users, at most ${max} bytes`;
        assert.deepEqual(
          requests.map(({ from, to }) => [from, to]),
          requests.map((_, k) => [k === 0 ? 0 : requests[k - 1]!.to, requests[k]!.to]),
          `${at}: the requests' series follow one another`,
        );
        assert.equal(requests.at(-1)!.to, list.length, `${at}: every series written`);
        for (const [k, { body, from, to }] of requests.entries()) {
          assert.ok(to > from || list.length === 0, `${at}: request ${k} wrote no series`);
          assert.ok(body.length <= max || to - from === 1, `${at}: request ${k} of ${body.length} bytes holds ${to - from} series`);
          // The SDK's serializer, given the self-metrics (first request only) and this request's series.
          const users = (await new UserSeriesProducer(() => list.slice(from, to), resource, measures, () => clock).collect()).resourceMetrics;
          const expected = ProtobufMetricsSerializer.serializeRequest({ resource, scopeMetrics: [...(k === 0 ? self.scopeMetrics : []), ...users.scopeMetrics] })!;
          assert.ok(body.equals(Buffer.from(expected)), `${at}: request ${k} differs from the SDK's bytes`);
        }
        split += requests.length - 1;
        churn(r, list, () => made++, breakdown);
      }
    }
    assert.ok(split > 20, `only ${split} pushes needed more than one request: the test tests little`);
  });

  test('a push still sending its later requests writes the series it began with, whatever the pushes begun since', async () => {
    const r = random(29);
    let made = 0;
    const list: UserSeries[] = [];
    for (let i = 0; i < 200; i++) list.push(series(r, made++, false));
    const resource = resourceFromAttributes({ 'service.name': 'markmeter-test' });
    const measures = { marked: true, shaped: false };
    const clock: HrTime = [1_700_000_000, 5];
    const encoder = new UserSeriesEncoder(() => list, measures, () => clock, 4000);
    const serializer = userSeriesSerializer(encoder);
    const self = await selfMetrics(resource);
    const write = (push: UserSeriesPush, first: boolean) => {
      encoder.writing = push;
      const body = Buffer.from(serializer.serializeRequest(first ? self : { resource, scopeMetrics: [] })!);
      encoder.writing = undefined;
      return body;
    };
    // Which series' points (values are read when a request is written, so they moved with the totals).
    const userPoints = (bodies: Buffer[]) => sorted(bodies.flatMap((body) => decodeExport(body, 'protobuf')).filter((p) => p.metric.startsWith('net_user_')).map(({ metric, attributes }) => ({ metric, attributes })));
    const began = [...list];
    const expected = userPoints([Buffer.from(ProtobufMetricsSerializer.serializeRequest((await new UserSeriesProducer(() => began, resource, measures, () => clock).collect()).resourceMetrics)!)]);

    const slow = encoder.beginPush();
    const sent = [write(slow, true)];
    // Users come and go, and two more pushes begin (the second with the same users as the first) before the slow one goes on.
    churn(r, list, () => made++, false);
    for (let k = 0; k < 2; k++) {
      const push = encoder.beginPush();
      const bodies = [write(push, true)];
      while (!push.done) bodies.push(write(push, false));
      assert.ok(bodies.length > 1);
    }
    while (!slow.done) sent.push(write(slow, false));
    assert.ok(sent.length > 2, `${sent.length} requests`);
    assert.deepEqual(userPoints(sent), expected);
  });

  test('no user series at all: the metrics are there, without points, as the SDK writes them', async () => {
    const resource = resourceFromAttributes({ 'service.name': 'markmeter-test' });
    const clock: HrTime = [1_700_000_000, 5];
    const measures = { marked: true, shaped: true };
    const self = await selfMetrics(resource);
    const users = (await new UserSeriesProducer(() => [], resource, measures, () => clock).collect()).resourceMetrics;
    const expected = ProtobufMetricsSerializer.serializeRequest({ resource, scopeMetrics: [...self.scopeMetrics, ...users.scopeMetrics] })!;
    const actual = userSeriesSerializer(new UserSeriesEncoder(() => [], measures, () => clock)).serializeRequest(self)!;
    assert.deepEqual(decodeMetrics(actual), decodeMetrics(expected));
    assert.equal(decodeMetrics(actual).filter((m) => m.name.startsWith('net_user_')).length, 12);
  });
});

/** Sets OTEL_EXPORTER_OTLP_* variables for the length of `body`. */
async function withEnv(vars: Record<string, string>, body: () => Promise<void>): Promise<void> {
  const saved = Object.fromEntries(Object.keys(vars).map((key) => [key, process.env[key]]));
  Object.assign(process.env, vars);
  try {
    await body();
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

function pipelineOf(list: UserSeries[], stats = new SelfStats(), log = createLogger('silent'), exportTimeoutMs = 5_000, maxRequestBytes?: number, protocol: ExportProtocol = 'http/protobuf') {
  return new TelemetryPipeline({
    resource: resourceFromAttributes({ 'service.name': 'markmeter-test' }),
    exportIntervalMs: 3_600_000,
    exportTimeoutMs,
    protocol,
    maxRequestBytes,
    log,
    view: { users: () => list, unattributed: () => ({ rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 }), interfaces: () => [], stats },
  });
}

describe('the default http/protobuf push', () => {
  test('carries each user point once, with the self-metrics, honouring OTEL_EXPORTER_OTLP_HEADERS and _COMPRESSION', async () => {
    const requests: { headers: IncomingHttpHeaders; body: Buffer }[] = [];
    const collector = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        requests.push({ headers: request.headers, body: Buffer.concat(chunks) });
        response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const { port } = collector.address() as { port: number };
    const alice: UserSeries = { user: { user_code: 'alice', user_intra_ip: '10.8.0.2', user_name: 'Alice' }, totals: { rxPackets: 1, txPackets: 2, rxBytes: 3, txBytes: 2n ** 53n + 1n }, since: 1_700_000_000_000 };
    const bob: UserSeries = { user: { user_code: 'bob', user_intra_ip: 'fd00:8::2' }, totals: { rxPackets: 0, txPackets: 5, rxBytes: 0, txBytes: 500 }, since: 1_700_000_001_000 };
    const list = [alice];
    const stats = new SelfStats();
    stats.usersLoaded = 7;
    await withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_EXPORTER_OTLP_HEADERS: 'x-tenant=t1', OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip' }, async () => {
      const pipeline = pipelineOf(list, stats);
      try {
        await pipeline.flush();
        list.push(bob);
        alice.totals.rxPackets = 11;
        await pipeline.flush();
      } finally {
        await pipeline.shutdown();
        collector.close();
      }
    });
    // The third: shutdown's own flush.
    assert.equal(requests.length, 3);
    for (const { headers } of requests) {
      assert.equal(headers['x-tenant'], 't1');
      assert.equal(headers['content-type'], 'application/x-protobuf');
      assert.equal(headers['content-encoding'], 'gzip');
    }
    const [first, second] = requests.map(({ body }) => decodeExport(gunzipSync(body), 'protobuf'));
    const user = (points: typeof first) => sorted(points!.filter((p) => p.metric.startsWith('net_user_')).map((p) => `${p.metric} ${p.attributes.user_code} ${p.value}`));
    assert.deepEqual(user(first), sorted(['net_user_rx_packets alice 1', 'net_user_tx_packets alice 2', 'net_user_rx_bytes alice 3', 'net_user_tx_bytes alice 9007199254740992']));
    assert.deepEqual(user(second), sorted([
      'net_user_rx_packets alice 11', 'net_user_tx_packets alice 2', 'net_user_rx_bytes alice 3', 'net_user_tx_bytes alice 9007199254740992',
      'net_user_rx_packets bob 0', 'net_user_tx_packets bob 5', 'net_user_rx_bytes bob 0', 'net_user_tx_bytes bob 500',
    ]));
    assert.deepEqual(second!.filter((p) => p.metric === 'markmeter_users').map((p) => p.value), ['7'], 'the self-metrics are in the same request');
    const metrics = decodeMetrics(gunzipSync(requests[1]!.body));
    assert.equal(metrics.filter((m) => m.name === 'net_user_rx_packets').length, 1, 'one user series scope, not two');
    assert.deepEqual(metrics.find((m) => m.name === 'net_user_tx_bytes')?.points.find((p) => p.attributes.user_code?.stringValue === 'bob')?.start, '1700000001000000000');
  });

  for (const protocol of ['http/protobuf', 'http/json'] as const) {
  test(`a push of many users goes as requests of at most maxRequestBytes, one after another; a refused one ends the push (${protocol})`, async () => {
    const bodies: Buffer[] = [];
    let refuse = -1;
    let underWay = 0;
    let most = 0;
    const collector = createServer((request, response) => {
      underWay += 1;
      most = Math.max(most, underWay);
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        assert.equal(request.headers['content-type'], protocol === 'http/json' ? 'application/json' : 'application/x-protobuf');
        bodies.push(Buffer.concat(chunks));
        // 400 is not retried by the exporter: the push fails at once.
        setTimeout(() => {
          underWay -= 1;
          response.writeHead(bodies.length - 1 === refuse ? 400 : 200, { 'content-type': 'application/x-protobuf' }).end();
        }, 5);
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const { port } = collector.address() as { port: number };
    const r = random(5);
    const list: UserSeries[] = [];
    for (let i = 0; i < 1500; i++) list.push(series(r, i, false));
    const stats = new SelfStats();
    stats.usersLoaded = list.length;
    const limit = 65_536;
    /** The pushes: each begins with the request carrying the self-metrics. */
    const encoding = protocol === 'http/json' ? 'json' : 'protobuf';
    const pushes = () => {
      const out: WirePoint[][][] = [];
      for (const body of bodies) {
        const points = decodeExport(body, encoding);
        if (points.some((p) => p.metric === 'markmeter_users')) out.push([]);
        out.at(-1)!.push(points.filter((p) => p.metric.startsWith('net_user_')));
      }
      return out;
    };
    // (Each encoding as the SDK writes it: JSON keeps a lone surrogate that protobuf's UTF-8 replaces.)
    const serializer = protocol === 'http/json' ? JsonMetricsSerializer : ProtobufMetricsSerializer;
    const expected = async () => sorted(decodeExport(serializer.serializeRequest((await new UserSeriesProducer(() => list, resourceFromAttributes({})).collect()).resourceMetrics)!, encoding));
    await withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` }, async () => {
      const pipeline = pipelineOf(list, stats, createLogger('silent'), 5_000, limit, protocol);
      try {
        await pipeline.flush();
        const [first] = pushes();
        assert.ok(first!.length >= 4, `${first!.length} requests`);
        assert.deepEqual(sorted(first!.flat()), await expected(), 'every point of every user once');
        assert.ok(bodies.every((body) => body.length <= limit), `sizes ${bodies.map((b) => b.length).join(' ')}`);
        assert.ok(bodies.every((body) => body.includes('markmeter-test')), 'a request without the resource');
        assert.equal(most, 1, 'requests of one push were sent at once');

        // The second request of the next push is refused: the push fails there, its later requests are not sent.
        refuse = bodies.length + 1;
        list.forEach((s) => (s.totals.rxPackets = addCount(s.totals.rxPackets, 1)));
        await pipeline.flush();
        assert.equal(pushes()[1]!.length, 2, 'requests went on after a refused one');
        assert.equal(stats.exportFailures, 1);

        // The next push carries everything again.
        await pipeline.flush();
        assert.deepEqual(sorted(pushes()[2]!.flat()), await expected());
      } finally {
        await pipeline.shutdown();
        collector.close();
      }
    });
  });
  }

  test('a push being retried resends its own bytes while the next push is made', async () => {
    const bodies: Buffer[] = [];
    const collector = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        bodies.push(Buffer.concat(chunks));
        // The first attempt is refused with a status the exporter retries (after a backoff of about a second).
        response.writeHead(bodies.length === 1 ? 503 : 200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const { port } = collector.address() as { port: number };
    const alice: UserSeries = { user: { user_code: 'alice', user_intra_ip: '10.8.0.2' }, totals: { rxPackets: 1, txPackets: 2, rxBytes: 3, txBytes: 4 }, since: 1_700_000_000_000 };
    const self = await selfMetrics(resourceFromAttributes({ 'service.name': 'markmeter-test' }));
    await withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` }, async () => {
      // The exporter itself: the SDK's reader gives up waiting on a slow push, and pushes again while it is still being sent.
      const exporter = createOtlpExporter('http/protobuf', undefined, new UserSeriesEncoder(() => [alice]));
      const push = () => new Promise((resolve) => exporter.export(self, resolve));
      try {
        const retried = push();
        await until(() => bodies.length === 1, 'the first attempt');
        alice.totals.rxPackets = 1000;
        await Promise.all([push(), retried]);
      } finally {
        await exporter.shutdown();
        collector.close();
      }
    });
    const rx = (body: Buffer) => decodeExport(body, 'protobuf').find((p) => p.metric === 'net_user_rx_packets')?.value;
    assert.deepEqual(bodies.map(rx).sort(), ['1', '1', '1000'], 'the first push, its retry, the second push');
    const [first, retry] = bodies.filter((body) => rx(body) === '1');
    assert.ok(retry!.equals(first!), 'the retry resent other bytes than its first attempt');
  });

  test('a collector that refuses the push: logged once when it starts, the push fails within the export timeout', async () => {
    const port = await freePort();
    const lines: LogFields[] = [];
    const sink = (line: string) => void lines.push(JSON.parse(line) as LogFields);
    const stats = new SelfStats();
    await withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_EXPORTER_OTLP_TIMEOUT: '1000' }, async () => {
      const pipeline = pipelineOf([], stats, createLogger('info', {}, { out: sink, err: sink }), 1000);
      try {
        const started = Date.now();
        void pipeline.flush();
        await until(() => lines.some((l) => l.level === 'error'), 'the failure to be logged', 1500);
        assert.ok(Date.now() - started < 1500);
        assert.match(JSON.stringify(lines.find((l) => l.level === 'error')), new RegExp(`OTLP push failed \\(endpoint http://127\\.0\\.0\\.1:${port}/v1/metrics\\).*ECONNREFUSED`));
        assert.equal(await pipeline.finish(1500), false, 'the last push did not make it');
        assert.equal(lines.filter((l) => l.level === 'error').length, 1, 'one outage, logged once');
        assert.ok(stats.exportFailures >= 1);
      } finally {
        await pipeline.shutdown();
      }
    });
  });
});
