/**
 * Pure: every rule's counters at the last complete reading, so a reading can
 * turn counters into deltas. A counter that went down (`iptables -Z`, a rule
 * deleted and added again) is a reset: its new value is the delta. A rule seen
 * for the first time contributes its whole counter (a restart loses nothing).
 *
 * A reading only proposes new counters; commit() adopts them once the reading
 * is complete, so a reading that fails half-way changes nothing and the next
 * one computes its deltas from the last good counters: no count is lost.
 *
 * A rule is known by its whole rule text (every match, in order; counters
 * excluded): two rules that differ only in `-p` are two rules, so deleting one
 * never hands its counters to the other. Identical rules are told apart by
 * their order. A rule's list is found by its chain and mark number; the
 * rule's line is the text the parser kept for its place
 * (RuleTexts), held by id: the same id is the same text, other ids are
 * compared in bytes. Known rules cost no allocation.
 *
 * A failed reading is aborted: the rules only it saw are dropped, so readings
 * that keep failing on ever-new rules hold no memory.
 *
 * A table's rules keep their order from one reading to the next, so the rule
 * at the same place last time is tried first: with 100,000 rules that saves a
 * lookup in a large map (a cache miss) per rule. The lists and their order
 * stay the truth; the guess is taken only where the list walk would find it.
 */
import { subtractCount, type Count } from '../shared/count.js';
import { grown } from '../shared/grown.js';
import { ruleBytes, rulePackets, type RuleView } from '../sources/iptables/scan.js';
import type { RuleTexts } from '../sources/iptables/rule-texts.js';

export interface CounterDelta {
  packets: Count;
  bytes: Count;
}

/** What observe() says of a rule besides its delta. */
export interface ObservedRule extends CounterDelta {
  /**
   * The rule's slot: a small number that stays the rule's while it is
   * remembered, so that a reading can keep per-rule data in arrays. A slot
   * freed by a forgotten rule goes to a later new rule: `fresh` says so.
   */
  slot: number;
  fresh: boolean;
  /**
   * Whether the rule's counts so far have gone to a user (see credit()). A
   * rule that never had an owner keeps its counts for its first owner, as a
   * rule's counts from before the agent started go to its owner.
   */
  credited: boolean;
}

interface ExactCounters {
  packets: Count;
  bytes: Count;
}

/** Flag bits of a slot. */
const HEAD = 1; // first in its chain and mark's list
const SEEN = 2; // a complete reading has seen the rule
const CREDITED = 4; // its counts have gone to a user (as of the last complete reading)
const NONE = -1;

/**
 * Every rule's state lives in arrays indexed by its slot (struct of arrays):
 * 100,000 rules are a few typed arrays rather than 100,000 objects with boxed
 * numbers, which the garbage collector would trace at every full collection.
 */
export class RuleMemory {
  /** The chains of the rules held, by name: their numbers. */
  private readonly chainIds = new Map<string, number>();
  private readonly freeChainIds: number[] = [];
  private nextChainId = 0;
  /**
   * The first slot of each chain and mark's list (then `next`), in a table
   * with open addressing keyed by that slot's chain and mark (NONE: an empty
   * cell), at most half full. Typed arrays rather than a Map per chain: 100,000
   * lists in 1 MB rather than 4, and nothing for the garbage collector to trace.
   */
  private heads: Int32Array = new Int32Array(1024).fill(NONE);
  private lists = 0;
  /** Per slot: its chain's number and the text of its line in `texts` (its identity within the chain). */
  private chainOf = new Int32Array(1024).fill(NONE);
  private lines = new Int32Array(1024);
  private marks = new Float64Array(1024);
  private flags = new Uint8Array(1024);
  /** The next rule with the same chain and mark, or NONE. */
  private next = new Int32Array(1024);
  /**
   * Counters at the last complete reading, then those proposed by the reading
   * `proposedIn`. Counters at or above 2^53 (rare) are NaN here and held
   * exactly in `exact`/`proposedExact`.
   */
  private packets = new Float64Array(1024);
  private bytes = new Float64Array(1024);
  private proposedPackets = new Float64Array(1024);
  private proposedBytes = new Float64Array(1024);
  /** The reading that proposed counters (0: none yet, a slot new to its rule), and the one that credited the rule. */
  private proposedIn = new Int32Array(1024);
  private creditedIn = new Int32Array(1024);
  private readonly exact = new Map<number, ExactCounters>();
  private readonly proposedExact = new Map<number, ExactCounters>();

