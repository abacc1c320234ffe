/**
 * One reading: dump -> parse -> directions -> attribution -> monotonic totals,
 * for each source (the IPv4 and IPv6 tables). A source that fails leaves its
 * totals as they were; the others still count.
 */
import { createReadStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Accumulator } from './attribution/accumulator.js';
import { attributeRules, type Attribution } from './attribution/attribute.js';
import type { MarkMap } from './attribution/mark-map.js';
import { MarkmeterError } from './errors.js';
import { resolveChainDirections, type DirectionRoots } from './mangle/chains.js';
import { readTableDump, type CommandRunner, type RunOptions } from './mangle/dump.js';
import { findTable, IptablesSaveParser, type SaveTable } from './mangle/parse.js';

/** Where one table's dump comes from (`name` is `ipv4` or `ipv6`), parsed as it is read. */
export interface TableSource {
  name: string;
  read(): Promise<SaveTable[]>;
}

export function commandSource(name: string, command: string, table: string, options: RunOptions, runner?: CommandRunner): TableSource {
  return { name, read: () => readTableDump({ command, table }, options, runner) };
}

/** A saved `iptables-save -c` dump (for `snapshot --input`). */
export function fileSource(name: string, path: string): TableSource {
  return {
    name,
    read: async () => {
      const parser = new IptablesSaveParser();
      try {
        for await (const chunk of createReadStream(path, { encoding: 'utf8' })) parser.push(chunk as string);
      } catch (error) {
        if (error instanceof MarkmeterError) throw error;
        throw new MarkmeterError('input', `cannot read the saved dump ${path}: ${(error as Error).message}`, { cause: error });
      }
      return parser.end();
    },
  };
}

export type SourceReport =
  | { source: string; ok: true; durationSeconds: number; rules: number; attribution: Attribution }
  | { source: string; ok: false; durationSeconds: number; error: MarkmeterError };

export interface CollectorOptions {
  table: string;
  roots: DirectionRoots;
}

export class Collector {
  constructor(
    private readonly sources: readonly TableSource[],
    private readonly options: CollectorOptions,
    private readonly accumulator: Accumulator,
    private readonly markMap: () => MarkMap,
  ) {}

  /** Reads every source (in parallel) and adds what it read to the totals. */
  collect(): Promise<SourceReport[]> {
    return Promise.all(this.sources.map((source) => this.collectSource(source)));
  }

  private async collectSource(source: TableSource): Promise<SourceReport> {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const table = findTable(await source.read(), this.options.table);
      const directions = resolveChainDirections(table, this.options.roots);
      const attribution = attributeRules(table, directions, this.markMap());
      this.accumulator.apply(source.name, attribution.readings);
      return { source: source.name, ok: true, durationSeconds: seconds(), rules: table.rules.length, attribution };
    } catch (error) {
      const wrapped =
        error instanceof MarkmeterError
          ? error
          : new MarkmeterError('internal', `reading ${source.name} failed unexpectedly: ${String(error)}`, { cause: error });
      return { source: source.name, ok: false, durationSeconds: seconds(), error: wrapped };
    }
  }
}
