/**
 * Pure: one reading of one table, fed rule by rule by the parser (it is a
 * SaveVisitor). For every MARK rule it takes the delta from the RuleMemory and
 * finds the owner (mark -> pool -> user, else the rule's own addresses).
 * finish() then gives each chain its direction (known only once every jump is
 * seen) and hands out the deltas per owner. Jump rules and other targets are
 * not user traffic; MARK rules in chains without a single direction are
 * reported, not guessed.
 *
 * The deltas wait for finish() in flat typed arrays, one entry per MARK rule
 * that moved, so a reading costs memory in proportion to its rules, whatever
 * the number of chains and users (one chain per user is a common layout).
 * Deltas from 2^53 up (rare) wait exactly in a side table.
 */
import type { Count } from '../../shared/count.js';
import { grown } from '../../shared/grown.js';
import { MarkmeterError } from '../../errors.js';
import { ChainGraph, type ChainDirections, type Direction } from '../../attribution/chain-directions.js';
import { ParsedRules, ruleBytes, rulePackets, viewDestination, viewSource, type RuleView, type SaveChain, type SaveVisitor } from './scan.js';
import { isHostAddress, NO_USER, ownerByAddress, ownerOfAddress, type MarkMap } from '../../attribution/mark-map.js';
import { RuleMemory, type CounterDelta, type ObservedRule } from '../../totals/rule-memory.js';
import { RuleTexts } from './rule-texts.js';
import type { DeltaSink, ReadingReport } from '../source.js';

const UNATTRIBUTED = 0;
/** A slot for a user known by address who is not an owner yet: made in finish() (see addressSlot). */
const NEW_OWNER = -1;

/**
 * The moved MARK rules of one reading: chain, owner slots (user index + 1; 0
 * is unattributed) and delta. A source's readings reuse one (see
 * ReadingMemory): arrays made anew each reading were megabytes of buffers
 * outside V8's heap that V8 counts toward its next full collection.
 */
export class PendingDeltas {
  length = 0;
  chain = new Int32Array(1024);
  rx = new Int32Array(1024);
  tx = new Int32Array(1024);
  packets = new Float64Array(1024);
  bytes = new Float64Array(1024);
  /** Entries whose delta is a bigint: the exact value (their packets/bytes above are NaN). */
  readonly exact = new Map<number, CounterDelta>();

  /** Empty again, for the next reading (the arrays are kept). */
  clear(): this {
    this.length = 0;
    this.exact.clear();
    return this;
  }

  push(chain: number, rx: number, tx: number, packets: Count, bytes: Count): void {
    if (this.length === this.chain.length) this.grow();
    const k = this.length++;
    this.chain[k] = chain;
    this.rx[k] = rx;
    this.tx[k] = tx;
    if (typeof packets === 'number' && typeof bytes === 'number') {
      this.packets[k] = packets;
      this.bytes[k] = bytes;
    } else {
      this.packets[k] = this.bytes[k] = NaN;
      this.exact.set(k, { packets, bytes });
    }
  }

  private grow(): void {
    const size = this.chain.length * 2;
    this.chain = grown(this.chain, new Int32Array(size));
    this.rx = grown(this.rx, new Int32Array(size));
    this.tx = grown(this.tx, new Int32Array(size));
    this.packets = grown(this.packets, new Float64Array(size));
    this.bytes = grown(this.bytes, new Float64Array(size));
  }
}

/** What a source keeps between its readings: the rules' counters, their owners, the parser's findings, and the arrays a reading's deltas wait in. */
export interface ReadingMemory {
  rules: RuleMemory;
  owners: RuleOwners;
  /** Keeps the rules' lines, which `rules` knows them by (one RuleTexts for both). */
  parsed: ParsedRules;
  pending: PendingDeltas;
}

/** A new, empty reading memory. */
export function newReadingMemory(): ReadingMemory {
  const texts = new RuleTexts();
  return { rules: new RuleMemory(texts), owners: new RuleOwners(), parsed: new ParsedRules(texts), pending: new PendingDeltas() };
}

