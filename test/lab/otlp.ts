/**
 * Pure helpers over OTLP/HTTP JSON metric export bodies (ExportMetricsServiceRequest).
 *
 *   parseOtlpJson(text)                 -> the body, with int64 fields kept exact (as decimal strings)
 *   flattenRequest(bodyOrText)          -> OtlpPoint[]: one per number data point (sum and gauge)
 *   latestPoint(requests, metric, attrs?, {subset?}) -> the point of that series in the latest request carrying it
 *   latestValue(requests, metric, attrs?)           -> its exact value (bigint for asInt, number for asDouble)
 *   seriesKeys(requests | points, metric?)          -> sorted `metric{k="v",...}` keys
 *   seriesKey(metric, attrs), toSafeNumber(value), attributesToObject(kvs), int64(v, what)
 *
 * A point carries its value twice: `exact` (bigint for asInt, number for asDouble: compare this one
 * when exactness matters) and `value` (always a number, for `===` against plain numbers; for an asInt
 * beyond 2^53 it is Number(exact), i.e. rounded).
 *
 * `requests` is any list of flattened requests (OtlpPoint[][]), e.g. a receiver's `requests`.
 *
 * What @opentelemetry/exporter-metrics-otlp-http 0.223.0 with sdk-metrics 2.12.0 really sends
 * (seen by exporting an ObservableCounter {valueType: INT}, an ObservableGauge DOUBLE and an
 * ObservableUpDownCounter INT to a local receiver):
 *
 *   POST /v1/metrics, content-type: application/json, user-agent OTel-OTLP-Exporter-JavaScript/0.223.0,
 *   transfer-encoding: chunked (no content-length); with compression 'gzip' also content-encoding: gzip.
 *   {"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"unknown_service:node"}},...],
 *                        "droppedAttributesCount":0},
 *     "scopeMetrics":[{"scope":{"name":"shape","version":"1.0"},
 *       "metrics":[{"name":"c_int","description":"d","unit":"By",
 *         "sum":{"aggregationTemporality":2,"isMonotonic":true,
 *           "dataPoints":[{"attributes":[{"key":"user","value":{"stringValue":"a"}},{"key":"n","value":{"intValue":3}}],
 *                          "startTimeUnixNano":"1795923374975000000","timeUnixNano":"1795923374975000000","asInt":5}]}},
 *        {"name":"g_dbl","description":"","unit":"","gauge":{"dataPoints":[{"attributes":[],...,"asDouble":1.5}]}},
 *        {"name":"ud",...,"sum":{"aggregationTemporality":2,"isMonotonic":false,"dataPoints":[{...,"asInt":-3}]}}]}]}]}
 *
 * Surprises:
 *  - `asInt` (and `intValue` of attributes) is a JSON NUMBER, not the string protojson prescribes for
 *    int64; the SDK keeps values as JS doubles, so above 2^53 the value was already rounded before it
 *    was sent (2^53+2 arrives as 9007199254740994, 2^53+1 cannot be observed at all). Other producers
 *    (the collector, protojson) send int64 as strings: both are accepted here. A plain JSON.parse of a
 *    number literal above 2^53 rounds it again, so parseOtlpJson keeps those literals as strings.
 *  - `startTimeUnixNano` / `timeUnixNano` ARE strings (decimal nanoseconds).
 *  - `aggregationTemporality` is the enum's number (2 = CUMULATIVE, 1 = DELTA), not its name; the
 *    series of an ObservableCounter is `sum` with isMonotonic true, an ObservableUpDownCounter `sum` with
 *    isMonotonic false, a gauge has no temporality. A data point without attributes has `attributes: []`.
 *  - a MeterProvider's forceFlush() then shutdown() sends TWO requests (shutdown collects and exports
 *    again); shutdown() alone sends exactly one.
 */

/** One number data point of an export request, flattened. */
export interface OtlpPoint {
  metric: string;
  kind: 'sum' | 'gauge';
  unit: string;
  /** For sums: isMonotonic. */
  monotonic?: boolean;
  /** For sums: 1 = DELTA, 2 = CUMULATIVE. */
  temporality?: number;
  /** Attribute values as strings (ints in decimal, bools as 'true'/'false'). */
  attributes: Record<string, string>;
  /** asInt as an exact bigint, asDouble as a number. */
  exact: bigint | number;
  /** The value as a number: exact up to 2^53 (beyond that Number(exact), rounded). */
  value: number;
  startTimeUnixNano: bigint;
  timeUnixNano: bigint;
  resource: Record<string, string>;
  scope: { name: string; version?: string };
}

interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number | string;
  boolValue?: boolean;
  bytesValue?: string;
  arrayValue?: { values?: AnyValue[] };
  kvlistValue?: { values?: KeyValue[] };
}
interface KeyValue {
  key: string;
  value?: AnyValue;
}
interface NumberDataPoint {
  attributes?: KeyValue[];
  startTimeUnixNano?: string | number;
  timeUnixNano?: string | number;
  asInt?: string | number;
  asDouble?: number | string;
}
interface Metric {
  name: string;
  unit?: string;
  sum?: { dataPoints?: NumberDataPoint[]; aggregationTemporality?: number; isMonotonic?: boolean };
  gauge?: { dataPoints?: NumberDataPoint[] };
}
interface ExportRequest {
  resourceMetrics?: {
    resource?: { attributes?: KeyValue[] };
    scopeMetrics?: { scope?: { name?: string; version?: string }; metrics?: Metric[] }[];
  }[];
}

const INT64_KEYS = /(?<=[{,]\s*)"(asInt|intValue|startTimeUnixNano|timeUnixNano)"\s*:\s*(-?\d+)(?=\s*[,}\]])/g;

/**
 * JSON.parse for OTLP bodies that keeps every int64 field (asInt, intValue, *UnixNano) exact: their
 * number literals become decimal strings before parsing. Only keys in a structural position match
 * (never text inside a string value).
 */
export function parseOtlpJson(text: string): unknown {
  return JSON.parse(text.replace(INT64_KEYS, '"$1":"$2"'));
}

/** An int64 field (string or number) as an exact bigint; throws when a number was already rounded. */
export function int64(value: string | number | undefined, what: string, lossy = false): bigint {
  if (value === undefined) return 0n;
  if (typeof value === 'string') {
    if (!/^-?\d+$/.test(value)) throw new Error(`${what}: ${JSON.stringify(value)} is not an int64`);
    return BigInt(value);
  }
  if (!Number.isInteger(value)) throw new Error(`${what}: ${value} is not an integer`);
  if (!lossy && !Number.isSafeInteger(value)) {
    throw new Error(`${what}: ${value} is beyond 2^53 and may have been rounded by JSON.parse: flatten the raw text (parseOtlpJson) instead`);
  }
  return BigInt(value);
}

/** A value as a JS number, but only when that is exact (throws beyond 2^53). */
export function toSafeNumber(value: bigint | number): number {
  if (typeof value === 'number') return value;
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`${value} is not exactly representable as a number`);
  return n;
}

function anyValueToString(v: AnyValue | undefined, what: string, lossy = false): string {
  if (!v) return '';
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return int64(v.intValue, what, lossy).toString();
  if (v.doubleValue !== undefined) return String(Number(v.doubleValue));
  if (v.boolValue !== undefined) return String(v.boolValue);
  if (v.bytesValue !== undefined) return v.bytesValue;
  if (v.arrayValue) return JSON.stringify((v.arrayValue.values ?? []).map((x) => anyValueToString(x, what, lossy)));
  if (v.kvlistValue) return JSON.stringify(attributesToObject(v.kvlistValue.values, what, lossy));
  return '';
}

/** OTLP KeyValue list -> plain object of string values. */
export function attributesToObject(kvs: readonly KeyValue[] | undefined, what = 'attribute', lossy = false): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of kvs ?? []) out[kv.key] = anyValueToString(kv.value, `${what} ${kv.key}`, lossy);
  return out;
}

/**
 * Flattens one export request into its number data points (sum and gauge; histograms and summaries
 * are left out). Pass the raw body text to keep int64 values exact beyond 2^53: given an already
 * parsed object, an int64 NUMBER beyond 2^53 throws (it may have been rounded), unless `lossy`.
 */
