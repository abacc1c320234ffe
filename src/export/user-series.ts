/**
 * The per-user counters, built straight from the accumulator's totals at each
 * export (an OpenTelemetry MetricProducer handed to the readers) instead of
 * being observed through SDK instruments. For 50,000 users the SDK's
 * bookkeeping of 200,000 observed series (hashing attributes, updating maps of
 * accumulations) cost about 2 s of CPU per export, several times the encoding
 * itself; the data is the same cumulative, monotonic sums either way. A user
 * the accumulator no longer holds is simply not produced: removal needs no
 * new MeterProvider, and no SDK cardinality limit folds users into an
 * overflow series.
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
import { ATTR_MARK_ID, ATTR_PEER_IP, ATTR_USER_CODE, ATTR_USER_INTRA_IP, ATTR_USER_NAME, METER_NAME, USER_METRICS, type MetricSpec } from './semconv.js';

export class UserSeriesProducer implements MetricProducer {
  /** Attributes and start time per series owner, made once (owners live as long as their series). */
  private readonly fixed = new WeakMap<SeriesOwner, { attributes: Attributes; startTime: HrTime }>();

  /** `resource` is only for the interface's sake: readers put the SDK's own resource on what they export. */
  constructor(
    private readonly users: () => Iterable<UserSeries>,
    private readonly resource: Resource,
  ) {}

  collect(): Promise<CollectionResult> {
    const endTime = hrTime();
    const rxPackets = sum(USER_METRICS.rxPackets);
    const txPackets = sum(USER_METRICS.txPackets);
    const rxBytes = sum(USER_METRICS.rxBytes);
    const txBytes = sum(USER_METRICS.txBytes);
    for (const series of this.users()) {
      const { attributes, startTime } = this.fixedOf(series);
      const { totals } = series;
      // Numbers: the data model carries doubles or int64, so totals above 2^53 are rounded here (and only here).
      rxPackets.dataPoints.push(point(attributes, startTime, endTime, Number(totals.rxPackets)));
      txPackets.dataPoints.push(point(attributes, startTime, endTime, Number(totals.txPackets)));
      rxBytes.dataPoints.push(point(attributes, startTime, endTime, Number(totals.rxBytes)));
      txBytes.dataPoints.push(point(attributes, startTime, endTime, Number(totals.txBytes)));
    }
    return Promise.resolve({
      resourceMetrics: { resource: this.resource, scopeMetrics: [{ scope: { name: METER_NAME }, metrics: [rxPackets, txPackets, rxBytes, txBytes] }] },
      errors: [],
    });
  }

  private fixedOf(series: UserSeries): { attributes: Attributes; startTime: HrTime } {
    let fixed = this.fixed.get(series.user);
    if (fixed === undefined) {
      const owner = series.user;
      const attributes: Attributes = { [ATTR_USER_CODE]: owner.user_code, [ATTR_USER_INTRA_IP]: owner.user_intra_ip };
      if (owner.user_name !== undefined) attributes[ATTR_USER_NAME] = owner.user_name;
      if (owner.mark_id !== undefined) {
        attributes[ATTR_MARK_ID] = owner.mark_id;
        attributes[ATTR_PEER_IP] = owner.peer_ip ?? '';
      }
      fixed = { attributes, startTime: millisToHrTime(series.since) };
      this.fixed.set(owner, fixed);
    }
    return fixed;
  }
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
