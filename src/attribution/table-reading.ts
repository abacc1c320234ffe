/**
 * Pure: one reading of one table, fed rule by rule by the parser (it is a
 * SaveVisitor). For every MARK rule it takes the delta from the RuleMemory,
 * finds the owner (mark -> pool -> user, else the rule's own addresses) and
 * sums the delta per chain and owner. finish() then gives each chain its
 * direction (known only once every jump is seen) and hands out per-user deltas.
 * Jump rules and other targets are not user traffic; MARK rules in chains
 * without a single direction are reported, not guessed.
 *
 * Sums are kept in Float64Arrays indexed by user (slot 0: unattributed), exact
 * while below 2^53; larger ones move to an exact bigint side table.
 */
import { addCount, type Count } from '../count.js';
import { ChainGraph, type ChainDirections, type Direction } from '../mangle/chains.js';
import { ruleBytes, rulePackets, type RuleView, type SaveChain, type SaveVisitor } from '../mangle/parse.js';
import { NO_USER, type MarkMap } from './mark-map.js';
import type { CounterDelta, RuleCache, RuleMemory } from './rule-memory.js';

/** Receives a reading's per-user deltas: `owner` indexes the mapping's users, null is unattributed traffic. */
export type DeltaSink = (owner: number | null, direction: Direction, packets: Count, bytes: Count) => void;

export interface ReadingReport {
  rules: number;
  markRules: number;
  /** MARK rules not counted because their chain is reached from both directions or from none. */
  skipped: { chain: string; reason: 'ambiguous' | 'unreached'; rules: number }[];
  /** With listUnowned: MARK rules no user owns and their marks. */
  unowned?: { rules: number; marks: number[] };
}

const UNATTRIBUTED = 0;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** One chain's sums per owner slot (user index + 1; 0 is unattributed). */
class ChainSums {
  markRules = 0;
  readonly packets: Float64Array;
  readonly bytes: Float64Array;
  /** Slots whose sums left the safe-integer range: the exact remainder. */
  readonly exact = new Map<number, CounterDelta>();
  /** Rules whose owner depends on the direction (both addresses are users'), resolved in finish(). */
  readonly byDirection: { rx: number; tx: number; packets: Count; bytes: Count }[] = [];

  constructor(slots: number) {
    this.packets = new Float64Array(slots);
    this.bytes = new Float64Array(slots);
  }

  add(slot: number, packets: Count, bytes: Count): void {
    if (typeof packets === 'number' && typeof bytes === 'number') {
      const p = this.packets[slot]! + packets;
      const b = this.bytes[slot]! + bytes;
      if (p <= MAX_SAFE && b <= MAX_SAFE) {
        this.packets[slot] = p;
        this.bytes[slot] = b;
        return;
      }
    }
    const big = this.exact.get(slot) ?? { packets: 0, bytes: 0 };
    big.packets = addCount(big.packets, packets);
    big.bytes = addCount(big.bytes, bytes);
    this.exact.set(slot, big);
  }
}

export class TableReading implements SaveVisitor {
  readonly graph = new ChainGraph();
  private readonly sums = new Map<string, ChainSums>();
  private readonly delta: CounterDelta = { packets: 0, bytes: 0 };
  private inTable = false;
  private rules = 0;
  private lastChain = '';
  private lastSums: ChainSums | undefined;

  /** Marks of rules no user owns, when asked for (`markmeter check`): found also on idle rules. */
  private readonly unowned: Set<number> | undefined;
  private unownedRules = 0;

  /** Without a memory every rule counts whole: a single reading, as `snapshot` takes. */
  constructor(
    private readonly tableName: string,
    private readonly map: MarkMap,
    private readonly memory?: RuleMemory,
    options: { listUnowned?: boolean } = {},
  ) {
    memory?.begin();
    this.unowned = options.listUnowned ? new Set() : undefined;
  }

  table(name: string): void {
    this.inTable = name === this.tableName;
  }

  chain(_table: string, chain: SaveChain): void {
    if (this.inTable) this.graph.chains.add(chain.name);
  }

