/**
 * OTLP/HTTP metric export bodies (ExportMetricsServiceRequest) -> their number data points, exact.
 * Protobuf (opentelemetry/proto/metrics/v1/metrics.proto) is decoded into the shape of the JSON
 * encoding, and both are flattened by one walk. Sum and gauge points only.
 *
 * int64 values stay exact: asInt comes out as a decimal string. (The JS exporter writes asInt as a
 * JSON number, protojson as a string; a plain JSON.parse would round a number above 2^53.)
 */

/** One number data point; `value` is a decimal string for asInt, a number for asDouble. */
export interface WirePoint {
  metric: string;
  attributes: Record<string, string>;
  value: string | number;
}

interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
interface KeyValue {
  key: string;
  value?: AnyValue;
}
interface DataPoint {
  attributes?: KeyValue[];
  asInt?: string | number;
  asDouble?: number;
}
interface ExportRequest {
  resourceMetrics?: { scopeMetrics?: { metrics?: { name: string; sum?: { dataPoints?: DataPoint[] }; gauge?: { dataPoints?: DataPoint[] } }[] }[] }[];
}

/** The points of one request body in either encoding; throws on a body that is not OTLP. */
export function decodeExport(body: Uint8Array, encoding: 'json' | 'protobuf'): WirePoint[] {
  // Number literals of int64 fields become strings before JSON.parse can round them.
  const request = (encoding === 'json' ? JSON.parse(Buffer.from(body).toString('utf8').replace(/"(asInt|intValue)"\s*:\s*(-?\d+)/g, '"$1":"$2"')) : fromProtobuf(body)) as ExportRequest;
  const attributes = (kvs: KeyValue[] = []) => Object.fromEntries(kvs.map(({ key, value: v = {} }) => [key, String(v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue ?? '')]));
  const points: WirePoint[] = [];
  for (const rm of request.resourceMetrics ?? []) {
    for (const sm of rm.scopeMetrics ?? []) {
      for (const metric of sm.metrics ?? []) {
        for (const dp of (metric.sum ?? metric.gauge)?.dataPoints ?? []) {
          const value = dp.asInt !== undefined ? String(dp.asInt) : dp.asDouble;
          if (value === undefined) throw new Error(`${metric.name}: a data point without asInt or asDouble`);
          points.push({ metric: metric.name, attributes: attributes(dp.attributes), value });
        }
      }
    }
  }
  return points;
}

type Fields = Map<number, (Uint8Array | bigint)[]>;

/** Splits one message into its fields: varints and fixed64/32 as bigint, length-delimited as bytes. */
function fields(buf: Uint8Array): Fields {
  const out: Fields = new Map();
  let i = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (i >= buf.length) throw new Error('truncated protobuf varint');
      const byte = buf[i++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
    }
  };
  const fixed = (bytes: 4 | 8): bigint => {
    if (i + bytes > buf.length) throw new Error('truncated protobuf fixed field');
    const view = new DataView(buf.buffer, buf.byteOffset + i, bytes);
    i += bytes;
    return bytes === 8 ? view.getBigUint64(0, true) : BigInt(view.getUint32(0, true));
  };
  while (i < buf.length) {
    const key = Number(varint());
    let value: Uint8Array | bigint;
    if ((key & 7) === 0) value = varint();
    else if ((key & 7) === 1) value = fixed(8);
    else if ((key & 7) === 5) value = fixed(4);
    else if ((key & 7) === 2) {
      const length = Number(varint());
      if (i + length > buf.length) throw new Error('truncated protobuf field');
      value = buf.subarray(i, (i += length));
    } else throw new Error(`unsupported protobuf wire type ${key & 7}`);
    const list = out.get(key >>> 3);
    if (list) list.push(value);
    else out.set(key >>> 3, [value]);
  }
  return out;
}

