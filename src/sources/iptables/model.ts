/**
 * Pure: the plain model of an iptables-save dump (tables, chains, rules as
 * objects), built from the same scan the agent uses. For tools and tests; the
 * agent's reading never builds it (100,000 rule objects per reading).
 */
import type { Count } from '../../shared/count.js';
import { IptablesSaveParser, ruleBytes, rulePackets, viewDestination, viewSource, viewSpec, type RuleView, type SaveChain, type SaveVisitor } from './scan.js';

export interface SaveRule {
  table: string;
  chain: string;
  packets: Count;
  bytes: Count;
  /** The rule as printed after `-A CHAIN ` (without counters): the rule's identity. */
  spec: string;
  /** `-s` address as printed (e.g. `10.8.0.2/32`); undefined when missing or negated. */
  source: string | undefined;
  /** `-d` address as printed; undefined when missing or negated. */
  destination: string | undefined;
  /** `-j` or `-g` target. */
  jump: string | undefined;
  /** True when the target was given with `-g` (goto). */
  goto: boolean;
  /** The mark value set by `-j MARK --set-xmark V/M` or `--set-mark V[/M]`. */
  mark: number | undefined;
  markMask: number | undefined;
  /** 1-based line number in the dump. */
  line: number;
}

export interface SaveTable {
  name: string;
  chains: Map<string, SaveChain>;
  rules: SaveRule[];
}

/** Parses a whole dump into its tables, in the order they appear. */
export function parseIptablesSave(text: string): SaveTable[] {
  const model = new SaveModelBuilder();
  new IptablesSaveParser(model).push(text).end();
  return model.tables;
}

/** A visitor that builds the plain model: every table with its chains and rules. */
export class SaveModelBuilder implements SaveVisitor {
  readonly tables: SaveTable[] = [];

  table(name: string): void {
    this.tables.push({ name, chains: new Map(), rules: [] });
  }

  chain(_table: string, chain: SaveChain): void {
    this.tables.at(-1)!.chains.set(chain.name, chain);
  }

  rule(view: RuleView): void {
    this.tables.at(-1)!.rules.push({
      table: view.table,
      chain: view.chain,
      packets: rulePackets(view),
      bytes: ruleBytes(view),
      spec: viewSpec(view),
      source: viewSource(view),
      destination: viewDestination(view),
      jump: view.jump,
      goto: view.goto,
      mark: view.mark,
      markMask: view.mark === undefined ? undefined : view.markMask,
      line: view.line,
    });
  }
}

/** The named table of a dump, or an empty one when the dump does not list it. */
export function findTable(tables: SaveTable[], name: string): SaveTable {
  return tables.find((t) => t.name === name) ?? { name, chains: new Map(), rules: [] };
}