export class RuleReading implements SaveVisitor {
  readonly graph = new ChainGraph();
  /** Lent to the parser: rule texts unchanged since the last reading are not walked again. */
  readonly parsed: ParsedRules | undefined;
  /** Chains holding MARK rules, by their index in the pending deltas, and how many MARK rules each holds. */
  private readonly chainIndex = new Map<string, number>();
  private readonly chainNames: string[] = [];
  private readonly chainMarkRules: number[] = [];
  private readonly pending: PendingDeltas;
  /** Pending entries with a NEW_OWNER slot: the rule's -s and -d, to make the owner from once the direction is known. */
  private readonly newOwners = new Map<number, [string, string]>();
  private readonly delta: ObservedRule = { packets: 0, bytes: 0, slot: 0, fresh: false, credited: false };
  private inTable = false;
  /** Whether the dump listed the table at all: output without it is a failed reading, not an empty table. */
  private sawTable = false;
  private rules = 0;
  private lastChain = '';
  private lastChainIndex = -1;

  /** Marks of rules no user owns, when asked for (`markmeter check`): found also on idle rules. */
  private readonly unowned: Set<number> | undefined;
  private unownedRules = 0;

  /** Without a memory every rule counts whole: a single reading, as `snapshot` takes. */
  constructor(
    private readonly tableName: string,
    private readonly map: MarkMap,
    private readonly memory?: ReadingMemory,
    options: { listUnowned?: boolean } = {},
  ) {
    memory?.rules.begin();
    this.parsed = memory?.parsed;
    this.pending = memory?.pending.clear() ?? new PendingDeltas();
    this.unowned = options.listUnowned ? new Set() : undefined;
  }

  table(name: string): void {
    this.inTable = name === this.tableName;
    if (this.inTable) this.sawTable = true;
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
    let chain = this.lastChainIndex;
    if (chain < 0 || rule.chain !== this.lastChain) {
      chain = this.chainIndex.get(rule.chain) ?? -1;
      if (chain < 0) {
        chain = this.chainNames.push(rule.chain) - 1;
        this.chainMarkRules.push(0);
        this.chainIndex.set(rule.chain, chain);
      }
      this.lastChain = rule.chain;
      this.lastChainIndex = chain;
    }
    this.chainMarkRules[chain]! += 1;
    const delta = this.delta;
    const memory = this.memory;
    if (memory) memory.rules.observe(rule, delta);
    else {
      // One reading (snapshot, check): every rule counts whole.
      delta.packets = rulePackets(rule);
      delta.bytes = ruleBytes(rule);
      delta.credited = true;
    }
    const idle = delta.packets === 0 && delta.bytes === 0;
    // An idle rule is passed over, unless it has never had an owner (one may have come) or check asks for owners.
    if (idle && delta.credited && this.unowned === undefined) return;

    let tx: number;
    let rx: number;
    const cached = memory?.owners.cachedFor(delta, this.map.id);
    if (cached) {
      // The rule's owners under this mapping were found in an earlier reading.
      tx = memory!.owners.tx[delta.slot]!;
      rx = memory!.owners.rx[delta.slot]!;
    } else {
      const pooled = this.map.byAddress ? undefined : this.map.byMark.get(rule.mark);
      if (this.map.byAddress) {
        // Users known by address: the address a rule carries on the user's side is its user
        // (the source on upload, the destination on download); a new one is made in finish(),
        // once the chain's direction says which side is the user's.
        tx = this.addressSlot(viewSource(rule));
        rx = this.addressSlot(viewDestination(rule));
      } else if (pooled !== undefined) {
        tx = rx = pooled === NO_USER ? UNATTRIBUTED : pooled + 1;
      } else {
        // The pool lacks the mark: the rule's own addresses decide, the user's side
        // first (its source on upload, its destination on download).
        const source = this.slotOf(viewSource(rule));
        const destination = this.slotOf(viewDestination(rule));
        tx = source ?? destination ?? UNATTRIBUTED;
        rx = destination ?? source ?? UNATTRIBUTED;
      }
      if (tx !== NEW_OWNER && rx !== NEW_OWNER) memory?.owners.remember(delta.slot, this.map.id, tx, rx);
    }
    if (this.unowned !== undefined && (tx === UNATTRIBUTED || rx === UNATTRIBUTED)) {
      this.unownedRules += 1;
      this.unowned.add(rule.mark);
    }
    if (!delta.credited && (tx !== UNATTRIBUTED || rx !== UNATTRIBUTED)) {
      // Its first owner: the rule's counts from before it had one go to it (what went to unattributed stays there).
      memory!.rules.credit();
      delta.packets = rulePackets(rule);
      delta.bytes = ruleBytes(rule);
    }
    if (delta.packets !== 0 || delta.bytes !== 0) {
      if (tx === NEW_OWNER || rx === NEW_OWNER) this.newOwners.set(this.pending.length, [viewSource(rule) ?? '', viewDestination(rule) ?? '']);
      this.pending.push(chain, rx, tx, delta.packets, delta.bytes);
    }
  }

