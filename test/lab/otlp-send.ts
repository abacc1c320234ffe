/**
 * A real OpenTelemetry exporter for tests of the receivers: a MeterProvider with a
 * PeriodicExportingMetricReader and @opentelemetry/exporter-metrics-otlp-http's OTLPMetricExporter
 * (OTLP JSON), observable INT counters, exactly ONE export request (shutdown() collects and exports
 * once; a forceFlush() before it would send a second one).
 *
 *   exportOnce({url, counters, compression?, protocol?, serviceName?}): Promise<void>   in this process
 *   as a program (e.g. inside a lab namespace, to reach a receiver on that namespace's loopback):
 *     ip netns exec <ns> node --import tsx test/lab/otlp-send.ts --url URL --counter NAME=VALUE[,k=v...] [--gzip] [--protobuf] [--timeout-ms MS]
 *   It exits 0 once the export succeeded, 1 (with the reason on stderr) otherwise.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ValueType } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as ProtobufMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';

export interface CounterSpec {
  name: string;
  value: number;
  attributes?: Record<string, string | number | boolean>;
}

export interface ExportOnceOptions {
  /** The full metrics URL (…/v1/metrics). */
  url: string;
  counters: CounterSpec[];
  compression?: 'gzip' | 'none';
  /** 'json' (exporter-metrics-otlp-http, the default) or 'protobuf' (exporter-metrics-otlp-proto). */
  protocol?: 'json' | 'protobuf';
  serviceName?: string;
  timeoutMs?: number;
}

/** Sends one OTLP JSON export with the given observable INT counters; rejects if the export fails. */
export async function exportOnce(options: ExportOnceOptions): Promise<void> {
  type Config = NonNullable<ConstructorParameters<typeof OTLPMetricExporter>[0]>;
  const config: Config = {
    url: options.url,
    compression: (options.compression ?? 'none') as unknown as NonNullable<Config['compression']>,
    timeoutMillis: options.timeoutMs ?? 5000,
  };
  const inner: PushMetricExporter = options.protocol === 'protobuf' ? new ProtobufMetricExporter(config) : new OTLPMetricExporter(config);
  // The reader swallows export failures: keep the result to report it.
  let failure: Error | undefined;
  let exports = 0;
  const exporter: PushMetricExporter = {
    export: (metrics, done) =>
      inner.export(metrics, (result) => {
        exports += 1;
        if (result.code !== 0) failure = result.error ?? new Error(`export failed with code ${result.code}`);
        done(result);
      }),
    forceFlush: () => inner.forceFlush(),
    shutdown: () => inner.shutdown(),
    selectAggregationTemporality: (type) => inner.selectAggregationTemporality!(type),
  };
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': options.serviceName ?? 'markmeter-lab' }),
    readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000, exportTimeoutMillis: options.timeoutMs ?? 5000 })],
  });
  const meter = provider.getMeter('markmeter-lab', '1.0.0');
  for (const c of options.counters) {
    meter.createObservableCounter(c.name, { valueType: ValueType.INT }).addCallback((r) => r.observe(c.value, c.attributes ?? {}));
  }
  await provider.shutdown();
  if (failure) throw failure;
  if (exports !== 1) throw new Error(`expected one export, saw ${exports}`);
}

function parseCounter(spec: string): CounterSpec {
  const [head, ...attrs] = spec.split(',');
  const [name, value] = (head ?? '').split('=');
  if (!name || value === undefined || !/^-?\d+$/.test(value)) throw new Error(`bad --counter ${spec} (NAME=INT[,key=value...])`);
  const attributes: Record<string, string> = {};
  for (const a of attrs) {
    const i = a.indexOf('=');
    if (i < 1) throw new Error(`bad attribute ${a} in --counter ${spec}`);
    attributes[a.slice(0, i)] = a.slice(i + 1);
  }
  return { name, value: Number(value), attributes };
}

async function main(argv: string[]): Promise<void> {
  let url = '';
  let compression: 'gzip' | 'none' = 'none';
  let protocol: 'json' | 'protobuf' = 'json';
  let timeoutMs = 5000;
  const counters: CounterSpec[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--url') url = argv[++i] ?? '';
    else if (a === '--counter') counters.push(parseCounter(argv[++i] ?? ''));
    else if (a === '--gzip') compression = 'gzip';
    else if (a === '--protobuf') protocol = 'protobuf';
    else if (a === '--timeout-ms') timeoutMs = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!url || counters.length === 0) throw new Error('usage: otlp-send.ts --url URL --counter NAME=VALUE[,k=v...] [--gzip] [--protobuf] [--timeout-ms MS]');
  await exportOnce({ url, counters, compression, protocol, timeoutMs });
}

const entry = process.argv[1];
let isMain = false;
try {
  isMain = entry !== undefined && pathToFileURL(realpathSync(entry)).href === import.meta.url;
} catch {
  isMain = false;
}
if (isMain) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`otlp-send: ${(error as Error).message}\n`);
      process.exit(1);
    },
  );
}
