/**
 * The per-user counters, built straight from the accumulator's totals at each
 * export (an OpenTelemetry MetricProducer handed to the readers) instead of
 * being observed through SDK instruments. For 50,000 users the SDK's
 * bookkeeping of 200,000 observed series (hashing attributes, updating maps of
 * accumulations) cost about 2 s of CPU per export, several times the encoding
 * itself; the data is the same cumulative, monotonic sums either way. A user
 * the accumulator no longer holds is simply not produced: removal needs no
 * new MeterProvider, and no SDK cardinality limit folds users into an
 * overflow series. The default http/protobuf push writes the same points
 * without this producer (user-series-protobuf.ts); /metrics and http/json use it.
 */
import { ValueType, type Attributes, type HrTime } from '@opentelemetry/api';
import { hrTime, millisToHrTime } from '@opentelemetry/core';
import {
  AggregationTemporality,
  DataPointType,
  type CollectionResult,
  type DataPoint,
  type MetricProducer,
  type SumMetricData,
} from '@opentelemetry/sdk-metrics';
import type { Resource } from '@opentelemetry/resources';
import type { UserSeries } from '../totals/accumulator.js';
import type { SeriesOwner } from '../attribution/mark-map.js';
import type { Count } from '../shared/count.js';
import { ATTR_MARK_ID, ATTR_PEER_IP, ATTR_USER_CODE, ATTR_USER_INTRA_IP, ATTR_USER_NAME, METER_NAME, TC_METRICS, USER_METRICS, type MetricSpec } from './semconv.js';

/**
 * 2^63: a total at or past it (as a number: 2^63 - 1 rounds to it) does not
 * fit OTLP's int64, so its metric is written as doubles in that export (one
 * value type per metric in the SDK's data model). Doubles are exact up to
 * 2^53, and Prometheus stores every sample as one.
 */
export const INT64_LIMIT = 2 ** 63;

export class UserSeriesProducer implements MetricProducer {
  /** Attributes and start time per series, made once (a series keeps its owner and start). */
  private readonly fixed = new WeakMap<UserSeries, { attributes: Attributes; startTime: HrTime }>();

  /**
   * `resource` is only for the interface's sake: readers put the SDK's own resource on what they export.
   * `measures`: the series of the MARK rules (net_user_*) with the iptables source, those of the
   * shaping classes (net_user_tc_*, for the users a class counted for) with the TC source.
   */
  constructor(
    private readonly users: () => Iterable<UserSeries>,
    private readonly resource: Resource,
    private readonly measures: { marked: boolean; shaped: boolean } = { marked: true, shaped: false },
    /** The end time of the points (a test fixes it). */
    private readonly now: () => HrTime = hrTime,
  ) {}

  collect(): Promise<CollectionResult> {
    const endTime = this.now();
    const marked = Object.fromEntries(Object.entries(USER_METRICS).map(([key, spec]) => [key, sum(spec)])) as Record<keyof typeof USER_METRICS, SumMetricData>;
    const shaped = Object.fromEntries(Object.entries(TC_METRICS).map(([key, spec]) => [key, sum(spec)])) as Record<keyof typeof TC_METRICS, SumMetricData>;
    const pastInt64 = new Set<SumMetricData>();
    for (const series of this.users()) {
      const { attributes, startTime } = this.fixedOf(series);
      // Numbers: the data model carries doubles or int64, so totals above 2^53 are rounded here (and only here).
      const add = (metric: SumMetricData, value: Count) => {
        const number = Number(value);
        // Past int64 the OTLP writers wrap (2^63 would arrive negative): the metric is written as doubles.
        if (number >= INT64_LIMIT) pastInt64.add(metric);
        metric.dataPoints.push(point(attributes, startTime, endTime, number));
      };
      if (this.measures.marked) {
        const { totals } = series;
        add(marked.rxPackets, totals.rxPackets);
        add(marked.txPackets, totals.txPackets);
        add(marked.rxBytes, totals.rxBytes);
        add(marked.txBytes, totals.txBytes);
      }
      const tc = series.shaped;
      if (this.measures.shaped && tc) {
        add(shaped.rxPackets, tc.rxPackets);
        add(shaped.txPackets, tc.txPackets);
        add(shaped.rxBytes, tc.rxBytes);
        add(shaped.txBytes, tc.txBytes);
        add(shaped.rxDropped, tc.rxDropped);
        add(shaped.txDropped, tc.txDropped);
        add(shaped.rxOverlimits, tc.rxOverlimits);
        add(shaped.txOverlimits, tc.txOverlimits);
      }
    }
    const metrics = [...(this.measures.marked ? Object.values(marked) : []), ...(this.measures.shaped ? Object.values(shaped) : [])].map((metric) =>
      pastInt64.has(metric) ? { ...metric, descriptor: { ...metric.descriptor, valueType: ValueType.DOUBLE } } : metric,
    );
    return Promise.resolve({
      resourceMetrics: { resource: this.resource, scopeMetrics: [{ scope: { name: METER_NAME }, metrics }] },
      errors: [],
    });
  }

  private fixedOf(series: UserSeries): { attributes: Attributes; startTime: HrTime } {
    let fixed = this.fixed.get(series);
    if (fixed === undefined) {
      fixed = { attributes: seriesAttributes(series.user), startTime: millisToHrTime(series.since) };
      this.fixed.set(series, fixed);
    }
    return fixed;
  }
}

/** The attributes of a series' points, in the order they are written: the one place they are made. */
export function seriesAttributes(owner: SeriesOwner): Attributes {
  const attributes: Attributes = { [ATTR_USER_CODE]: owner.user_code, [ATTR_USER_INTRA_IP]: owner.user_intra_ip };
  if (owner.user_name !== undefined) attributes[ATTR_USER_NAME] = owner.user_name;
  if (owner.mark_id !== undefined) {
    attributes[ATTR_MARK_ID] = owner.mark_id;
    attributes[ATTR_PEER_IP] = owner.peer_ip ?? '';
  }
  return attributes;
}

function sum(spec: MetricSpec): SumMetricData {
  return {
    descriptor: { name: spec.name, description: spec.description, unit: spec.unit, valueType: ValueType.INT },
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.SUM,
    isMonotonic: true,
    dataPoints: [],
  };
}

function point(attributes: Attributes, startTime: HrTime, endTime: HrTime, value: number): DataPoint<number> {
  return { attributes, startTime, endTime, value };
}
