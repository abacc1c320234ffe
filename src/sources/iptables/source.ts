/**
 * The iptables source: one per address family. A reading is one dump of the
 * table (from the save command, or a saved file for `snapshot --input`),
 * scanned rule by rule into a RuleReading; the rule memory turns counters into
 * increases and is committed only when the reading is complete.
 */
import { createReadStream } from 'node:fs';
import { resolveChainDirections, type DirectionRoots } from '../../attribution/chain-directions.js';
import type { MarkMap } from '../../attribution/mark-map.js';
import { MarkmeterError } from '../../errors.js';
import type { Settings } from '../../settings.js';
import type { DeltaSink, ReadingReport, Source } from '../source.js';
import { BackendSelector, detectBackend, type Backend, type BackendChoice } from './backend.js';
import { newReadingMemory, RuleReading, type ReadingMemory } from './rule-reading.js';
import { readTableDump, type CommandRunner, type RunOptions } from './save-command.js';
import { IptablesSaveParser, type SaveVisitor } from './scan.js';

/** Where one table's dump comes from: read() scans it into the visitor. */
export type DumpReader = (visitor: SaveVisitor) => Promise<void>;

export interface IptablesSourceOptions {
  table: string;
  roots: DirectionRoots;
  /** Keep every rule's counters between readings (the agent, top); off for a single reading (snapshot, check). */
  remember: boolean;
  /** List the marks of rules no user owns (check). */
  listUnowned?: boolean;
}

export class IptablesSource implements Source {
  readonly measures = 'marked';
  /** Every rule's counters at the last complete reading, and its owners per mapping. */
  private readonly memory: ReadingMemory | undefined;

  constructor(
    readonly name: string,
    private readonly dump: DumpReader,
    private readonly options: IptablesSourceOptions,
  ) {
    this.memory = options.remember ? newReadingMemory() : undefined;
  }

  async read(owners: MarkMap, sink: DeltaSink): Promise<ReadingReport> {
    const { memory, options } = this;
    try {
      const reading = new RuleReading(options.table, owners, memory, { listUnowned: options.listUnowned });
      await this.dump(reading);
      // Only a complete reading counts: its increases and its counters are adopted together.
      const report = reading.finish(resolveChainDirections(reading.graph, options.roots), sink);
      memory?.rules.commit();
      return report;
    } catch (error) {
      memory?.rules.abort();
      throw error;
    }
  }
}

/** The save command `command` (a name or a function that picks one), run as `<command> -c -t <table>`. */
export function saveCommandDump(command: string | (() => Promise<string>), table: string, options: RunOptions, runner?: CommandRunner): DumpReader {
  return async (visitor) => readTableDump({ command: typeof command === 'string' ? command : await command(), table }, options, visitor, runner);
}

/** A saved `iptables-save -c` dump, streamed. */
export function savedDump(path: string): DumpReader {
  return async (visitor) => {
    const parser = new IptablesSaveParser(visitor);
    try {
      for await (const chunk of createReadStream(path)) parser.push(chunk as Buffer);
    } catch (error) {
      if (error instanceof MarkmeterError) throw error;
      throw new MarkmeterError('input', `cannot read the saved dump ${path}: ${(error as Error).message}`, { cause: error });
    }
    parser.end();
  };
}

export interface IptablesSourcesOptions {
  remember: boolean;
  listUnowned?: boolean;
  runner?: CommandRunner;
  onBackend?: (choice: BackendChoice, previous: Backend | undefined) => void;
  /** Saved dumps to read instead of the save commands (`snapshot --input`/`--input6`): only those are read. */
  inputs?: { ipv4?: string; ipv6?: string };
}

/**
 * The sources the settings ask for: IPv4 always, IPv6 when iptables.ipv6 is
 * on. Their save commands are iptables.saveCommand / save6Command when set,
 * else those of iptables.backend (detected with `auto`: see the selector).
 */
export function iptablesSources(settings: Settings, options: IptablesSourcesOptions): { sources: IptablesSource[]; selector: BackendSelector } {
  const run = { timeoutMs: settings.collect.timeoutMs, maxOutputBytes: settings.collect.maxOutputBytes };
  const { table } = settings.iptables;
  const sourceOptions = { table, roots: { rx: settings.attribution.rxChains, tx: settings.attribution.txChains }, remember: options.remember, listUnowned: options.listUnowned };
  const selector = new BackendSelector(settings.iptables.backend, () => detectBackend(table, run, options.runner), options.onBackend ?? (() => {}));
  const { inputs } = options;
  if (inputs && (inputs.ipv4 || inputs.ipv6)) {
    const saved = (['ipv4', 'ipv6'] as const).filter((family) => inputs[family]);
    return { sources: saved.map((family) => new IptablesSource(family, savedDump(inputs[family]!), sourceOptions)), selector };
  }
  const command = (family: 'ipv4' | 'ipv6') => {
    const explicit = family === 'ipv4' ? settings.iptables.saveCommand : settings.iptables.save6Command;
    return explicit ? explicit : () => selector.command(family);
  };
  const families: ('ipv4' | 'ipv6')[] = settings.iptables.ipv6 ? ['ipv4', 'ipv6'] : ['ipv4'];
  return { sources: families.map((family) => new IptablesSource(family, saveCommandDump(command(family), table, run, options.runner), sourceOptions)), selector };
}
