/**
 * Pure: which direction each chain's rules count as. A chain is rx when it is
 * reached (through -j/-g, transitively) only from the rx builtin chains, tx when
 * only from the tx ones. A chain reached from both, or from neither, has no
 * direction: its rules are reported, never guessed.
 */
import type { SaveTable } from '../sources/iptables/model.js';
import type { RuleView } from '../sources/iptables/scan.js';

export type Direction = 'rx' | 'tx';

export interface DirectionRoots {
  rx: readonly string[];
  tx: readonly string[];
}

export interface ChainDirections {
  /** Chains with exactly one direction. */
  byChain: Map<string, Direction>;
  /** Chains reached from both rx and tx chains. */
  ambiguous: string[];
  /** Chains reached from neither. */
  unreached: string[];
}

/** A table's chains and the jumps between them. */
export class ChainGraph {
  readonly chains = new Set<string>();
  readonly jumps = new Map<string, Set<string>>();

  static of(table: SaveTable): ChainGraph {
    const graph = new ChainGraph();
    for (const name of table.chains.keys()) graph.chains.add(name);
    for (const rule of table.rules) graph.addRule(rule);
    return graph;
  }

  /** Records the rule's jump when it targets a chain of the table (not a target like MARK or RETURN). */
  addRule(rule: Pick<RuleView, 'chain' | 'jump'>): void {
    // MARK, the target of nearly every rule, is never a chain: skip the lookup.
    if (rule.jump === undefined || rule.jump === 'MARK' || !this.chains.has(rule.jump)) return;
    let targets = this.jumps.get(rule.chain);
    if (!targets) this.jumps.set(rule.chain, (targets = new Set()));
    targets.add(rule.jump);
  }
}

export function resolveChainDirections(graph: ChainGraph, roots: DirectionRoots): ChainDirections {
  const reach = (starts: readonly string[]): Set<string> => {
    const seen = new Set<string>();
    const stack = starts.filter((s) => graph.chains.has(s));
    while (stack.length > 0) {
      const chain = stack.pop()!;
      if (seen.has(chain)) continue;
      seen.add(chain);
      for (const next of graph.jumps.get(chain) ?? []) stack.push(next);
    }
    return seen;
  };
  const rx = reach(roots.rx);
  const tx = reach(roots.tx);
  const result: ChainDirections = { byChain: new Map(), ambiguous: [], unreached: [] };
  for (const chain of graph.chains) {
    const inRx = rx.has(chain);
    const inTx = tx.has(chain);
    if (inRx && inTx) result.ambiguous.push(chain);
    else if (inRx) result.byChain.set(chain, 'rx');
    else if (inTx) result.byChain.set(chain, 'tx');
    else result.unreached.push(chain);
  }
  return result;
}
