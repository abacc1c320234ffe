/**
 * The per-user series of the http/protobuf push, written straight to protobuf
 * bytes. At 50,000 users an export is 200,000 points; built as SDK objects and
 * run through the SDK's serializer they cost about 260 ms of CPU per export.
 * Here each series' point is encoded once, when the series first appears
 * (attributes, start time), into one buffer of all series; an export copies
 * that buffer once per metric and writes each point's end time and value at
 * known offsets: no object per point.
 *
 * The SDK's serializer still encodes the SDK's own metrics (self-telemetry);
 * the user series are appended to its request as one more ScopeMetrics of the
 * ResourceMetrics, which protobuf allows for a repeated field. The bytes are
 * those the SDK's serializer writes for the UserSeriesProducer's points (the
 * same field order), which test/unit/user-series-protobuf.test.ts checks.
 *
 * Proto (opentelemetry/proto/collector/metrics/v1, metrics/v1):
 *   ExportMetricsServiceRequest: 1 resource_metrics
 *   ResourceMetrics: 1 resource, 2 scope_metrics (repeated), 3 schema_url
 *   ScopeMetrics: 1 scope (InstrumentationScope: 1 name), 2 metrics (repeated)
 *   Metric: 1 name, 2 description, 3 unit, 7 sum
 *   Sum: 1 data_points (repeated), 2 aggregation_temporality, 3 is_monotonic
 *   NumberDataPoint: 2 start_time_unix_nano, 3 time_unix_nano (fixed64), 6 as_int (sfixed64), 7 attributes
 *   KeyValue: 1 key, 2 value (AnyValue: 1 string, 2 bool, 3 int, 4 double)
 */
import type { AttributeValue, HrTime } from '@opentelemetry/api';
import { hrTime, millisToHrTime } from '@opentelemetry/core';
import { ProtobufMetricsSerializer, type IExportMetricsServiceResponse, type ISerializer } from '@opentelemetry/otlp-transformer';
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { Count } from '../shared/count.js';
import type { ShapedTotals, Totals, UserSeries } from '../totals/accumulator.js';
import { METER_NAME, TC_METRICS, USER_METRICS, type MetricSpec } from './semconv.js';
import { EXPORT_DEFAULT_REQUEST_BYTES } from '../settings.js';
import { INT64_LIMIT, seriesAttributes } from './user-series.js';

/** Wire type 2 (length-delimited), 1 (64-bit), 0 (varint) tags. */
const tag = (field: number, wireType: number) => (field << 3) | wireType;
const REQUEST_RESOURCE_METRICS = tag(1, 2);
const RESOURCE_SCOPE_METRICS = tag(2, 2);
const SCOPE_METRICS_METRIC = tag(2, 2);
const METRIC_SUM = tag(7, 2);
const SUM_DATA_POINT = tag(1, 2);
/** aggregation_temporality CUMULATIVE (2), is_monotonic true. */
const SUM_TRAILER = [tag(2, 0), 2, tag(3, 0), 1];
/** From a point's value back to its end time: the end time's 8 bytes, then the as_int tag, come before the value. */
const TIME_BEFORE_VALUE = 9;
/** as_double (a double, 64-bit): written over a point's as_int tag in a metric past int64; both values take 8 bytes. */
const AS_DOUBLE = tag(4, 1);

/** The metrics in the order they are written (UserSeriesProducer's), by the totals they carry: see writeMarked and writeShaped. */
const MARKED = ['rxPackets', 'txPackets', 'rxBytes', 'txBytes'] as const satisfies readonly (keyof typeof USER_METRICS & keyof Totals)[];
const SHAPED = ['rxPackets', 'txPackets', 'rxBytes', 'txBytes', 'rxDropped', 'txDropped', 'rxOverlimits', 'txOverlimits'] as const satisfies readonly (keyof typeof TC_METRICS &
  keyof ShapedTotals)[];

const utf8 = new TextEncoder();

/**
 * The series of a push as they were when it began, and their points' bytes:
 * point i is slab[starts[i], starts[i + 1]), its value at values[i]. Never
 * changed once made (the encoder makes a new one when the series change), so
 * a push still sending its later requests writes what it began with.
 */
interface Lineup {
  readonly order: readonly UserSeries[];
  readonly slab: Buffer;
  readonly starts: Uint32Array;
  readonly values: Uint32Array;
}

