/**
 * The OpenTelemetry side: resource, MeterProvider, periodic reader and the OTLP
 * exporter. The provider is passed to nothing global, so it can be rebuilt:
 * the SDK keeps exporting an asynchronous series that is no longer observed for
 * as long as its MeterProvider lives, so dropping a removed user's series means
 * building a new provider. All state worth keeping (totals, self-stats) lives
 * outside the SDK, so a rebuild loses nothing and no counter goes back.
 */
import { createServer, type Server } from 'node:http';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { AggregationTemporalityPreference, OTLPMetricExporter as JsonExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as ProtobufExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import type { Resource } from '@opentelemetry/resources';
import {
  MeterProvider,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import type { Logger } from '../log.js';
import type { ExportProtocol } from '../settings.js';
import { registerInstruments, type TelemetryView } from './instruments.js';
import { METER_NAME } from './semconv.js';

/** SDK messages about a failed or timed-out push: the pipeline reports those itself, once per outage. */
export const SDK_EXPORT_FAILURE = /metrics export (failed|timed out)/;

export interface PipelineOptions {
  resource: Resource;
  exportIntervalMs: number;
  exportTimeoutMs: number;
  /** Largest number of series one instrument may hold before the SDK folds them into an overflow series. */
  cardinalityLimit: number;
  view: TelemetryView;
  log: Logger;
  /** The OTLP/HTTP encoding of the default exporter. */
  protocol: ExportProtocol;
  /** Also serve /metrics for Prometheus to scrape (the pipeline's own listener survives rebuilds). */
  prometheus?: { host: string; port: number };
  /** Defaults to the OTLP/HTTP exporter configured from the standard OTEL_EXPORTER_OTLP_* variables. */
  createExporter?: () => PushMetricExporter;
}

interface Generation {
  provider: MeterProvider;
  exporter: GatedExporter;
  /** The pull reader of this generation, when export.prometheus.port is set. */
  prometheus: PrometheusExporter | undefined;
}

export class TelemetryPipeline {
  private current: Generation;
  private readonly health: ExportHealth = { failing: false };

  constructor(private readonly options: PipelineOptions) {
    this.current = this.build();
  }

  /** Replaces the provider; series no longer observed are gone from the next export on. */
  async rebuild(): Promise<void> {
    const old = this.current;
    this.current = this.build();
    // Closing first keeps the old provider's shutdown flush from pushing the dropped series once more.
    old.exporter.close();
    await old.provider.shutdown().catch((error: unknown) => this.options.log.warn('old meter provider did not shut down cleanly', { error }));
  }

  /** Pushes the latest totals now. */
  async flush(): Promise<void> {
    await this.current.provider.forceFlush();
  }

  async shutdown(): Promise<void> {
    await this.current.provider.shutdown();
  }

  /**
   * The last push, then shutdown, both bounded: a collector that is down must
   * not hold up a stopping container. Resolves whether the last push made it.
   */
  async finish(pushWithinMs: number): Promise<boolean> {
    const { provider, exporter } = this.current;
    const pushed = await within(provider.forceFlush().then(() => !this.health.failing), pushWithinMs);
    // Closed, the exporter answers the shutdown's own flush at once.
    exporter.close();
    await within(provider.shutdown(), 1000);
    return pushed === true;
  }

  private build(): Generation {
    const { options } = this;
    const exporter = new GatedExporter(options.createExporter?.() ?? createOtlpExporter(options.protocol), options, this.health);
    const reader = new PeriodicExportingMetricReader({
      exporter,
      exportIntervalMillis: options.exportIntervalMs,
      exportTimeoutMillis: Math.min(options.exportTimeoutMs, options.exportIntervalMs),
      cardinalityLimits: { default: options.cardinalityLimit },
    });
    const prometheus = options.prometheus ? new PrometheusExporter({ preventServerStart: true }) : undefined;
    const provider = new MeterProvider({ resource: options.resource, readers: prometheus ? [reader, prometheus] : [reader] });
    registerInstruments(provider.getMeter(METER_NAME), options.view);
    return { provider, exporter, prometheus };
  }

  /**
   * Starts the /metrics listener: it answers from whichever provider is
   * current, so a rebuild does not need a new port.
   */
  async servePrometheus(): Promise<Server | undefined> {
    const config = this.options.prometheus;
    if (!config) return undefined;
    const server = createServer((request, response) => {
      if ((request.url ?? '').split('?')[0] !== '/metrics') {
        response.writeHead(404).end('not found: try /metrics\n');
        return;
      }
      this.current.prometheus!.getMetricsRequestHandler(request, response);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(new Error(`export.prometheus.port ${config.port}: ${(error as Error).message}`, { cause: error })));
      server.listen(config.port, config.host, resolve);
    });
    server.unref();
    return server;
  }
}

/** The OTLP/HTTP exporter; endpoint, headers, compression and timeout come from the OTEL_EXPORTER_OTLP_* variables. */
export function createOtlpExporter(protocol: ExportProtocol): PushMetricExporter {
  // Cumulative whatever OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE says: the contract is monotonic totals.
  const config = { temporalityPreference: AggregationTemporalityPreference.CUMULATIVE };
  return protocol === 'http/json' ? new JsonExporter(config) : new ProtobufExporter(config);
}

/** The promise's value, or undefined when it has not settled within `ms` (a rejection counts as undefined too). */
function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  return Promise.race([promise.catch(() => undefined), timeout]).finally(() => clearTimeout(timer));
}

/** Whether pushes are failing now: shared by every generation, so an outage is logged once, not per provider. */
interface ExportHealth {
  failing: boolean;
}

/**
 * Counts failed pushes and logs an outage when it starts and when it ends; a
 * push that has not answered within the export timeout counts as failed (the
 * SDK's reader gives up on it then). Can be closed so a retired provider
 * exports nothing more.
 */
class GatedExporter implements PushMetricExporter {
  private closed = false;

  readonly selectAggregationTemporality?: PushMetricExporter['selectAggregationTemporality'];
  readonly selectAggregation?: PushMetricExporter['selectAggregation'];

  constructor(
    private readonly inner: PushMetricExporter,
    private readonly options: Pick<PipelineOptions, 'view' | 'log' | 'exportTimeoutMs'>,
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
    const settle = (result: ExportResult) => {
      if (settled) return;
      settled = true;
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
    if (!this.health.failing) {
      log.error(
        'OTLP push failed; it is retried every export interval, and since totals are cumulative the next successful push carries everything: check that the collector at OTEL_EXPORTER_OTLP_ENDPOINT is up',
        { error: result.error ?? new Error('unknown export error') },
      );
    }
    this.health.failing = true;
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}