  private reading = 0;
  /** Rules come grouped by chain: the last chain's number, to skip a lookup per rule. */
  private lastChain = '';
  private lastChainId = NONE;
  /** The slots in the order the reading saw them (the last complete one's, until overwritten). */
  private order = new Int32Array(1024);
  private orderLength = 0;
  /** Slots of forgotten rules, for the next new ones; then nextSlot. */
  private readonly freeSlots: number[] = [];
  private nextSlot = 0;
  private position = 0;
  /** How many rules the lists hold. */
  private known = 0;

  /** The slot observe() was last called for: the one credit() means. */
  private observed = NONE;

  /** `texts`: where the parser lent ParsedRules keeps the rules' lines (the same store). */
  constructor(private readonly texts: RuleTexts) {}

  /**
   * The rule just observed now has an owner: its counts go to a user from
   * this reading on (adopted with the reading, like its counters).
   */
  credit(): void {
    if (this.observed !== NONE) this.creditedIn[this.observed] = this.reading;
  }

  /** Starts a reading. */
  begin(): void {
    this.reading += 1;
    this.lastChainId = NONE;
    this.position = 0;
  }

  /** The rule's increase since the last complete reading and its slot, written into `out` (reused: no allocation). */
  observe(rule: RuleView, out: ObservedRule): void {
    if (rule.textId < 0) throw new Error('RuleMemory: a rule without a kept text (the parser must be lent the ParsedRules of the same RuleTexts)');
    const mark = rule.mark ?? -1;
    let chain = this.lastChainId;
    if (chain === NONE || rule.chain !== this.lastChain) {
      chain = this.chainIds.get(rule.chain) ?? NONE;
      if (chain === NONE) this.chainIds.set(rule.chain, (chain = this.freeChainIds.pop() ?? this.nextChainId++));
      this.lastChain = rule.chain;
      this.lastChainId = chain;
    }
    let slot = this.position < this.orderLength ? this.order[this.position]! : NONE;
    if (
      slot === NONE ||
      this.chainOf[slot] !== chain ||
      this.marks[slot] !== mark ||
      (this.flags[slot]! & HEAD) === 0 ||
      this.proposedIn[slot] === this.reading ||
      !this.holds(slot, rule.textId)
    ) {
      slot = this.find(rule, chain, mark);
    }
    const flags = this.flags[slot]!;
    out.slot = slot;
    out.fresh = this.proposedIn[slot] === 0;
    out.credited = (flags & CREDITED) !== 0;
    this.observed = slot;
    if (this.position === this.order.length) this.order = grown(this.order, new Int32Array(this.order.length * 2));
    this.order[this.position++] = slot;
    if (this.position > this.orderLength) this.orderLength = this.position;
    this.proposedIn[slot] = this.reading;
    const seen = (flags & SEEN) !== 0;
    // Counters held exactly are NaN in the arrays: the map is looked in only for those (a map
    // lookup per rule, as soon as one counter of the table passed 2^53, cost milliseconds per reading).
    const held = seen && Number.isNaN(this.packets[slot]!) ? this.exact.get(slot) : undefined;
    if (rule.exact === undefined && held === undefined) {
      const packets = rule.packets;
      const bytes = rule.bytes;
      // A reset (a counter went down) shows in either counter; then both new values are the delta.
      const whole = !seen || packets < this.packets[slot]! || bytes < this.bytes[slot]!;
      out.packets = whole ? packets : packets - this.packets[slot]!;
      out.bytes = whole ? bytes : bytes - this.bytes[slot]!;
      this.proposedPackets[slot] = packets;
      this.proposedBytes[slot] = bytes;
    } else {
      const packets = rulePackets(rule);
      const bytes = ruleBytes(rule);
      const previous = held ?? (seen ? { packets: this.packets[slot]!, bytes: this.bytes[slot]! } : undefined);
      const whole = previous === undefined || packets < previous.packets || bytes < previous.bytes;
      out.packets = whole ? packets : subtractCount(packets, previous.packets);
      out.bytes = whole ? bytes : subtractCount(bytes, previous.bytes);
      const exact = typeof packets !== 'number' || typeof bytes !== 'number';
      this.proposedPackets[slot] = exact ? NaN : packets;
      this.proposedBytes[slot] = exact ? NaN : bytes;
      // A slot is proposed once per reading, and commit/abort clear the proposals: nothing to delete here.
      if (exact) this.proposedExact.set(slot, { packets, bytes });
    }
  }

