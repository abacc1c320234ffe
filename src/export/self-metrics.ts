/**
 * Registers the self-telemetry and interface instruments on a meter and
 * observes them all from one batch callback (the per-user series are produced
 * apart: see user-series.ts). The callback only reads the latest state: the
 * collection loop runs on its own timer, so a slow iptables-save never stalls
 * an export.
 */
import { ValueType, type Attributes, type BatchObservableResult, type Meter, type Observable } from '@opentelemetry/api';
import type { ShapedTotals, Totals, UserSeries } from '../totals/accumulator.js';
import type { InterfaceTotals } from '../sources/interfaces.js';
import type { Count } from '../shared/count.js';
import {
  ATTR_DIRECTION,
  ATTR_IFACE,
  ATTR_KIND,
  ATTR_REASON,
  ATTR_RESULT,
  ATTR_SOURCE,
  INTERFACE_METRICS,
  SELF_METRICS,
  type MetricSpec,
} from './semconv.js';
import type { SelfStats } from './self-stats.js';

/** What the exports read: the latest state, owned by the agent. */
export interface TelemetryView {
  users(): Iterable<UserSeries>;
  unattributed(): Totals;
  /** What shaping classes tied to no user counted (with the TC source). */
  unattributedShaped?(): ShapedTotals;
  /** Which per-user series there are: those of the MARK rules, of the shaping classes (default: the MARK rules'). */
  measures?: { marked: boolean; shaped: boolean };
  interfaces(): Iterable<InterfaceTotals>;
  stats: SelfStats;
}

export function registerInstruments(meter: Meter, view: TelemetryView): void {
  const counter = (m: MetricSpec, valueType = ValueType.INT) =>
    meter.createObservableCounter(m.name, { unit: m.unit, description: m.description, valueType });
  const gauge = (m: MetricSpec, valueType = ValueType.INT) =>
    meter.createObservableGauge(m.name, { unit: m.unit, description: m.description, valueType });

  const iface = { rxPackets: counter(INTERFACE_METRICS.rxPackets), txPackets: counter(INTERFACE_METRICS.txPackets) };
  const self = {
    duration: gauge(SELF_METRICS.collectionDuration, ValueType.DOUBLE),
    success: gauge(SELF_METRICS.collectionSuccess),
    collections: counter(SELF_METRICS.collections),
    errors: counter(SELF_METRICS.collectionErrors),
    rulesParsed: gauge(SELF_METRICS.rulesParsed),
    markRules: gauge(SELF_METRICS.markRules),
    skipped: gauge(SELF_METRICS.skippedRules),
    unattributedPackets: counter(SELF_METRICS.unattributedPackets),
    unattributedBytes: counter(SELF_METRICS.unattributedBytes),
    unattributedTcPackets: counter(SELF_METRICS.unattributedTcPackets),
    unattributedTcDropped: counter(SELF_METRICS.unattributedTcDropped),
    syncs: counter(SELF_METRICS.usersSyncs),
    users: gauge(SELF_METRICS.users),
    usersRefused: gauge(SELF_METRICS.usersRefused),
    exportFailures: counter(SELF_METRICS.exportFailures),
  };

  const observables: Observable[] = [...Object.values(iface), ...Object.values(self)];
  meter.addBatchObservableCallback((result) => {
    const observe = (instrument: Observable, value: Count | number, attributes?: Attributes) =>
      result.observe(instrument, Number(value), attributes);
    for (const t of view.interfaces()) {
      observe(iface.rxPackets, t.rxPackets, { [ATTR_IFACE]: t.iface });
      observe(iface.txPackets, t.txPackets, { [ATTR_IFACE]: t.iface });
    }
    const stats = view.stats;
    for (const [source, s] of stats.sources) {
      observe(self.duration, s.durationSeconds, { [ATTR_SOURCE]: source });
      observe(self.success, s.success ? 1 : 0, { [ATTR_SOURCE]: source });
      observe(self.rulesParsed, s.rulesParsed, { [ATTR_SOURCE]: source });
      observe(self.markRules, s.markRules, { [ATTR_SOURCE]: source });
      observe(self.skipped, s.skippedAmbiguous, { [ATTR_SOURCE]: source, [ATTR_REASON]: 'ambiguous' });
      observe(self.skipped, s.skippedUnreached, { [ATTR_SOURCE]: source, [ATTR_REASON]: 'unreached' });
    }
    observeCounts(result, self.collections, stats.collections, (key) => {
      const [source, outcome] = key.split(' ');
      return { [ATTR_SOURCE]: source!, [ATTR_RESULT]: outcome! };
    });
    observeCounts(result, self.errors, stats.collectionErrors, (kind) => ({ [ATTR_KIND]: kind }));
    observeCounts(result, self.syncs, stats.usersSyncs, (outcome) => ({ [ATTR_RESULT]: outcome }));
    const unattributed = view.unattributed();
    observe(self.unattributedPackets, unattributed.rxPackets, { [ATTR_DIRECTION]: 'rx' });
    observe(self.unattributedPackets, unattributed.txPackets, { [ATTR_DIRECTION]: 'tx' });
    observe(self.unattributedBytes, unattributed.rxBytes, { [ATTR_DIRECTION]: 'rx' });
    observe(self.unattributedBytes, unattributed.txBytes, { [ATTR_DIRECTION]: 'tx' });
    const shaped = view.measures?.shaped ? view.unattributedShaped?.() : undefined;
    if (shaped) {
      observe(self.unattributedTcPackets, shaped.rxPackets, { [ATTR_DIRECTION]: 'rx' });
      observe(self.unattributedTcPackets, shaped.txPackets, { [ATTR_DIRECTION]: 'tx' });
      observe(self.unattributedTcDropped, shaped.rxDropped, { [ATTR_DIRECTION]: 'rx' });
      observe(self.unattributedTcDropped, shaped.txDropped, { [ATTR_DIRECTION]: 'tx' });
    }
    observe(self.users, stats.usersLoaded);
    observe(self.usersRefused, stats.usersRefused);
    observe(self.exportFailures, stats.exportFailures);
  }, observables);
}

function observeCounts(
  result: BatchObservableResult,
  instrument: Observable,
  counts: Map<string, number>,
  attributes: (key: string) => Attributes,
): void {
  for (const [key, value] of counts) result.observe(instrument, value, attributes(key));
}
