/**
 * Test helper: decodes an OTLP ExportMetricsServiceRequest in protobuf into
 * the shape of its OTLP JSON encoding (only the fields the tests read:
 * metric names, Sum/Gauge data points, string attributes, asInt/asDouble), so
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

function dataPoint(f: Fields) {
  const attributes = messages(f, 7).map((kv) => ({ key: text(kv.get(1)?.[0]), value: { stringValue: text(messages(kv, 2)[0]?.get(1)?.[0]) } }));
  const asInt = f.get(6)?.[0];
  const asDouble = f.get(4)?.[0];
  return {
    attributes,
    ...(typeof asInt === 'bigint' ? { asInt: BigInt.asIntN(64, asInt).toString() } : {}),
    ...(typeof asDouble === 'bigint' ? { asDouble: new DataView(new BigUint64Array([asDouble]).buffer).getFloat64(0, true) } : {}),
  };
}

export function decodeMetricsRequest(buf: Uint8Array): unknown {
  return {
    resourceMetrics: messages(fields(buf), 1).map((rm) => ({
      scopeMetrics: messages(rm, 2).map((sm) => ({
        metrics: messages(sm, 2).map((m) => {
          const sum = messages(m, 7)[0];
          const gauge = messages(m, 5)[0];
          return {
            name: text(m.get(1)?.[0]),
            ...(sum ? { sum: { dataPoints: messages(sum, 1).map(dataPoint) } } : {}),
            ...(gauge ? { gauge: { dataPoints: messages(gauge, 1).map(dataPoint) } } : {}),
          };
        }),
      })),
    })),
  };
}
