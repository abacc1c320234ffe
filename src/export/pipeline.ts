/**
 * The OpenTelemetry side: resource, MeterProvider, periodic reader and the OTLP
 * exporter (and the Prometheus reader when asked). Self-telemetry goes through
 * SDK instruments. The per-user series come from the UserSeriesProducer, which
 * the readers collect besides the SDK's own, except in the default http/protobuf
 * push: there the exporter writes them into the request itself (see
 * user-series-protobuf.ts), and its reader has no producer. All state worth
 * keeping (totals, self-stats) lives outside the SDK, so nothing in it ever goes back.
 */
import type { Server } from 'node:http';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { AggregationTemporalityPreference, OTLPMetricExporterBase } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as ProtobufExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import type { IOtlpExportDelegate } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { MetricsExporterMetricsHelper } from '@opentelemetry/otlp-transformer';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import type { Resource } from '@opentelemetry/resources';
import {
  MeterProvider,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { createLimitedServer, type ListenerLimits } from '../shared/listener-limits.js';
import { redactUrl } from '../shared/redact.js';
import type { Logger } from '../log.js';
import { EXPORT_DEFAULT_REQUEST_BYTES, type ExportProtocol } from '../settings.js';
import { otlpMetricsTarget, type OtlpTarget } from './endpoint.js';
import { JsonRequests } from './json-requests.js';
import { registerInstruments, type TelemetryView } from './self-metrics.js';
import { METER_NAME } from './semconv.js';
import { SharedScrapes } from './shared-scrapes.js';
import { UserSeriesProducer } from './user-series.js';
import { UserSeriesEncoder, userSeriesSerializer } from './user-series-protobuf.js';

/** Scrapes that may wait on one production of the /metrics body; more are answered 503. */
export const MAX_SHARED_SCRAPES = 16;

/** SDK messages about a failed or timed-out push: the pipeline reports those itself, once per outage. */
export const SDK_EXPORT_FAILURE = /metrics export (failed|timed out)/;

export interface PipelineOptions {
  resource: Resource;
  exportIntervalMs: number;
  exportTimeoutMs: number;
  view: TelemetryView;
  log: Logger;
  /** The OTLP/HTTP encoding of the default exporter. */
  protocol: ExportProtocol;
  /** The most bytes of one push request: a larger push goes out as several requests. */
  maxRequestBytes?: number;
  /** Also serve /metrics for Prometheus to scrape (`limits`: the listener's, by default LISTENER_LIMITS). */
  prometheus?: { host: string; port: number; limits?: ListenerLimits };
  /** Defaults to the OTLP/HTTP exporter configured from the standard OTEL_EXPORTER_OTLP_* variables (a given one gets the user series from the UserSeriesProducer). */
  createExporter?: () => PushMetricExporter;
}

export class TelemetryPipeline {
  /** Where pushes go, for logs (credentials masked). */
  readonly endpoint: string;
  private readonly provider: MeterProvider;
  private readonly exporter: GatedExporter;
  /** The pull reader, when export.prometheus.port is set. */
  private readonly prometheus: PrometheusExporter | undefined;
  private readonly health: ExportHealth = { failing: false };

  constructor(private readonly options: PipelineOptions) {
    // Each failed connection goes to the gate, which logs the outage at the push's first failed attempt.
    const target = otlpMetricsTarget((error) => this.exporter.connectionFailed(error));
    this.endpoint = redactUrl(target.url);
    const users = new UserSeriesProducer(() => options.view.users(), options.resource, options.view.measures);
    // The default push writes the user series itself, read from the view when it encodes the request.
    const encoded = !options.createExporter && options.protocol === 'http/protobuf' ? new UserSeriesEncoder(() => options.view.users(), options.view.measures, undefined, options.maxRequestBytes) : undefined;
    this.exporter = new GatedExporter(options.createExporter?.() ?? createOtlpExporter(options.protocol, target, encoded, options.maxRequestBytes), { ...options, endpoint: this.endpoint }, this.health);
    const reader = new PeriodicExportingMetricReader({
      exporter: this.exporter,
      exportIntervalMillis: options.exportIntervalMs,
      exportTimeoutMillis: Math.min(options.exportTimeoutMs, options.exportIntervalMs),
      metricProducers: encoded ? [] : [users],
    });
    this.prometheus = options.prometheus ? new PrometheusExporter({ preventServerStart: true, metricProducers: [users] }) : undefined;
    this.provider = new MeterProvider({ resource: options.resource, readers: this.prometheus ? [reader, this.prometheus] : [reader] });
    registerInstruments(this.provider.getMeter(METER_NAME), options.view);
  }

  /** Pushes the latest totals now. */
  async flush(): Promise<void> {
    await this.provider.forceFlush();
  }

  async shutdown(): Promise<void> {
    await this.provider.shutdown();
  }

  /**
   * The last push, then shutdown, both bounded: a collector that is down must
   * not hold up a stopping container. Resolves whether the last push made it.
   */
  async finish(pushWithinMs: number): Promise<boolean> {
    const { provider, exporter } = this;
    const pushed = await within(provider.forceFlush().then(() => !this.health.failing), pushWithinMs);
    // Closed, the exporter answers the shutdown's own flush at once.
    exporter.close();
    await within(provider.shutdown(), 1000);
    return pushed === true;
  }

  /**
   * Starts the /metrics listener (our own server, bound to export.prometheus
   * host and port). Concurrent scrapes share one production of the body.
   */
  async servePrometheus(): Promise<Server | undefined> {
    const config = this.options.prometheus;
    const reader = this.prometheus;
    if (!config || !reader) return undefined;
    // The PrometheusExporter's own handler does this per request; the serializer's defaults are the exporter's.
    const serializer = new PrometheusSerializer();
    const scrapes = new SharedScrapes(async () => {
      const { resourceMetrics, errors } = await reader.collect();
      for (const error of errors) this.options.log.warn('a /metrics scrape met a collection error', { error });
      return serializer.serialize(resourceMetrics);
    }, MAX_SHARED_SCRAPES);
    const server = createLimitedServer((request, response) => {
      if ((request.url ?? '').split('?')[0] !== '/metrics') {
        response.writeHead(404).end('not found: try /metrics\n');
        return;
      }
      const body = scrapes.body();
      if (body === undefined) {
        response.writeHead(503, { 'retry-after': '1', 'content-type': 'text/plain' }).end(`more than ${MAX_SHARED_SCRAPES} scrapes at once: try again in a second\n`);
        return;
      }
      body.then(
        (text) => response.writeHead(200, { 'content-type': 'text/plain' }).end(text),
        (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`# failed to export metrics: ${String(error)}\n`),
      );
    }, config.limits);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(new Error(`export.prometheus.port ${config.port}: ${(error as Error).message}`, { cause: error })));
      server.listen(config.port, config.host, resolve);
    });
    server.unref();
    return server;
  }
}