  rule(rule: RuleView): void {
    if (!this.inTable) return;
    this.rules += 1;
    if (rule.mark === undefined) {
      // Only MARK rules are user traffic; the others may be jumps the directions need.
      this.graph.addRule(rule);
      return;
    }
    let sums = this.lastSums;
    if (sums === undefined || rule.chain !== this.lastChain) {
      sums = this.sums.get(rule.chain);
      if (!sums) this.sums.set(rule.chain, (sums = new ChainSums(this.map.users.length + 1)));
      this.lastChain = rule.chain;
      this.lastSums = sums;
    }
    sums.markRules += 1;
    const delta = this.delta;
    let cache: RuleCache | undefined;
    if (this.memory) cache = this.memory.observe(rule, delta);
    else {
      delta.packets = rulePackets(rule);
      delta.bytes = ruleBytes(rule);
    }
    const idle = delta.packets === 0 && delta.bytes === 0;
    if (idle && this.unowned === undefined) return;

    let tx: number;
    let rx: number;
    if (cache !== undefined && cache.cachedFor === this.map.id) {
      // The rule's owners under this mapping were found in an earlier reading.
      tx = cache.tx;
      rx = cache.rx;
    } else {
      const pooled = this.map.byMark.get(rule.mark);
      if (pooled !== undefined) {
        tx = rx = pooled === NO_USER ? UNATTRIBUTED : pooled + 1;
      } else {
        // The pool lacks the mark: the rule's own addresses decide, the user's side
        // first (its source on upload, its destination on download).
        const source = this.userAt(rule.text, rule.sourceStart, rule.sourceEnd);
        const destination = this.userAt(rule.text, rule.destinationStart, rule.destinationEnd);
        tx = source ?? destination ?? UNATTRIBUTED;
        rx = destination ?? source ?? UNATTRIBUTED;
      }
      if (cache !== undefined) {
        cache.cachedFor = this.map.id;
        cache.tx = tx;
        cache.rx = rx;
      }
    }
    if (this.unowned !== undefined && (tx === UNATTRIBUTED || rx === UNATTRIBUTED)) {
      this.unownedRules += 1;
      this.unowned.add(rule.mark);
    }
    if (idle) return;
    if (tx === rx) sums.add(tx, delta.packets, delta.bytes);
    else sums.byDirection.push({ rx, tx, packets: delta.packets, bytes: delta.bytes });
  }

  /** Gives every chain its direction and hands the per-user deltas to `sink`. */
  finish(directions: ChainDirections, sink: DeltaSink): ReadingReport {
    const report: ReadingReport = { rules: this.rules, markRules: 0, skipped: [] };
    if (this.unowned) report.unowned = { rules: this.unownedRules, marks: [...this.unowned].sort((a, b) => a - b) };
    const ownerOf = (slot: number) => (slot === UNATTRIBUTED ? null : slot - 1);
    for (const [chain, sums] of this.sums) {
      report.markRules += sums.markRules;
      const direction = directions.byChain.get(chain);
      if (direction === undefined) {
        report.skipped.push({ chain, reason: directions.ambiguous.includes(chain) ? 'ambiguous' : 'unreached', rules: sums.markRules });
        continue;
      }
      for (let slot = 0; slot < sums.packets.length; slot++) {
        const packets = sums.packets[slot]!;
        const bytes = sums.bytes[slot]!;
        if (packets !== 0 || bytes !== 0) sink(ownerOf(slot), direction, packets, bytes);
      }
      for (const [slot, big] of sums.exact) sink(ownerOf(slot), direction, big.packets, big.bytes);
      for (const rule of sums.byDirection) sink(ownerOf(direction === 'rx' ? rule.rx : rule.tx), direction, rule.packets, rule.bytes);
    }
    return report;
  }

  /**
   * The owner slot of a rule address such as `10.8.0.2/32` or `fd00::2/128`.
   * iptables prints addresses canonically (inet_ntop), the form byIp is keyed
   * by, so no parsing is needed; a wider prefix is no single user.
   */
  private userAt(text: string, start: number, end: number): number | undefined {
    if (start < 0) return undefined;
    const address = text.slice(start, end);
    const slash = address.indexOf('/');
    let host: string | undefined = address;
    if (slash !== -1) {
      const prefix = address.slice(slash + 1);
      const full = address.includes(':') ? '128' : '32';
      host = prefix === full ? address.slice(0, slash) : undefined;
    }
    const index = host === undefined ? undefined : this.map.byIp.get(host);
    return index === undefined ? undefined : index + 1;
  }
}
