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
 * their order. The keys are the chain's shared name string and the mark
 * number, and the rule text is compared in place, so known rules cost no
 * allocation.
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
import { detach, hasSpec, ruleBytes, rulePackets, viewSpec, type RuleView } from '../sources/iptables/scan.js';

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

interface RuleState {
  slot: number;
  /** Its chain's map (the chain's identity) and its mark. */
  byMark: Map<number, RuleState>;
  mark: number;
  /** First in its chain and mark's list. */
  head: boolean;
  /** The rule text after `-A CHAIN ` (its identity). */
  spec: string;
  /** Whether a complete reading has seen the rule. */
  seen: boolean;
  /** Whether its counts have gone to a user (as of the last complete reading), and the reading that credited it. */
  credited: boolean;
  creditedIn: number;
  /**
   * Counters at the last complete reading, then those proposed by the reading
   * `proposedIn`: numbers only, so that V8 updates them in place (a bigint
   * here would box every store, and 100,000 boxes a reading keep the GC busy).
   * Counters at or above 2^53 (rare) are held exactly in `exact`/`proposedExact`.
   */
  packets: number;
  bytes: number;
  exact: ExactCounters | undefined;
  proposedPackets: number;
  proposedBytes: number;
  proposedExact: ExactCounters | undefined;
  proposedIn: number;
  /** The next rule with the same chain and mark. */
  next: RuleState | undefined;
}

interface ExactCounters {
  packets: Count;
  bytes: Count;
}

export class RuleMemory {
  /** chain -> mark -> the rules with that chain and mark. */
  private readonly byChain = new Map<string, Map<number, RuleState>>();
  private reading = 0;
  /** Rules come grouped by chain: the last chain's map, to skip a lookup per rule. */
  private lastChain = '';
  private lastByMark: Map<number, RuleState> | undefined;
  /** The rules in the order the reading saw them (the last complete one's, until overwritten). */
  private readonly order: RuleState[] = [];
  /** Slots of forgotten rules, for the next new ones; then nextSlot. */
  private readonly freeSlots: number[] = [];
  private nextSlot = 0;
  private position = 0;
  /** How many rules the lists hold. */
  private known = 0;

  /** The rule observe() was last called for: the one credit() means. */
  private observed: RuleState | undefined;

  /**
   * The rule just observed now has an owner: its counts go to a user from
   * this reading on (adopted with the reading, like its counters).
   */
  credit(): void {
    if (this.observed) this.observed.creditedIn = this.reading;
  }

  /** Starts a reading. */
  begin(): void {
    this.reading += 1;
    this.lastByMark = undefined;
    this.position = 0;
  }

  /** The rule's increase since the last complete reading and its slot, written into `out` (reused: no allocation). */
  observe(rule: RuleView, out: ObservedRule): void {
    const mark = rule.mark ?? -1;
    let byMark = this.lastByMark;
    if (byMark === undefined || rule.chain !== this.lastChain) {
      byMark = this.byChain.get(rule.chain);
      if (!byMark) this.byChain.set(rule.chain, (byMark = new Map()));
      this.lastChain = rule.chain;
      this.lastByMark = byMark;
    }
    let state = this.order[this.position];
    if (
      state === undefined ||
      state.byMark !== byMark ||
      state.mark !== mark ||
      !state.head ||
      state.proposedIn === this.reading ||
      !hasSpec(rule, state.spec)
    ) {
      state = this.find(rule, byMark, mark);
    }
    out.slot = state.slot;
    out.fresh = state.proposedIn === 0;
    out.credited = state.credited;
    this.observed = state;
    this.order[this.position++] = state;
    state.proposedIn = this.reading;
    if (rule.exact === undefined && state.exact === undefined) {
      const packets = rule.packets;
      const bytes = rule.bytes;
      // A reset (a counter went down) shows in either counter; then both new values are the delta.
      const whole = !state.seen || packets < state.packets || bytes < state.bytes;
      out.packets = whole ? packets : packets - state.packets;
      out.bytes = whole ? bytes : bytes - state.bytes;
      state.proposedPackets = packets;
      state.proposedBytes = bytes;
      state.proposedExact = undefined;
    } else {
      const packets = rulePackets(rule);
      const bytes = ruleBytes(rule);
      const previous = state.exact ?? (state.seen ? { packets: state.packets, bytes: state.bytes } : undefined);
      const whole = previous === undefined || packets < previous.packets || bytes < previous.bytes;
      out.packets = whole ? packets : subtractCount(packets, previous.packets);
      out.bytes = whole ? bytes : subtractCount(bytes, previous.bytes);
      const exact = typeof packets !== 'number' || typeof bytes !== 'number';
      state.proposedPackets = exact ? NaN : packets;
      state.proposedBytes = exact ? NaN : bytes;
      state.proposedExact = exact ? { packets, bytes } : undefined;
    }
  }