/** A push under way: its series, and the first of them its next request writes. */
export class UserSeriesPush {
  next = 0;

  constructor(readonly lineup: Lineup) {}

  /** Whether every series of the push has been written. */
  get done(): boolean {
    return this.next >= this.lineup.order.length;
  }
}

/**
 * Writes the user series into requests. `users` is read when a push begins
 * (the same view the Prometheus reader's producer reads). A series keeps its
 * owner and start for life (see accumulator.ts), so its point's bytes are
 * made once; its totals are read when its request is written.
 *
 * A push of many users goes out as several requests of at most
 * `maxRequestBytes` each (a collector refuses bodies past its limit: 20 MiB
 * by default for OTLP/HTTP), each a whole ExportMetricsServiceRequest with
 * the resource; see UserSeriesEncoder.appendTo and the exporter in pipeline.ts.
 */
export class UserSeriesEncoder {
  private lineup: Lineup = { order: [], slab: Buffer.alloc(0), starts: new Uint32Array(1), values: new Uint32Array(0) };
  /** The next push's series, reused while they are those of the last one. */
  private next: UserSeries[] = [];
  /** Point i's offset in a shaped metric's points (users without shaped totals have none: -1). */
  private shapedAt = new Int32Array(0);
  /**
   * The last request's buffer, written again by the next one when no request
   * is under way any more: a new buffer per request was memory outside V8's
   * heap that V8 counts toward its next full collection.
   */
  private spare: Buffer | undefined;
  /** Requests handed out and not yet ended (see began/ended): their buffers are not to be written. */
  private underWay = 0;
  /** The push whose request is being serialized (set by the exporter around the serializer's call). */
  writing: UserSeriesPush | undefined;
  private readonly scope = scopeBytes(METER_NAME);
  private readonly marked = MARKED.map((key) => metricHead(USER_METRICS[key]));
  private readonly shaped = SHAPED.map((key) => metricHead(TC_METRICS[key]));

  constructor(
    private readonly users: () => Iterable<UserSeries>,
    private readonly measures: { marked: boolean; shaped: boolean } = { marked: true, shaped: false },
    /** The end time of the points (a test fixes it). */
    private readonly now: () => HrTime = hrTime,
    /** The most bytes of one request; a request holds at least one series whatever its size. */
    private readonly maxRequestBytes = EXPORT_DEFAULT_REQUEST_BYTES,
  ) {}

  /** A push of the series as they are now: each request serialized for it writes the next of them (see appendTo). */
  beginPush(): UserSeriesPush {
    this.lineUp();
    return new UserSeriesPush(this.lineup);
  }

