/**
 * The http/json push in requests of at most `maxRequestBytes`. JSON is about
 * 0.9 KB per user (44 MiB at 50,000 users), past the 20 MiB a collector's
 * OTLP/HTTP receiver takes by default from about 20,000 users. A push's
 * points, in the order the readers collected them (self-telemetry first),
 * are cut into runs whose request fits, each a whole request with the
 * resource. A metric's points may be spread over several requests: each
 * point stands alone in OTLP. The exporter (pipeline.ts) sends the requests
 * one after another; the serializer writes the one of the push under way.
 */
import { JsonMetricsSerializer, type IExportMetricsServiceResponse, type ISerializer } from '@opentelemetry/otlp-transformer';
import type { MetricData, ResourceMetrics } from '@opentelemetry/sdk-metrics';

/** Points in a first guess at a large push's request (about 2 MB of JSON for a user's point): later ones follow the sizes met. */
const FIRST_GUESS = 10_000;

/** One push, written as requests of at most `maxBytes` from point `next` on. */
export class JsonPush {
  next = 0;
  private readonly total: number;
  private guess: number;

  constructor(
    private readonly metrics: ResourceMetrics,
    private readonly maxBytes: number,
  ) {
    let total = 0;
    for (const scope of metrics.scopeMetrics) for (const metric of scope.metrics) total += metric.dataPoints.length;
    this.total = total;
    this.guess = Math.min(total, FIRST_GUESS);
  }

  get done(): boolean {
    return this.next >= this.total;
  }

  /** The next request: as many points from `next` on as fit (at least one), found by serializing. */
  write(): Uint8Array {
    const left = this.total - this.next;
    for (let n = Math.max(1, Math.min(this.guess, left)); ; ) {
      const body = JsonMetricsSerializer.serializeRequest(this.part(this.next, this.next + n)) ?? new Uint8Array();
      if (body.length > this.maxBytes && n > 1) {
        // Too large: as many points as would fit at this one's bytes per point, less a tenth for their spread.
        n = Math.max(1, Math.min(n - 1, Math.floor(((n * this.maxBytes) / body.length) * 0.9)));
        continue;
      }
      this.next += n;
      // The next request tries as many as fit at this one's bytes per point.
      this.guess = Math.max(1, Math.floor(((n * this.maxBytes) / Math.max(body.length, 1)) * 0.9));
      return body;
    }
  }

  /** The push with only the points [from, to); metrics without points go in the first request. */
  private part(from: number, to: number): ResourceMetrics {
    if (from === 0 && to >= this.total) return this.metrics;
    let at = 0;
    const scopeMetrics: ResourceMetrics['scopeMetrics'] = [];
    for (const scope of this.metrics.scopeMetrics) {
      const metrics: MetricData[] = [];
      for (const metric of scope.metrics) {
        const points = metric.dataPoints.length;
        const start = Math.max(from - at, 0);
        const end = Math.min(to - at, points);
        at += points;
        if (start < end) metrics.push({ ...metric, dataPoints: metric.dataPoints.slice(start, end) } as MetricData);
        else if (points === 0 && from === 0) metrics.push(metric);
      }
      if (metrics.length > 0) scopeMetrics.push({ scope: scope.scope, metrics });
    }
    return { resource: this.metrics.resource, scopeMetrics };
  }
}

/** The pushes of the http/json exporter and its serializer (the SDK's, writing the request of the push under way). */
export class JsonRequests {
  /** The push whose request is being serialized (set by the exporter around the serializer's call). */
  writing: JsonPush | undefined;

  constructor(private readonly maxRequestBytes: number) {}

  beginPush(metrics: ResourceMetrics): JsonPush {
    return new JsonPush(metrics, this.maxRequestBytes);
  }

  serializer(): ISerializer<ResourceMetrics, IExportMetricsServiceResponse> {
    return {
      serializeRequest: (metrics) => (this.writing ? this.writing.write() : JsonMetricsSerializer.serializeRequest(metrics)),
      deserializeResponse: (data) => JsonMetricsSerializer.deserializeResponse(data),
    };
  }
}