export function flattenRequest(bodyOrText: unknown, options: { lossy?: boolean } = {}): OtlpPoint[] {
  const lossy = options.lossy ?? false;
  const body = (typeof bodyOrText === 'string' ? parseOtlpJson(bodyOrText) : bodyOrText) as ExportRequest | null;
  const points: OtlpPoint[] = [];
  for (const rm of body?.resourceMetrics ?? []) {
    const resource = attributesToObject(rm.resource?.attributes, 'resource attribute', lossy);
    for (const sm of rm.scopeMetrics ?? []) {
      const scope = { name: sm.scope?.name ?? '', ...(sm.scope?.version !== undefined ? { version: sm.scope.version } : {}) };
      for (const metric of sm.metrics ?? []) {
        const kind = metric.sum ? 'sum' : metric.gauge ? 'gauge' : undefined;
        if (!kind) continue;
        const data = metric.sum ?? metric.gauge!;
        for (const dp of data.dataPoints ?? []) {
          const what = `${metric.name}`;
          let exact: bigint | number;
          if (dp.asInt !== undefined) exact = int64(dp.asInt, `${what} asInt`, lossy);
          else if (dp.asDouble !== undefined) exact = Number(dp.asDouble);
          else throw new Error(`${what}: data point without asInt or asDouble: ${JSON.stringify(dp)}`);
          points.push({
            metric: metric.name,
            kind,
            unit: metric.unit ?? '',
            ...(metric.sum
              ? { monotonic: metric.sum.isMonotonic ?? false, ...(metric.sum.aggregationTemporality !== undefined ? { temporality: metric.sum.aggregationTemporality } : {}) }
              : {}),
            attributes: attributesToObject(dp.attributes, `${what} attribute`, lossy),
            exact,
            value: Number(exact),
            startTimeUnixNano: int64(dp.startTimeUnixNano, `${what} startTimeUnixNano`, lossy),
            timeUnixNano: int64(dp.timeUnixNano, `${what} timeUnixNano`, lossy),
            resource,
            scope,
          });
        }
      }
    }
  }
  return points;
}

/** True when `actual` equals `wanted` (or, with subset, contains every wanted key/value). */
export function attributesMatch(actual: Record<string, string>, wanted: Record<string, string> | undefined, subset = false): boolean {
  if (!wanted) return true;
  const keys = Object.keys(wanted);
  if (!subset && keys.length !== Object.keys(actual).length) return false;
  return keys.every((k) => actual[k] === wanted[k]);
}

export interface MatchOptions {
  /** Match points whose attributes CONTAIN attrs (default: attributes must be exactly attrs). */
  subset?: boolean;
}

/**
 * The point of the series `metric` + `attrs` in the latest request (by arrival order) that carries it.
 * Without attrs, the last point of that metric in that request.
 */
export function latestPoint(
  requests: Iterable<readonly OtlpPoint[]>,
  metric: string,
  attrs?: Record<string, string>,
  options: MatchOptions = {},
): OtlpPoint | undefined {
  const list = Array.isArray(requests) ? (requests as readonly (readonly OtlpPoint[])[]) : [...requests];
  for (let i = list.length - 1; i >= 0; i--) {
    const points = list[i]!;
    for (let j = points.length - 1; j >= 0; j--) {
      const p = points[j]!;
      if (p.metric === metric && attributesMatch(p.attributes, attrs, options.subset)) return p;
    }
  }
  return undefined;
}

/** The exact value of latestPoint(...): bigint for asInt, number for asDouble. */
export function latestValue(
  requests: Iterable<readonly OtlpPoint[]>,
  metric: string,
  attrs?: Record<string, string>,
  options: MatchOptions = {},
): bigint | number | undefined {
  return latestPoint(requests, metric, attrs, options)?.exact;
}

/** A stable key of a series: `metric{a="1",b="x"}` with sorted attribute keys. */
export function seriesKey(metric: string, attributes: Record<string, string>): string {
  const inner = Object.keys(attributes)
    .sort()
    .map((k) => `${k}=${JSON.stringify(attributes[k])}`)
    .join(',');
  return `${metric}{${inner}}`;
}

/** The sorted distinct series keys of some points or requests (optionally only of one metric). */
export function seriesKeys(pointsOrRequests: Iterable<OtlpPoint | readonly OtlpPoint[]>, metric?: string): string[] {
  const keys = new Set<string>();
  const add = (p: OtlpPoint) => {
    if (metric === undefined || p.metric === metric) keys.add(seriesKey(p.metric, p.attributes));
  };
  for (const item of pointsOrRequests) {
    if (Array.isArray(item)) for (const p of item as readonly OtlpPoint[]) add(p);
    else add(item as OtlpPoint);
  }
  return [...keys].sort();
}