  /** The first rule of the chain and mark with the same rule text that this reading has not taken yet; a new one when none. */
  private find(rule: RuleView, chain: number, mark: number): number {
    const cell = this.cellOf(chain, mark);
    const first = this.heads[cell]!;
    let slot = first;
    while (slot !== NONE && (this.proposedIn[slot] === this.reading || !this.holds(slot, rule.textId))) slot = this.next[slot]!;
    if (slot !== NONE) return slot;
    slot = this.freeSlots.pop() ?? this.nextSlot++;
    if (slot >= this.flags.length) this.grow();
    this.chainOf[slot] = chain;
    this.texts.hold(rule.textId);
    this.lines[slot] = rule.textId;
    this.marks[slot] = mark;
    this.flags[slot] = first === NONE ? HEAD : 0;
    this.next[slot] = NONE;
    this.packets[slot] = this.bytes[slot] = this.proposedPackets[slot] = this.proposedBytes[slot] = NaN;
    this.proposedIn[slot] = 0;
    this.creditedIn[slot] = 0;
    this.exact.delete(slot);
    this.proposedExact.delete(slot);
    this.known += 1;
    // Appended, so that identical rules keep their order.
    if (first === NONE) {
      this.heads[cell] = slot;
      if (++this.lists * 2 > this.heads.length) this.heads = this.placed(this.heads, this.heads.length * 2);
    } else {
      let last = first;
      while (this.next[last] !== NONE) last = this.next[last]!;
      this.next[last] = slot;
    }
    return slot;
  }

  /** The cell of the chain and mark's list in `heads`: where its first slot is, or the empty cell where it goes. */
  private cellOf(chain: number, mark: number, heads = this.heads): number {
    const mask = heads.length - 1;
    let hash = Math.imul((mark >>> 0) ^ Math.imul(chain + 1, 0x9e3779b1), 0x85ebca6b);
    hash ^= hash >>> 15;
    for (let cell = hash & mask; ; cell = (cell + 1) & mask) {
      const slot = heads[cell]!;
      if (slot === NONE || (this.chainOf[slot] === chain && this.marks[slot] === mark)) return cell;
    }
  }

  /** A table of `size` cells holding the lists whose first slots `from` holds. */
  private placed(from: Int32Array, size: number): Int32Array {
    const heads = new Int32Array(size).fill(NONE);
    for (let k = 0; k < from.length; k++) {
      const slot = from[k]!;
      if (slot !== NONE) heads[this.cellOf(this.chainOf[slot]!, this.marks[slot]!, heads)] = slot;
    }
    return heads;
  }

  /**
   * Whether the slot's rule has the line `id`. The same text under another id
   * (the rule moved to another place) becomes the slot's, so that the old one
   * can be dropped.
   */
  private holds(slot: number, id: number): boolean {
    const line = this.lines[slot]!;
    if (line === id) return true;
    if (!this.texts.same(line, id)) return false;
    this.texts.hold(id);
    this.texts.release(line);
    this.lines[slot] = id;
    return true;
  }