  /** The first rule of the chain and mark with the same rule text that this reading has not taken yet; a new one when none. */
  private find(rule: RuleView, byMark: Map<number, RuleState>, mark: number): RuleState {
    const first = byMark.get(mark);
    let state = first;
    while (
      state !== undefined &&
      (state.proposedIn === this.reading || !hasSpec(rule, state.spec))
    ) {
      state = state.next;
    }
    if (state === undefined) {
      state = {
        byMark,
        mark,
        head: first === undefined,
        slot: this.freeSlots.pop() ?? this.nextSlot++,
        spec: rule.spec ?? detach(viewSpec(rule)),
        seen: false,
        credited: false,
        creditedIn: 0,
        packets: NaN,
        bytes: NaN,
        exact: undefined,
        proposedPackets: NaN,
        proposedBytes: NaN,
        proposedExact: undefined,
        proposedIn: 0,
        next: undefined,
      };
      this.known += 1;
      // Appended, so that identical rules keep their order.
      if (first === undefined) byMark.set(mark, state);
      else {
        let last = first;
        while (last.next !== undefined) last = last.next;
        last.next = state;
      }
    }
    return state;
  }

  /** The reading is complete: adopt its counters and forget the rules it did not list. */
  commit(): void {
    const reading = this.reading;
    // `order` holds this reading's rules, each once (a reading takes a rule only once).
    for (let k = 0; k < this.position; k++) {
      const state = this.order[k]!;
      state.seen = true;
      if (state.creditedIn === reading) state.credited = true;
      state.packets = state.proposedPackets;
      state.bytes = state.proposedBytes;
      state.exact = state.proposedExact;
    }
    this.order.length = this.position;
    this.lastByMark = undefined;
    if (this.position === this.known) return; // every known rule was listed: nothing to forget
    this.known = this.keep((state) => state.proposedIn === reading);
  }

  /**
   * The reading failed: its proposals are void, and the rules that no complete
   * reading has seen are dropped again (a reading that fails on ever-new rules
   * must not grow memory). The positional guess starts afresh.
   */
  abort(): void {
    this.order.length = 0;
    this.position = 0;
    this.lastByMark = undefined;
    this.known = this.keep((state) => state.seen);
  }

  /** Rules held (for tests and self-telemetry). */
  get rules(): number {
    return this.known;
  }

  /** Drops every rule `wanted` rejects (freeing its slot), keeping the others' order; returns how many are kept. */
  private keep(wanted: (state: RuleState) => boolean): number {
    let kept = 0;
    this.byChain.forEach((byMark, chain) => {
      byMark.forEach((first, mark) => {
        let head: RuleState | undefined;
        let last: RuleState | undefined;
        for (let state: RuleState | undefined = first; state !== undefined; state = state.next) {
          if (!wanted(state)) {
            this.freeSlots.push(state.slot);
            continue;
          }
          if (last === undefined) head = state;
          else last.next = state;
          last = state;
          kept += 1;
        }
        if (head === undefined || last === undefined) {
          byMark.delete(mark);
          return;
        }
        last.next = undefined;
        if (head !== first) {
          byMark.set(mark, head);
          head.head = true;
        }
      });
      if (byMark.size === 0) this.byChain.delete(chain);
    });
    return kept;
  }
}

