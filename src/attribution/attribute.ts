/**
 * Pure: turns one table's rules into per-rule readings that say which user and
 * direction each MARK rule's counters belong to. Jump rules and other targets
 * are not user traffic; MARK rules in chains without a direction are reported.
 */
import { hostAddress } from '../address.js';
import type { User } from '../config-manager/users-document.js';
import type { ChainDirections, Direction } from '../mangle/chains.js';
import type { Count, SaveTable } from '../mangle/parse.js';
import { userKey, type MarkMap } from './mark-map.js';

export interface RuleReading {
  /** Stable identity of the rule across readings (chain, spec and occurrence). */
  ruleKey: string;
  direction: Direction;
  /** The owning user's key, or null for unattributed traffic. */
  user: string | null;
  mark: number;
  packets: Count;
  bytes: Count;
}

export interface Attribution {
  readings: RuleReading[];
  markRules: number;
  /** MARK rules skipped because their chain is reached from both directions or from none. */
  skipped: { chain: string; reason: 'ambiguous' | 'unreached'; rules: number }[];
}

export function attributeRules(table: SaveTable, directions: ChainDirections, map: MarkMap): Attribution {
  const readings: RuleReading[] = [];
  const skipped = new Map<string, Attribution['skipped'][number]>();
  const occurrences = new Map<string, number>();
  let markRules = 0;
  for (const rule of table.rules) {
    if (rule.jump !== 'MARK' || rule.mark === undefined) continue;
    markRules += 1;
    const direction = directions.byChain.get(rule.chain);
    if (direction === undefined) {
      const reason = directions.ambiguous.includes(rule.chain) ? 'ambiguous' : 'unreached';
      const entry = skipped.get(rule.chain) ?? { chain: rule.chain, reason, rules: 0 };
      entry.rules += 1;
      skipped.set(rule.chain, entry);
      continue;
    }
    // Identical rules in one chain are told apart by their order.
    const identity = `${table.name} ${rule.chain} ${rule.spec}`;
    const n = (occurrences.get(identity) ?? 0) + 1;
    occurrences.set(identity, n);
    const owner = ownerOf(rule.mark, rule.source, rule.destination, direction, map);
    readings.push({
      ruleKey: n === 1 ? identity : `${identity} #${n}`,
      direction,
      user: owner ? userKey(owner) : null,
      mark: rule.mark,
      packets: rule.packets,
      bytes: rule.bytes,
    });
  }
  return { readings, markRules, skipped: [...skipped.values()] };
}

function ownerOf(
  mark: number,
  source: string | undefined,
  destination: string | undefined,
  direction: Direction,
  map: MarkMap,
): User | undefined {
  const pooled = map.byMark.get(mark);
  if (pooled !== undefined) return pooled ?? undefined;
  // The pool lacks the mark: fall back to the rule's own addresses, the user's
  // side first (its source on upload, its destination on download).
  const order = direction === 'tx' ? [source, destination] : [destination, source];
  for (const address of order) {
    const host = address === undefined ? undefined : hostAddress(address);
    const user = host === undefined ? undefined : map.byIp.get(host);
    if (user) return user;
  }
  return undefined;
}