/**
 * The OTLP/HTTP exporter; endpoint, headers, compression and timeout come from
 * the OTEL_EXPORTER_OTLP_* variables, its HTTP agent from `target`. A push
 * goes as requests of at most `maxRequestBytes`. Given `userSeries`, the
 * http/protobuf exporter adds the user series to each request (then no reader
 * of it may also produce them).
 */
export function createOtlpExporter(
  protocol: ExportProtocol,
  target: OtlpTarget = otlpMetricsTarget(),
  userSeries?: UserSeriesEncoder,
  maxRequestBytes = EXPORT_DEFAULT_REQUEST_BYTES,
): PushMetricExporter {
  // Cumulative whatever OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE says: the contract is monotonic totals.
  const config = { temporalityPreference: AggregationTemporalityPreference.CUMULATIVE, httpAgentOptions: target.agentFactory };
  if (protocol === 'http/protobuf' && !userSeries) return new ProtobufExporter(config);
  // The stock exporters, built as they build themselves, with our serializers.
  const json = protocol === 'http/json' ? new JsonRequests(maxRequestBytes) : undefined;
  const http = convertLegacyHttpOptions(config, 'METRICS', 'v1/metrics', { 'Content-Type': json ? 'application/json' : 'application/x-protobuf' });
  const [serializer, requests] = json ? [json.serializer(), json] : [userSeriesSerializer(userSeries!), userSeries!];
  const delegate = createOtlpHttpExportDelegate(http, serializer, 'otlp_http_metric_exporter', MetricsExporterMetricsHelper, undefined);
  return new OTLPMetricExporterBase(sendInRequests(delegate, requests), config);
}

/** A push that goes as several requests (`next`: how far its requests have got). */
interface PushInRequests {
  readonly next: number;
  readonly done: boolean;
}

/** The requests of an exporter's pushes: its serializer writes the next request of the push `writing`. */
interface RequestSplitter {
  writing: PushInRequests | undefined;
  beginPush(metrics: ResourceMetrics): PushInRequests;
  /** Told when each request begins and ends (the protobuf encoder reuses a buffer only when no request is under way). */
  began?(): void;
  ended?(): void;
}

/**
 * The delegate, sending a push as requests of the splitter's size, one after
 * another (each one's buffer is written when the one before has ended), and
 * telling the splitter when each request begins and ends (sent, failed, or
 * given up after its retries): the protobuf encoder reuses a request's buffer
 * only once no request is being sent. The delegate serializes a request within
 * export() and calls back once, when nothing sends it any more. The first
 * request is handed what the SDK collected, the later ones only the resource
 * (the protobuf encoder adds user series to what it is handed). A failed
 * request ends the push (the totals are cumulative: the next push carries
 * everything), as does one that wrote nothing more (nothing to go on with).
 */
