/**
 * Pure: which direction each chain's rules count as. A chain is rx when it is
 * reached (through -j/-g, transitively) only from the rx builtin chains, tx when
 * only from the tx ones. A chain reached from both, or from neither, has no
 * direction: its rules are reported, never guessed.
 */
import type { SaveTable } from './parse.js';

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

export function resolveChainDirections(table: SaveTable, roots: DirectionRoots): ChainDirections {
  const edges = new Map<string, Set<string>>();
  for (const rule of table.rules) {
    if (rule.jump === undefined || !table.chains.has(rule.jump)) continue;
    let targets = edges.get(rule.chain);
    if (!targets) edges.set(rule.chain, (targets = new Set()));
    targets.add(rule.jump);
  }
  const reach = (starts: readonly string[]): Set<string> => {
    const seen = new Set<string>();
    const stack = starts.filter((s) => table.chains.has(s));
    while (stack.length > 0) {
      const chain = stack.pop()!;
      if (seen.has(chain)) continue;
      seen.add(chain);
      for (const next of edges.get(chain) ?? []) stack.push(next);
    }
    return seen;
  };
  const rx = reach(roots.rx);
  const tx = reach(roots.tx);
  const result: ChainDirections = { byChain: new Map(), ambiguous: [], unreached: [] };
  for (const chain of table.chains.keys()) {
    const inRx = rx.has(chain);
    const inTx = tx.has(chain);
    if (inRx && inTx) result.ambiguous.push(chain);
    else if (inRx) result.byChain.set(chain, 'rx');
    else if (inTx) result.byChain.set(chain, 'tx');
    else result.unreached.push(chain);
  }
  return result;
}