const messages = (f: Fields, n: number) => (f.get(n) ?? []).filter((v): v is Uint8Array => v instanceof Uint8Array).map(fields);
const text = (f: Fields, n: number) => {
  const v = f.get(n)?.[0];
  return v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : '';
};
const scalar = (f: Fields, n: number) => {
  const v = f.get(n)?.at(-1);
  return typeof v === 'bigint' ? v : undefined;
};
const double = (bits: bigint) => new DataView(new BigUint64Array([bits]).buffer).getFloat64(0, true);
const int64 = (bits: bigint) => BigInt.asIntN(64, bits).toString();

/** AnyValue: string 1, bool 2, int 3, double 4 (arrays, kvlists and bytes read as ''). */
function anyValue(f: Fields | undefined): AnyValue {
  if (f?.has(1)) return { stringValue: text(f, 1) };
  if (f?.has(2)) return { boolValue: scalar(f, 2) === 1n };
  if (f?.has(3)) return { intValue: int64(scalar(f, 3) ?? 0n) };
  if (f?.has(4)) return { doubleValue: double(scalar(f, 4) ?? 0n) };
  return {};
}

/** NumberDataPoint: attributes 7, as_double 4, as_int 6 (sfixed64). */
function dataPoint(f: Fields): DataPoint {
  const asInt = scalar(f, 6);
  const asDouble = scalar(f, 4);
  return {
    attributes: messages(f, 7).map((kv) => ({ key: text(kv, 1), value: anyValue(messages(kv, 2)[0]) })),
    ...(asInt !== undefined ? { asInt: int64(asInt) } : {}),
    ...(asDouble !== undefined ? { asDouble: double(asDouble) } : {}),
  };
}

/** request: resource_metrics 1 -> scope_metrics 2 -> metrics 2 -> name 1, gauge 5 / sum 7 -> data_points 1. */
function fromProtobuf(buf: Uint8Array): ExportRequest {
  return {
    resourceMetrics: messages(fields(buf), 1).map((rm) => ({
      scopeMetrics: messages(rm, 2).map((sm) => ({
        metrics: messages(sm, 2).map((m) => {
          const points = { dataPoints: messages(messages(m, 7)[0] ?? messages(m, 5)[0] ?? new Map(), 1).map(dataPoint) };
          return { name: text(m, 1), ...(m.has(7) ? { sum: points } : { gauge: points }) };
        }),
      })),
    })),
  };
}

/** One metric of a protobuf body with its descriptor, and its points with start and time (ns, decimal) and typed attributes. */
export interface WireMetric {
  scope: string;
  name: string;
  description: string;
  unit: string;
  kind: 'sum' | 'gauge';
  /** Sum only: aggregation_temporality (2: cumulative) and is_monotonic. */
  temporality?: string;
  monotonic?: boolean;
  points: { attributes: Record<string, AnyValue>; start: string; time: string; value: string | number }[];
}

/** Every metric of a protobuf body, with what decodeExport leaves out: for comparing two encoders of the same request. */
export function decodeMetrics(body: Uint8Array): WireMetric[] {
  const out: WireMetric[] = [];
  for (const rm of messages(fields(body), 1)) {
    for (const sm of messages(rm, 2)) {
      for (const m of messages(sm, 2)) {
        const sum = messages(m, 7)[0];
        const data = sum ?? messages(m, 5)[0] ?? new Map();
        out.push({
          scope: text(messages(sm, 1)[0] ?? new Map(), 1),
          name: text(m, 1),
          description: text(m, 2),
          unit: text(m, 3),
          kind: sum ? 'sum' : 'gauge',
          ...(sum ? { temporality: String(scalar(sum, 2) ?? 0n), monotonic: scalar(sum, 3) === 1n } : {}),
          points: messages(data, 1).map((f) => {
            const point = dataPoint(f);
            const attributes = Object.fromEntries((point.attributes ?? []).map(({ key, value }) => [key, value ?? {}]));
            return { attributes, start: String(scalar(f, 2) ?? 0n), time: String(scalar(f, 3) ?? 0n), value: point.asInt ?? point.asDouble ?? '' };
          }),
        });
      }
    }
  }
  return out;
}
