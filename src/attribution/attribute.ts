/**
 * Pure: turns one table's rules into per-rule readings that say which user and
 * direction each MARK rule's counters belong to. Jump rules and other targets
 * are not user traffic; MARK rules in chains without a direction are reported.
 */
import type { Count } from '../count.js';
import type { ChainDirections, Direction } from '../mangle/chains.js';
import type { SaveRule, SaveTable } from '../mangle/parse.js';
import type { MarkMap } from './mark-map.js';

export interface RuleReading {
  /** With mark, source and destination: the rule's identity across readings. */
  chain: string;
  source: string | undefined;
  destination: string | undefined;
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
  let markRules = 0;
  for (const rule of table.rules) {
    if (rule.mark === undefined) continue; // only MARK rules carry one
    markRules += 1;
    const direction = directions.byChain.get(rule.chain);
    if (direction === undefined) {
      let entry = skipped.get(rule.chain);
      if (!entry) {
        entry = { chain: rule.chain, reason: directions.ambiguous.includes(rule.chain) ? 'ambiguous' : 'unreached', rules: 0 };
        skipped.set(rule.chain, entry);
      }
      entry.rules += 1;
      continue;
    }
    readings.push({
      chain: rule.chain,
      source: rule.source,
      destination: rule.destination,
      direction,
      user: ownerOf(rule, direction, map),
      mark: rule.mark,
      packets: rule.packets,
      bytes: rule.bytes,
    });
  }
  return { readings, markRules, skipped: [...skipped.values()] };
}

function ownerOf(rule: SaveRule, direction: Direction, map: MarkMap): string | null {
  const pooled = map.byMark.get(rule.mark!);
  if (pooled !== undefined) return pooled;
  // The pool lacks the mark: fall back to the rule's own addresses, the user's
  // side first (its source on upload, its destination on download).
  const [first, second] = direction === 'tx' ? [rule.source, rule.destination] : [rule.destination, rule.source];
  return userAt(first, map) ?? userAt(second, map) ?? null;
}

/**
 * The user at a rule address such as `10.8.0.2/32` or `fd00::2/128`. iptables
 * prints addresses canonically (inet_ntop), the form byIp is keyed by, so no
 * parsing is needed; a wider prefix is no single user.
 */
function userAt(address: string | undefined, map: MarkMap): string | undefined {
  if (address === undefined) return undefined;
  const slash = address.indexOf('/');
  if (slash === -1) return map.byIp.get(address);
  const prefix = address.length - slash - 1;
  const full = prefix === 2 ? address.endsWith('/32') && !address.includes(':') : prefix === 3 && address.endsWith('/128');
  return full ? map.byIp.get(address.slice(0, slash)) : undefined;
}