  /**
   * Gives every chain its direction and hands the per-user deltas to `sink`.
   * Throws (before handing out anything) when the dump did not list the table.
   */
  finish(directions: ChainDirections, sink: DeltaSink): ReadingReport {
    if (!this.sawTable) {
      throw new MarkmeterError(
        'no_table',
        `the dump holds no *${this.tableName} table (empty or cut-off output): the reading is not counted and the next one tries again`,
      );
    }
    const report: ReadingReport = { rules: this.rules, markRules: 0, skipped: [] };
    if (this.unowned) report.unowned = { rules: this.unownedRules, marks: [...this.unowned].sort((a, b) => a - b) };
    const direction: (Direction | undefined)[] = this.chainNames.map((chain, k) => {
      report.markRules += this.chainMarkRules[k]!;
      const found = directions.byChain.get(chain);
      if (found === undefined) {
        report.skipped.push({ chain, reason: directions.ambiguous.includes(chain) ? 'ambiguous' : 'unreached', rules: this.chainMarkRules[k]! });
      }
      return found;
    });
    const { pending } = this;
    for (let k = 0; k < pending.length; k++) {
      const way = direction[pending.chain[k]!];
      if (way === undefined) continue;
      let slot = way === 'rx' ? pending.rx[k]! : pending.tx[k]!;
      if (slot === NEW_OWNER) {
        // Users known by address: the user's side of the rule is a new user.
        const [source, destination] = this.newOwners.get(k)!;
        slot = (ownerByAddress(this.map, way === 'rx' ? destination : source) ?? -1) + 1;
      }
      const owner = slot === UNATTRIBUTED ? null : slot - 1;
      const packets = pending.packets[k]!;
      if (!Number.isNaN(packets)) sink(owner, way, packets, pending.bytes[k]!);
      else {
        const big = pending.exact.get(k)!;
        sink(owner, way, big.packets, big.bytes);
      }
    }
    return report;
  }

  /** The owner slot (user index + 1) of a rule address; undefined when no user's. */
  private slotOf(address: string | undefined): number | undefined {
    const owner = address === undefined ? undefined : ownerOfAddress(this.map, address);
    return owner === undefined ? undefined : owner + 1;
  }

  /** With users known by address: the address's owner slot, NEW_OWNER for a host address nobody has yet, else unattributed. */
  private addressSlot(address: string | undefined): number {
    if (address === undefined) return UNATTRIBUTED;
    const owner = ownerOfAddress(this.map, address);
    if (owner !== undefined) return owner + 1;
    return isHostAddress(address) ? NEW_OWNER : UNATTRIBUTED;
  }
}

/**
 * Each remembered rule's owners under the mapping that found them, by the
 * rule's slot in the RuleMemory: found once per mapping, not every reading.
 * The mapping is named by its id, so idle rules keep no old mapping alive.
 */
export class RuleOwners {
  mapId = new Int32Array(1024);
  tx = new Int32Array(1024);
  rx = new Int32Array(1024);

  /** Whether the rule's owners under mapping `id` are here (never for a rule new to its slot). */
  cachedFor(rule: ObservedRule, id: number): boolean {
    if (rule.slot >= this.mapId.length) return false;
    if (rule.fresh) this.mapId[rule.slot] = 0;
    return this.mapId[rule.slot] === id;
  }

  remember(slot: number, id: number, tx: number, rx: number): void {
    if (slot >= this.mapId.length) {
      const size = Math.max(slot + 1, this.mapId.length * 2);
      this.mapId = grown(this.mapId, new Int32Array(size));
      this.tx = grown(this.tx, new Int32Array(size));
      this.rx = grown(this.rx, new Int32Array(size));
    }
    this.mapId[slot] = id;
    this.tx[slot] = tx;
    this.rx[slot] = rx;
  }
}