function sendInRequests(delegate: IOtlpExportDelegate<ResourceMetrics>, splitter: RequestSplitter): IOtlpExportDelegate<ResourceMetrics> {
  return {
    export(metrics, resultCallback) {
      const push = splitter.beginPush(metrics);
      const send = (request: ResourceMetrics) => {
        const written = push.next;
        splitter.began?.();
        let ended = false;
        const end = () => {
          if (!ended) splitter.ended?.();
          ended = true;
        };
        splitter.writing = push;
        try {
          delegate.export(request, (result) => {
            end();
            if (result.code !== ExportResultCode.SUCCESS || push.done || push.next === written) resultCallback(result);
            else send({ resource: metrics.resource, scopeMetrics: [] });
          });
        } catch (error) {
          // Thrown before any request was made (the serializer's own error): none is under way.
          end();
          resultCallback({ code: ExportResultCode.FAILED, error: error instanceof Error ? error : new Error(String(error)) });
        } finally {
          splitter.writing = undefined;
        }
      };
      send(metrics);
    },
    forceFlush: () => delegate.forceFlush(),
    shutdown: () => delegate.shutdown(),
    setMetrics: (metrics) => delegate.setMetrics(metrics),
  };
}

/** The promise's value, or undefined when it has not settled within `ms` (a rejection counts as undefined too). */
function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  return Promise.race([promise.catch(() => undefined), timeout]).finally(() => clearTimeout(timer));
}

/** Whether pushes are failing now, so that an outage is logged when it starts and when it ends. */
interface ExportHealth {
  failing: boolean;
}

/**
 * Counts failed pushes and logs an outage when it starts and when it ends; a
 * push that has not answered within the export timeout counts as failed (the
 * SDK's reader gives up on it then). An outage is logged at the first failed
 * connection of a push, not only once the exporter has given up retrying it.
 * Can be closed, so that the shutdown after the last push pushes nothing more.
 */
class GatedExporter implements PushMetricExporter {
  private closed = false;
  /** Pushes under way: a failed connection outside them (an idle keep-alive socket) is no failed push. */
  private pending = 0;

  readonly selectAggregationTemporality?: PushMetricExporter['selectAggregationTemporality'];
  readonly selectAggregation?: PushMetricExporter['selectAggregation'];

  constructor(
    private readonly inner: PushMetricExporter,
    private readonly options: Pick<PipelineOptions, 'view' | 'log' | 'exportTimeoutMs'> & { endpoint: string },
    private readonly health: ExportHealth,
  ) {
    // Optional in the interface: pass on only what the wrapped exporter has.
    this.selectAggregationTemporality = inner.selectAggregationTemporality?.bind(inner);
    this.selectAggregation = inner.selectAggregation?.bind(inner);
  }

  close(): void {
    this.closed = true;
  }

  export(metrics: ResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    if (this.closed) {
      resultCallback({ code: ExportResultCode.SUCCESS });
      return;
    }
    let settled = false;
    this.pending += 1;
    const settle = (result: ExportResult) => {
      if (settled) return;
      settled = true;
      this.pending -= 1;
      clearTimeout(timer);
      this.record(result);
      resultCallback(result);
    };
    const timer = setTimeout(
      () => settle({ code: ExportResultCode.FAILED, error: new Error(`no answer within ${this.options.exportTimeoutMs} ms`) }),
      this.options.exportTimeoutMs,
    );
    timer.unref();
    this.inner.export(metrics, settle);
  }

  private record(result: ExportResult): void {
    const { log, view } = this.options;
    if (result.code === ExportResultCode.SUCCESS) {
      if (this.health.failing) log.info('OTLP push succeeded again');
      this.health.failing = false;
      return;
    }
    view.stats.exportFailures += 1;
    this.outage(result.error ?? new Error('unknown export error'));
  }

  /** A connection of the exporter failed: during a push, that push has failed its first attempt. */
  connectionFailed(error: Error): void {
    if (this.pending > 0 && !this.closed) this.outage(error);
  }

  /** Logs an outage once, when it starts. */
  private outage(error: Error): void {
    if (this.health.failing) return;
    this.health.failing = true;
    const { endpoint, log } = this.options;
    log.error(
      `OTLP push failed (endpoint ${endpoint}); pushes go on every export interval, and since totals are cumulative the next successful push carries everything: check that a collector listens there (OTEL_EXPORTER_OTLP_ENDPOINT)`,
      { endpoint, error },
    );
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}
