/**
 * One reading: dump -> parse -> per-rule deltas -> attribution -> monotonic
 * totals, for each source (the IPv4 and IPv6 tables). The parser feeds the
 * reading rule by rule as the save command prints. A source that fails leaves
 * its totals and its rule memory as they were; the others still count.
 */
import { createReadStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { addTo, type Accumulator } from '../totals/accumulator.js';
import type { MarkMap } from '../attribution/mark-map.js';
import { RuleMemory } from '../totals/rule-memory.js';
import { TableReading, type ReadingReport } from './iptables/rule-reading.js';
import { MarkmeterError } from '../errors.js';
import { resolveChainDirections, type DirectionRoots } from '../attribution/chain-directions.js';
import { readTableDump, type CommandRunner, type RunOptions } from './iptables/save-command.js';
import { IptablesSaveParser, type SaveVisitor } from './iptables/scan.js';
import type { Settings } from '../settings.js';
import { BackendSelector, detectBackend, type Backend, type BackendChoice } from './iptables/backend.js';

/** Where one table's dump comes from (`name` is `ipv4` or `ipv6`): read() parses it into the visitor. */
export interface TableSource {
  name: string;
  read(visitor: SaveVisitor): Promise<void>;
}

/**
 * The table sources the settings ask for: IPv4 always, IPv6 when iptables.ipv6
 * is on. Their save commands are iptables.saveCommand / save6Command when set,
 * else those of iptables.backend (detected with `auto`: see the selector).
 */
export function tableSources(
  settings: Settings,
  options: { runner?: CommandRunner; onBackend?: (choice: BackendChoice, previous: Backend | undefined) => void } = {},
): { sources: TableSource[]; selector: BackendSelector } {
  const { runner } = options;
  const run = { timeoutMs: settings.collect.timeoutMs, maxOutputBytes: settings.collect.maxOutputBytes };
  const { table } = settings.iptables;
  const selector = new BackendSelector(
    settings.iptables.backend,
    () => detectBackend(table, run, runner),
    options.onBackend ?? (() => {}),
  );
  const command = (family: 'ipv4' | 'ipv6') => {
    const explicit = family === 'ipv4' ? settings.iptables.saveCommand : settings.iptables.save6Command;
    return explicit ? () => Promise.resolve(explicit) : () => selector.command(family);
  };
  const sources = [commandSource('ipv4', command('ipv4'), table, run, runner)];
  if (settings.iptables.ipv6) sources.push(commandSource('ipv6', command('ipv6'), table, run, runner));
  return { sources, selector };
}

export function commandSource(
  name: string,
  command: string | (() => Promise<string>),
  table: string,
  options: RunOptions,
  runner?: CommandRunner,
): TableSource {
  return {
    name,
    read: async (visitor) => readTableDump({ command: typeof command === 'string' ? command : await command(), table }, options, visitor, runner),
  };
}

/** A saved `iptables-save -c` dump (for `snapshot --input`), streamed. */
export function fileSource(name: string, path: string): TableSource {
  return {
    name,
    read: async (visitor) => {
      const parser = new IptablesSaveParser(visitor);
      try {
        for await (const chunk of createReadStream(path, { encoding: 'utf8' })) parser.push(chunk as string);
      } catch (error) {
        if (error instanceof MarkmeterError) throw error;
        throw new MarkmeterError('input', `cannot read the saved dump ${path}: ${(error as Error).message}`, { cause: error });
      }
      parser.end();
    },
  };
}

export type SourceReport =
  | ({ source: string; ok: true; durationSeconds: number } & ReadingReport)
  | { source: string; ok: false; durationSeconds: number; error: MarkmeterError };

export interface CollectorOptions {
  table: string;
  roots: DirectionRoots;
  /** Keep every rule's counters between readings (the agent); off for a single reading (snapshot). */
  remember?: boolean;
  /** List the marks of rules no user owns (markmeter check). */
  listUnowned?: boolean;
}

export class Collector {
  /** Per source: every rule's counters at its last complete reading. */
  private readonly memories = new Map<string, RuleMemory>();

  constructor(
    private readonly sources: readonly TableSource[],
    private readonly options: CollectorOptions,
    private readonly accumulator: Accumulator,
    private readonly markMap: () => MarkMap,
  ) {
    if (options.remember !== false) for (const source of sources) this.memories.set(source.name, new RuleMemory());
  }

  /** Reads every source (in parallel) and adds what it read to the totals. */
  collect(): Promise<SourceReport[]> {
    return Promise.all(this.sources.map((source) => this.collectSource(source)));
  }

  private async collectSource(source: TableSource): Promise<SourceReport> {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    const memory = this.memories.get(source.name);
    try {
      const map = this.markMap();
      const reading = new TableReading(this.options.table, map, memory, { listUnowned: this.options.listUnowned });
      await source.read(reading);
      // Only a complete reading counts: its deltas and its counters are adopted together.
      const directions = resolveChainDirections(reading.graph, this.options.roots);
      const totals = this.accumulator.totalsFor(map.keys);
      const report = reading.finish(directions, (owner, direction, packets, bytes) =>
        addTo(owner === null ? this.accumulator.unattributed : totals[owner]!, direction, packets, bytes),
      );
      memory?.commit();
      return { source: source.name, ok: true, durationSeconds: seconds(), ...report };
    } catch (error) {
      memory?.abort();
      const wrapped =
        error instanceof MarkmeterError
          ? error
          : new MarkmeterError('internal', `reading ${source.name} failed unexpectedly: ${String(error)}`, { cause: error });
      return { source: source.name, ok: false, durationSeconds: seconds(), error: wrapped };
    }
  }
}