  /**
   * A request of the SDK's serializer (one ResourceMetrics) with user series
   * appended to its ResourceMetrics: those of `push` from its next one, as many
   * as fit in maxRequestBytes (at least one); without a push, every series
   * as they are now, in one request. Throws on any other layout.
   */
  appendTo(request: Uint8Array, push?: UserSeriesPush): Buffer {
    const { length: resourceLength, end: headerEnd } = readLength(request, 1);
    if (request[0] !== REQUEST_RESOURCE_METRICS || headerEnd + resourceLength !== request.length) {
      throw new Error('the SDK serializer wrote an ExportMetricsServiceRequest other than one ResourceMetrics: the user series cannot be appended');
    }
    const whole = push === undefined;
    push ??= this.beginPush();
    const { order, slab, starts, values } = push.lineup;
    const from = push.next;
    const to = whole ? order.length : this.fits(push, request.length);
    push.next = to;
    const stamped = stamp(slab, values, from, to, this.now());
    const { marked, shaped } = this.measures;
    const markedPoints = starts[to]! - starts[from]!;
    const shapedPoints = shaped ? this.placeShaped(push.lineup, from, to) : 0;
    const metricLength = (head: Buffer, points: number) => head.length + 1 + varintSize(points + SUM_TRAILER.length) + points + SUM_TRAILER.length;
    let scopeLength = this.scope.length;
    const add = (head: Buffer, points: number) => {
      const length = metricLength(head, points);
      scopeLength += 1 + varintSize(length) + length;
    };
    if (marked) for (const head of this.marked) add(head, markedPoints);
    if (shaped) for (const head of this.shaped) add(head, shapedPoints);
    const length = resourceLength + 1 + varintSize(scopeLength) + scopeLength;

    const out = this.buffer(1 + varintSize(length) + length);
    let pos = 0;
    out[pos++] = REQUEST_RESOURCE_METRICS;
    pos = writeVarint(out, pos, length);
    out.set(request.subarray(headerEnd), pos);
    pos += resourceLength;
    out[pos++] = RESOURCE_SCOPE_METRICS;
    pos = writeVarint(out, pos, scopeLength);
    pos += this.scope.copy(out, pos);
    const begin = (head: Buffer, points: number) => {
      out[pos++] = SCOPE_METRICS_METRIC;
      pos = writeVarint(out, pos, metricLength(head, points));
      pos += head.copy(out, pos);
      out[pos++] = METRIC_SUM;
      pos = writeVarint(out, pos, points + SUM_TRAILER.length);
      return pos;
    };
    const end = () => {
      for (const byte of SUM_TRAILER) out[pos++] = byte;
    };
    // Each metric: the points' bytes as cached, then their values written in place (at: where the
    // metric's points begin, less the part's first point, so that at + values[i] is point i's value).
    const view = new DataView(out.buffer, out.byteOffset, out.length);
    const part = order.slice(from, to);
    if (marked) {
      const at = this.marked.map((head) => {
        const start = begin(head, markedPoints);
        pos += stamped.copy(out, pos, starts[from]!, starts[to]!);
        end();
        return start - starts[from]!;
      });
      const doubles = MARKED.map((key) => part.some((series) => Number(series.totals[key]) >= INT64_LIMIT));
      writeMarked(view, at, order, values, from, to, doubles);
    }
    if (shaped) {
      const at = this.shaped.map((head) => {
        const start = begin(head, shapedPoints);
        pos = this.copyShaped(stamped, starts, from, to, out, pos);
        end();
        return start;
      });
      const doubles = SHAPED.map((key) => part.some(({ shaped }) => shaped !== undefined && Number(shaped[key]) >= INT64_LIMIT));
      writeShaped(view, at, order, values, starts, this.shapedAt, from, to, doubles);
    }
    if (pos !== out.length) throw new Error(`user series protobuf: wrote ${pos} bytes of ${out.length}`);
    return out;
  }

  /** Where the push's next request ends: as many series from push.next as fit, at least one (none when all are written). */
  private fits(push: UserSeriesPush, requestBytes: number): number {
    const { order, starts } = push.lineup;
    const { marked, shaped } = this.measures;
    // What a request holds besides the points: the SDK's request, the scope, each metric's head and
    // framing (lengths counted at their longest, five bytes).
    let room = this.maxRequestBytes - requestBytes - 2 * 6 - this.scope.length;
    if (marked) for (const head of this.marked) room -= head.length + 2 * 6 + SUM_TRAILER.length;
    if (shaped) for (const head of this.shaped) room -= head.length + 2 * 6 + SUM_TRAILER.length;
    let to = push.next;
    while (to < order.length) {
      const point = starts[to + 1]! - starts[to]!;
      const bytes = (marked ? MARKED.length * point : 0) + (shaped && order[to]!.shaped !== undefined ? SHAPED.length * point : 0);
      if (bytes > room && to > push.next) break;
      room -= bytes;
      to++;
    }
    return to;
  }

  /**
   * A request is being made (`began`) or its sending has ended, sent or not
   * (`ended`). Told by the exporter (see pipeline.ts): the buffer of a
   * request is written again only when it is the only one under way.
   */
  began(): void {
    this.underWay += 1;
  }

  ended(): void {
    this.underWay = Math.max(0, this.underWay - 1);
  }

  /** The buffer of a request of `size` bytes: the spare one when the request being made is the only one under way. */
  private buffer(size: number): Buffer {
    if (this.underWay !== 1) {
      // Not told of requests, or others under way (one may still be sending the spare): a buffer of its own, and the spare is given up.
      this.spare = undefined;
      return Buffer.allocUnsafe(size);
    }
    // Made anew when too small, or four times too large (the users went down: their memory is given back).
    if (this.spare === undefined || this.spare.length < size || size < this.spare.length >> 2) this.spare = Buffer.allocUnsafe(size + (size >> 4));
    return this.spare.subarray(0, size);
  }

