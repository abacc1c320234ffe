/**
 * Test helper: decodes an OTLP ExportMetricsServiceRequest in protobuf into
 * the shape of its OTLP JSON encoding (resource and data point attributes of
 * any type, scope, metric name/description/unit, Sum (temporality,
 * monotonic) and Gauge data points with timestamps and asInt/asDouble), so
 * one receiver serves both export protocols. Wire format per
 * opentelemetry/proto/metrics/v1/metrics.proto.
 */

type Fields = Map<number, (Uint8Array | bigint)[]>;

/** Splits one message into its fields: varints and fixed64 as bigint, length-delimited as bytes. */
function fields(buf: Uint8Array): Fields {
  const out: Fields = new Map();
  let i = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buf[i++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const field = key >>> 3;
    let value: Uint8Array | bigint;
    switch (key & 7) {
      case 0:
        value = varint();
        break;
      case 1:
        value = new DataView(buf.buffer, buf.byteOffset + i, 8).getBigUint64(0, true);
        i += 8;
        break;
      case 2: {
        const length = Number(varint());
        value = buf.subarray(i, i + length);
        i += length;
        break;
      }
      case 5:
        value = BigInt(new DataView(buf.buffer, buf.byteOffset + i, 4).getUint32(0, true));
        i += 4;
        break;
      default:
        throw new Error(`unsupported protobuf wire type ${key & 7}`);
    }
    const list = out.get(field);
    if (list) list.push(value);
    else out.set(field, [value]);
  }
  return out;
}

const text = (bytes: Uint8Array | bigint | undefined) => (bytes instanceof Uint8Array ? new TextDecoder().decode(bytes) : '');
const messages = (f: Fields, n: number) => (f.get(n) ?? []).filter((v): v is Uint8Array => v instanceof Uint8Array).map(fields);
const scalar = (f: Fields, n: number) => {
  const v = f.get(n)?.at(-1);
  return typeof v === 'bigint' ? v : undefined;
};
const double = (bits: bigint) => new DataView(new BigUint64Array([bits]).buffer).getFloat64(0, true);
/** fixed64 / varint nanoseconds as the decimal string of the JSON encoding. */
const nanos = (f: Fields, n: number) => (scalar(f, n) ?? 0n).toString();

/** AnyValue (string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7) in its JSON shape. */
function anyValue(f: Fields | undefined): Record<string, unknown> {
  if (!f) return {};
  if (f.has(1)) return { stringValue: text(f.get(1)?.[0]) };
  if (f.has(2)) return { boolValue: scalar(f, 2) === 1n };
  if (f.has(3)) return { intValue: BigInt.asIntN(64, scalar(f, 3) ?? 0n).toString() };
  if (f.has(4)) return { doubleValue: double(scalar(f, 4) ?? 0n) };
  if (f.has(5)) return { arrayValue: { values: messages(messages(f, 5)[0] ?? new Map(), 1).map(anyValue) } };
  if (f.has(6)) return { kvlistValue: { values: messages(messages(f, 6)[0] ?? new Map(), 1).map(keyValue) } };
  if (f.has(7)) {
    const b = f.get(7)?.[0];
    return { bytesValue: b instanceof Uint8Array ? Buffer.from(b).toString('base64') : '' };
  }
  return {};
}

const keyValue = (kv: Fields) => ({ key: text(kv.get(1)?.[0]), value: anyValue(messages(kv, 2)[0]) });

/** NumberDataPoint: attributes 7, start_time_unix_nano 2, time_unix_nano 3, as_double 4, as_int 6. */
function dataPoint(f: Fields) {
  const asInt = scalar(f, 6);
  const asDouble = scalar(f, 4);
  return {
    attributes: messages(f, 7).map(keyValue),
    startTimeUnixNano: nanos(f, 2),
    timeUnixNano: nanos(f, 3),
    ...(asInt !== undefined ? { asInt: BigInt.asIntN(64, asInt).toString() } : {}),
    ...(asDouble !== undefined ? { asDouble: double(asDouble) } : {}),
  };
}

/**
 * ExportMetricsServiceRequest (protobuf) -> its OTLP JSON shape, with int64 values (asInt, intValue,
 * timestamps) as exact decimal strings. Sum and Gauge only (Histogram & co. are left out).
 */
export function decodeMetricsRequest(buf: Uint8Array): unknown {
  return {
    resourceMetrics: messages(fields(buf), 1).map((rm) => ({
      resource: { attributes: messages(messages(rm, 1)[0] ?? new Map(), 1).map(keyValue) },
      scopeMetrics: messages(rm, 2).map((sm) => {
        const scope = messages(sm, 1)[0];
        return {
          scope: { name: text(scope?.get(1)?.[0]), version: text(scope?.get(2)?.[0]) },
          metrics: messages(sm, 2).map((m) => {
            const sum = messages(m, 7)[0];
            const gauge = messages(m, 5)[0];
            return {
              name: text(m.get(1)?.[0]),
              description: text(m.get(2)?.[0]),
              unit: text(m.get(3)?.[0]),
              ...(sum
                ? {
                    sum: {
                      dataPoints: messages(sum, 1).map(dataPoint),
                      aggregationTemporality: Number(scalar(sum, 2) ?? 0n),
                      isMonotonic: scalar(sum, 3) === 1n,
                    },
                  }
                : {}),
              ...(gauge ? { gauge: { dataPoints: messages(gauge, 1).map(dataPoint) } } : {}),
            };
          }),
        };
      }),
    })),
  };
}
