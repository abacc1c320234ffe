/**
 * Which iptables backend holds the tunnel client's rules. A sidecar whose
 * iptables reads the other backend sees an empty table and reports nothing:
 * the classic sidecar failure. With `iptables.backend: auto` both backends'
 * save commands are asked and the one whose mangle table holds more rules is
 * read, the way Kubernetes' iptables wrapper decides (legacy wins only when it
 * has more); when the chosen one comes back empty the choice is made again.
 */
import { IptablesSaveParser } from './scan.js';
import { execaRunner, type CommandRunner, type RunOptions } from './save-command.js';

export type Backend = 'nft' | 'legacy';
export type BackendSetting = Backend | 'auto';

/** The save commands of a backend, per address family. */
export function saveCommands(backend: Backend): { ipv4: string; ipv6: string } {
  return backend === 'nft'
    ? { ipv4: 'iptables-nft-save', ipv6: 'ip6tables-nft-save' }
    : { ipv4: 'iptables-legacy-save', ipv6: 'ip6tables-legacy-save' };
}

export interface BackendChoice {
  backend: Backend;
  /** Rules in each backend's table; undefined when its save command could not run. */
  rules: Record<Backend, number | undefined>;
  reason: string;
}

/** Pure: the choice from both backends' rule counts. */
export function chooseBackend(rules: Record<Backend, number | undefined>): BackendChoice {
  const { nft, legacy } = rules;
  const show = (n: number | undefined) => (n === undefined ? 'cannot be read' : `${n} rules`);
  const counts = `nft: ${show(nft)}, legacy: ${show(legacy)}`;
  if (legacy !== undefined && (nft === undefined || legacy > nft)) {
    return { backend: 'legacy', rules, reason: `the legacy table holds more rules (${counts})` };
  }
  if (nft === undefined) return { backend: 'nft', rules, reason: `neither backend can be read (${counts}); trying nft` };
  return { backend: 'nft', rules, reason: nft > 0 ? `the nft table holds at least as many rules (${counts})` : `both tables are empty (${counts}); nft is the default` };
}

/** What the agent logs when it makes or changes the choice. */
export function choiceMessage(choice: BackendChoice, previous: Backend | undefined): string {
  const change = previous && previous !== choice.backend ? ` (was ${previous})` : '';
  return `reading the ${choice.backend} iptables backend${change}: ${choice.reason}`;
}

/** What a save command prints of `table`: its rules (and how many are MARK rules), or why it could not be read. */
export type TableCount = { rules: number; markRules: number } | { error: string };

/** A detection: the choice, and what each backend's table held or why it could not be read. */
export interface BackendDetection extends BackendChoice {
  tables: Record<Backend, TableCount>;
}

/** Counts the rules of `table` that a save command (`<command> -c -t <table>`) prints. */
export async function countTable(command: string, table: string, options: RunOptions, runner: CommandRunner = execaRunner): Promise<TableCount> {
  let rules = 0;
  let markRules = 0;
  let inTable = false;
  let sawTable = false;
  const parser = new IptablesSaveParser({
    table: (name) => (sawTable ||= inTable = name === table),
    rule: (rule) => {
      if (!inTable) return;
      rules += 1;
      if (rule.mark !== undefined) markRules += 1;
    },
  });
  try {
    await runner(command, ['-c', '-t', table], options, (chunk) => parser.push(chunk));
    parser.end();
  } catch (error) {
    // Kept, not swallowed: `check` shows why a backend cannot be read.
    return { error: (error as Error).message };
  }
  return sawTable ? { rules, markRules } : { error: `${command} printed no ${table} table` };
}

/** Asks both backends' IPv4 save commands and chooses. */
export async function detectBackend(table: string, options: RunOptions, runner?: CommandRunner): Promise<BackendDetection> {
  const count = (backend: Backend) => countTable(saveCommands(backend).ipv4, table, options, runner);
  const [nft, legacy] = await Promise.all([count('nft'), count('legacy')]);
  const rules = (counted: TableCount) => ('error' in counted ? undefined : counted.rules);
  return { ...chooseBackend({ nft: rules(nft), legacy: rules(legacy) }), tables: { nft, legacy } };
}

/**
 * Holds the backend choice for the agent's readings: fixed when the setting
 * names a backend, detected (and re-detected on demand, at most every
 * `recheckMs`) with `auto`.
 */
export class BackendSelector {
  private choice: BackendChoice | undefined;
  private detecting: Promise<BackendChoice> | undefined;
  private recheckAfter = Infinity;

  constructor(
    private readonly setting: BackendSetting,
    private readonly detect: () => Promise<BackendChoice>,
    private readonly onChoice: (choice: BackendChoice, previous: Backend | undefined) => void,
    private readonly recheckMs = 30_000,
  ) {}

  /** The save command for a family, detecting the backend first when needed. */
  async command(family: 'ipv4' | 'ipv6'): Promise<string> {
    if (this.setting !== 'auto') return saveCommands(this.setting)[family];
    if (this.choice === undefined || Date.now() >= this.recheckAfter) {
      this.detecting ??= this.detect().finally(() => (this.detecting = undefined));
      const previous = this.choice?.backend;
      const choice = await this.detecting;
      this.recheckAfter = Infinity;
      if (this.choice !== choice) {
        this.choice = choice;
        this.onChoice(choice, previous);
      }
    }
    return saveCommands(this.choice.backend)[family];
  }

  /** The chosen backend's table came back empty: detect again (not more often than recheckMs). */
  recheck(): void {
    if (this.setting === 'auto' && this.recheckAfter === Infinity) this.recheckAfter = Date.now() + (this.choice ? this.recheckMs : 0);
  }

  get backend(): Backend | undefined {
    return this.setting === 'auto' ? this.choice?.backend : this.setting;
  }
}