  /** Makes `lineup` that of the current series (made anew only when the series changed). */
  private lineUp(): void {
    const { next } = this;
    const { order } = this.lineup;
    let n = 0;
    let same = true;
    for (const series of this.users()) {
      if (same && order[n] !== series) same = false;
      next[n++] = series;
    }
    next.length = n;
    if (same && n === order.length) return;
    this.lineup = this.rebuild(next);
    // The lineup keeps `next`; a push may still be writing from it.
    this.next = [];
  }

  /** The lineup of `next`: points of series already known are copied, new ones encoded. */
  private rebuild(next: UserSeries[]): Lineup {
    const old = this.lineup;
    const known = new Map<UserSeries, number>();
    old.order.forEach((series, i) => known.set(series, i));
    const n = next.length;
    const starts = new Uint32Array(n + 1);
    const values = new Uint32Array(n);
    const slab = new Slab(old.slab.length + 64);
    for (let i = 0; i < n; i++) {
      const series = next[i]!;
      const j = known.get(series);
      starts[i] = slab.pos;
      if (j === undefined) {
        values[i] = slab.point(series);
      } else {
        values[i] = slab.pos + old.values[j]! - old.starts[j]!;
        slab.copy(old.slab, old.starts[j]!, old.starts[j + 1]!);
      }
    }
    starts[n] = slab.pos;
    if (this.shapedAt.length < n) this.shapedAt = new Int32Array(n);
    return { order: next, slab: slab.finish(), starts, values };
  }

  /** Places the points of series [from, to) with shaped totals one after another; returns their bytes. */
  private placeShaped({ order, starts }: Lineup, from: number, to: number): number {
    const { shapedAt } = this;
    let length = 0;
    for (let i = from; i < to; i++) {
      if (order[i]!.shaped === undefined) {
        shapedAt[i - from] = -1;
      } else {
        shapedAt[i - from] = length;
        length += starts[i + 1]! - starts[i]!;
      }
    }
    return length;
  }

  /** Copies the points placed by placeShaped, a run of neighbours at a time. */
  private copyShaped(slab: Buffer, starts: Uint32Array, from: number, to: number, out: Buffer, pos: number): number {
    const { shapedAt } = this;
    for (let i = from; i < to; ) {
      if (shapedAt[i - from]! < 0) {
        i++;
        continue;
      }
      const run = i;
      while (i < to && shapedAt[i - from]! >= 0) i++;
      pos += slab.copy(out, pos, starts[run]!, starts[i]!);
    }
    return pos;
  }
}

/**
 * Writes the end time of points [from, to) into the slab, in place: a
 * request copies them at once, so a later request (of this push or the next)
 * writing its own time does not change what this one sent.
 */
function stamp(slab: Buffer, values: Uint32Array, from: number, to: number, time: HrTime): Buffer {
  const [low, high] = hrTimeFixed64(time);
  const view = new DataView(slab.buffer, slab.byteOffset, slab.length);
  for (let i = from; i < to; i++) {
    const at = values[i]! - TIME_BEFORE_VALUE;
    view.setUint32(at, low, true);
    view.setUint32(at + 4, high, true);
  }
  return slab;
}

/**
 * The http/protobuf serializer: the SDK's for what the SDK collected, plus the
 * user series (the next of the push the encoder is writing, else all of them).
 */
export function userSeriesSerializer(encoder: UserSeriesEncoder): ISerializer<ResourceMetrics, IExportMetricsServiceResponse> {
  return {
    serializeRequest(resourceMetrics) {
      const request = ProtobufMetricsSerializer.serializeRequest(resourceMetrics);
      return request && encoder.appendTo(request, encoder.writing);
    },
    deserializeResponse: (data) => ProtobufMetricsSerializer.deserializeResponse(data),
  };
}

/** The values of the MARK rules' metrics for series [from, to) (at: see appendTo), in MARKED's order. */
function writeMarked(view: DataView, at: number[], order: readonly UserSeries[], values: Uint32Array, from: number, to: number, doubles: boolean[]): void {
  const [rxPackets, txPackets, rxBytes, txBytes] = at as [number, number, number, number];
  const [d0, d1, d2, d3] = doubles as [boolean, boolean, boolean, boolean];
  for (let i = from; i < to; i++) {
    const totals = order[i]!.totals;
    const value = values[i]!;
    writeValue(view, rxPackets + value, totals.rxPackets, d0);
    writeValue(view, txPackets + value, totals.txPackets, d1);
    writeValue(view, rxBytes + value, totals.rxBytes, d2);
    writeValue(view, txBytes + value, totals.txBytes, d3);
  }
}