  /** The reading is complete: adopt its counters and forget the rules it did not list. */
  commit(): void {
    const reading = this.reading;
    // `order` holds this reading's rules, each once (a reading takes a rule only once).
    for (let k = 0; k < this.position; k++) {
      const slot = this.order[k]!;
      this.flags[slot]! |= this.creditedIn[slot] === reading ? SEEN | CREDITED : SEEN;
      // NaN: held exactly (see observe), before and after.
      const wasExact = Number.isNaN(this.packets[slot]!);
      const packets = this.proposedPackets[slot]!;
      this.packets[slot] = packets;
      this.bytes[slot] = this.proposedBytes[slot]!;
      if (Number.isNaN(packets)) this.exact.set(slot, this.proposedExact.get(slot)!);
      else if (wasExact) this.exact.delete(slot);
    }
    this.proposedExact.clear();
    this.orderLength = this.position;
    this.lastChainId = NONE;
    // Every known rule listed: nothing to forget.
    if (this.position !== this.known) this.known = this.keep((slot) => this.proposedIn[slot] === reading);
    this.texts.tidy();
  }

  /**
   * The reading failed: its proposals are void, and the rules that no complete
   * reading has seen are dropped again (a reading that fails on ever-new rules
   * must not grow memory). The positional guess starts afresh.
   */
  abort(): void {
    this.orderLength = 0;
    this.position = 0;
    this.lastChainId = NONE;
    this.proposedExact.clear();
    this.known = this.keep((slot) => (this.flags[slot]! & SEEN) !== 0);
    this.texts.tidy();
  }

  /** Rules held (for tests and self-telemetry). */
  get rules(): number {
    return this.known;
  }

  /** Drops every rule `wanted` rejects (freeing its slot), keeping the others' order; returns how many are kept. */
  private keep(wanted: (slot: number) => boolean): number {
    let kept = 0;
    const { heads } = this;
    for (let k = 0; k < heads.length; k++) {
      const first = heads[k]!;
      if (first === NONE) continue;
      let head = NONE;
      let last = NONE;
      for (let slot = first; slot !== NONE; slot = this.next[slot]!) {
        if (!wanted(slot)) {
          this.forget(slot);
          continue;
        }
        if (last === NONE) head = slot;
        else this.next[last] = slot;
        last = slot;
        kept += 1;
      }
      heads[k] = head;
      if (head === NONE) continue;
      this.next[last] = NONE;
      this.flags[head]! |= HEAD;
    }
    // Lists gone leave empty cells that a probe would stop at: the lists left are placed anew.
    this.heads = this.placed(heads, heads.length);
    this.lists = 0;
    const used = new Uint8Array(this.nextChainId);
    for (let k = 0; k < this.heads.length; k++) {
      const slot = this.heads[k]!;
      if (slot === NONE) continue;
      this.lists += 1;
      used[this.chainOf[slot]!] = 1;
    }
    // Chains without rules are forgotten too (their names would pile up over failed readings).
    this.chainIds.forEach((id, name) => {
      if (used[id] === 0) {
        this.chainIds.delete(name);
        this.freeChainIds.push(id);
      }
    });
    return kept;
  }

  private forget(slot: number): void {
    this.freeSlots.push(slot);
    this.chainOf[slot] = NONE;
    this.texts.release(this.lines[slot]!);
    this.exact.delete(slot);
    this.proposedExact.delete(slot);
  }

  private grow(): void {
    const size = this.flags.length * 2;
    this.marks = grown(this.marks, new Float64Array(size));
    this.flags = grown(this.flags, new Uint8Array(size));
    this.chainOf = grown(this.chainOf, new Int32Array(size).fill(NONE));
    this.lines = grown(this.lines, new Int32Array(size));
    this.next = grown(this.next, new Int32Array(size));
    this.packets = grown(this.packets, new Float64Array(size));
    this.bytes = grown(this.bytes, new Float64Array(size));
    this.proposedPackets = grown(this.proposedPackets, new Float64Array(size));
    this.proposedBytes = grown(this.proposedBytes, new Float64Array(size));
    this.proposedIn = grown(this.proposedIn, new Int32Array(size));
    this.creditedIn = grown(this.creditedIn, new Int32Array(size));
  }
}
