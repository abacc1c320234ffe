/**
 * One collection: every source read once (in parallel), each reading's
 * increases added to the monotonic totals, each source timed and its failure
 * kept as a report. A source that fails leaves its totals and its own memory
 * as they were; the others still count.
 */
import { performance } from 'node:perf_hooks';
import type { MarkMap } from '../attribution/mark-map.js';
import { MarkmeterError } from '../errors.js';
import type { Accumulator } from '../totals/accumulator.js';
import type { ReadingReport, Source } from './source.js';

export type SourceReport =
  | ({ source: string; ok: true; durationSeconds: number } & ReadingReport)
  | { source: string; ok: false; durationSeconds: number; error: MarkmeterError };

export class Collector {
  constructor(
    private readonly sources: readonly Source[],
    private readonly accumulator: Accumulator,
    private readonly markMap: () => MarkMap,
  ) {}

  /** Reads every source (in parallel) and adds what it read to the totals. */
  collect(): Promise<SourceReport[]> {
    return Promise.all(this.sources.map((source) => this.collectSource(source)));
  }

  private async collectSource(source: Source): Promise<SourceReport> {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const map = this.markMap();
      const report = await source.read(map, this.accumulator.sinkFor(map, source.measures));
      return { source: source.name, ok: true, durationSeconds: seconds(), ...report };
    } catch (error) {
      const wrapped =
        error instanceof MarkmeterError
          ? error
          : new MarkmeterError('internal', `reading ${source.name} failed unexpectedly: ${String(error)}`, { cause: error });
      return { source: source.name, ok: false, durationSeconds: seconds(), error: wrapped };
    }
  }
}