/** The values of the shaper classes' metrics, in SHAPED's order, for the series of [from, to) that have them (placed by placeShaped). */
function writeShaped(
  view: DataView,
  at: number[],
  order: readonly UserSeries[],
  values: Uint32Array,
  starts: Uint32Array,
  shapedAt: Int32Array,
  from: number,
  to: number,
  doubles: boolean[],
): void {
  const [rxPackets, txPackets, rxBytes, txBytes, rxDropped, txDropped, rxOverlimits, txOverlimits] = at as [number, number, number, number, number, number, number, number];
  const [d0, d1, d2, d3, d4, d5, d6, d7] = doubles as [boolean, boolean, boolean, boolean, boolean, boolean, boolean, boolean];
  for (let i = from; i < to; i++) {
    const totals = order[i]!.shaped;
    if (totals === undefined) continue;
    const value = shapedAt[i - from]! + values[i]! - starts[i]!;
    writeValue(view, rxPackets + value, totals.rxPackets, d0);
    writeValue(view, txPackets + value, totals.txPackets, d1);
    writeValue(view, rxBytes + value, totals.rxBytes, d2);
    writeValue(view, txBytes + value, totals.txBytes, d3);
    writeValue(view, rxDropped + value, totals.rxDropped, d4);
    writeValue(view, txDropped + value, totals.txDropped, d5);
    writeValue(view, rxOverlimits + value, totals.rxOverlimits, d6);
    writeValue(view, txOverlimits + value, totals.txOverlimits, d7);
  }
}

/**
 * as_int of a value as the SDK's writer writes Number(value) (sfixed64):
 * totals above 2^53 are rounded here, as in UserSeriesProducer.
 */
function writeValue(view: DataView, at: number, count: Count, asDouble: boolean): void {
  const value = Number(count);
  if (asDouble) {
    view.setUint8(at - 1, AS_DOUBLE);
    view.setFloat64(at, value, true);
    return;
  }
  let low: number;
  let high: number;
  if (value >= 0) {
    low = value >>> 0;
    high = (value / 0x100000000) >>> 0;
  } else {
    const abs = -value;
    low = (~(abs >>> 0) + 1) >>> 0;
    high = ~((abs / 0x100000000) >>> 0) >>> 0;
    if (low === 0) high = (high + 1) >>> 0;
  }
  view.setUint32(at, low, true);
  view.setUint32(at + 4, high, true);
}

/** An HrTime as fixed64 nanoseconds [low, high], as the SDK's writeHrTimeAsFixed64 computes it. */
function hrTimeFixed64([seconds, nanos]: HrTime): [number, number] {
  const lower = (seconds & 0xffff) * 1e9;
  const upper = ((seconds / 0x10000) >>> 0) * 1e9;
  const low = (lower >>> 0) + (((upper & 0xffff) * 0x10000) >>> 0) + nanos;
  return [low >>> 0, (Math.floor(lower / 0x100000000) + ((upper / 0x10000) >>> 0) + Math.floor(low / 0x100000000)) >>> 0];
}

/** A growing buffer of encoded points. */
class Slab {
  pos = 0;
  private buf: Buffer;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private room(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + bytes));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  copy(from: Buffer, start: number, end: number): void {
    this.room(end - start);
    this.pos += from.copy(this.buf, this.pos, start, end);
  }

  /** Encodes one series' point (end time and value left for each request); returns where its value goes. */
  point(series: UserSeries): number {
    const attributes = seriesAttributes(series.user);
    let attributesLength = 0;
    for (const key in attributes) attributesLength += keyValueSize(key, attributes[key]);
    const length = 3 * 9 + attributesLength;
    this.room(1 + 5 + length);
    const { buf } = this;
    buf[this.pos++] = SUM_DATA_POINT;
    this.pos = writeVarint(buf, this.pos, length);
    const [low, high] = hrTimeFixed64(millisToHrTime(series.since));
    buf[this.pos++] = tag(2, 1);
    this.pos = buf.writeUInt32LE(low, this.pos);
    this.pos = buf.writeUInt32LE(high, this.pos);
    buf[this.pos++] = tag(3, 1);
    this.pos += 8;
    buf[this.pos++] = tag(6, 1);
    const value = this.pos;
    this.pos += 8;
    for (const key in attributes) this.keyValue(key, attributes[key]);
    return value;
  }

  /** One attribute, as the NumberDataPoint's field 7 (room made by point). */
  private keyValue(key: string, value: AttributeValue | undefined): void {
    const { buf } = this;
    const other = typeof value === 'string' ? undefined : anyValue(value);
    const anyLength = other?.length ?? stringFieldSize(value as string);
    buf[this.pos++] = tag(7, 2);
    this.pos = writeVarint(buf, this.pos, stringFieldSize(key) + 1 + varintSize(anyLength) + anyLength);
    this.string(1, key);
    buf[this.pos++] = tag(2, 2);
    this.pos = writeVarint(buf, this.pos, anyLength);
    if (other) {
      buf.set(other, this.pos);
      this.pos += other.length;
    } else {
      this.string(1, value as string);
    }
  }

  /** A string field (UTF-8, as TextEncoder writes it: a lone surrogate becomes U+FFFD). */
  private string(field: number, text: string): void {
    const { buf } = this;
    buf[this.pos++] = tag(field, 2);
    this.pos = writeVarint(buf, this.pos, Buffer.byteLength(text));
    this.pos += buf.write(text, this.pos);
  }

  /** The points, in a buffer of their size. */
  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

/** The bytes of one attribute as the NumberDataPoint's field 7. */
function keyValueSize(key: string, value: AttributeValue | undefined): number {
  const anyLength = typeof value === 'string' ? stringFieldSize(value) : anyValue(value).length;
  const length = stringFieldSize(key) + 1 + varintSize(anyLength) + anyLength;
  return 1 + varintSize(length) + length;
}

function stringFieldSize(text: string): number {
  const bytes = Buffer.byteLength(text);
  return 1 + varintSize(bytes) + bytes;
}

/** AnyValue as the SDK writes a boolean or number attribute (strings: Slab.keyValue). */
function anyValue(value: AttributeValue | undefined): Uint8Array {
  if (typeof value === 'boolean') return Uint8Array.of(tag(2, 0), value ? 1 : 0);
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) return Buffer.concat([Uint8Array.of(tag(3, 0)), varint64(BigInt.asUintN(64, BigInt(value)))]);
    const double = Buffer.alloc(9);
    double[0] = tag(4, 1);
    double.writeDoubleLE(value, 1);
    return double;
  }
  throw new Error(`a series attribute of type ${typeof value}: only strings, booleans and numbers are written`);
}

/** A length-delimited field. */
function field(number: number, bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(1 + varintSize(bytes.length) + bytes.length);
  out[0] = tag(number, 2);
  out.set(bytes, writeVarint(out, 1, bytes.length));
  return out;
}

function scopeBytes(name: string): Buffer {
  return field(1, field(1, utf8.encode(name)));
}

/** A metric's name, description and unit, each left out when empty (as the SDK does). */
function metricHead(spec: MetricSpec): Buffer {
  const parts = [field(1, utf8.encode(spec.name))];
  if (spec.description) parts.push(field(2, utf8.encode(spec.description)));
  if (spec.unit) parts.push(field(3, utf8.encode(spec.unit)));
  return Buffer.concat(parts);
}

function varint64(value: bigint): Uint8Array {
  const bytes: number[] = [];
  for (; value > 0x7fn; value >>= 7n) bytes.push(Number(value & 0x7fn) | 0x80);
  bytes.push(Number(value));
  return Uint8Array.from(bytes);
}

/** Bytes of a varint below 2^32. */
function varintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;
}

/** Writes a varint below 2^32; returns the position after it. */
function writeVarint(buf: Uint8Array, pos: number, value: number): number {
  let v = value >>> 0;
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

/** A length varint at `pos` (below 2^32) and the position after it. */
function readLength(buf: Uint8Array, pos: number): { length: number; end: number } {
  let length = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    const byte = buf[pos++];
    if (byte === undefined) break;
    length += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return { length, end: pos };
  }
  throw new Error('the SDK serializer wrote a request whose length cannot be read');
}
