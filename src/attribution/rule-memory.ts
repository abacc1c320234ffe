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
 * A rule is known by its chain, mark, -s and -d (the tunnel client writes one
 * rule per mark and direction); identical rules are told apart by their order.
 * The keys are the chain's shared name string and the mark number, and the
 * addresses are compared in place, so known rules cost no allocation.
 */
import { counterDelta, type Count } from '../count.js';
import { sameSlice, viewDestination, viewSource, type RuleView } from '../mangle/parse.js';

export interface CounterDelta {
  packets: Count;
  bytes: Count;
}

interface RuleState {
  source: string | undefined;
  destination: string | undefined;
  /** Counters at the last complete reading; undefined until one has seen the rule. */
  packets: Count | undefined;
  bytes: Count | undefined;
  /** Counters proposed by the reading `proposedIn`. */
  proposedPackets: Count;
  proposedBytes: Count;
  proposedIn: number;
  /** The next rule with the same chain and mark. */
  next: RuleState | undefined;
}

export class RuleMemory {
  /** chain -> mark -> the rules with that chain and mark. */
  private readonly rules = new Map<string, Map<number, RuleState>>();
  private reading = 0;
  /** Rules come grouped by chain: the last chain's map, to skip a lookup per rule. */
  private lastChain = '';
  private lastByMark: Map<number, RuleState> | undefined;

  /** Starts a reading. */
  begin(): void {
    this.reading += 1;
    this.lastByMark = undefined;
  }

  /** The rule's increase since the last complete reading, written into `out` (reused: no allocation). */
  observe(rule: RuleView, out: CounterDelta): void {
    const mark = rule.mark ?? -1;
    let byMark = this.lastByMark;
    if (byMark === undefined || rule.chain !== this.lastChain) {
      byMark = this.rules.get(rule.chain);
      if (!byMark) this.rules.set(rule.chain, (byMark = new Map()));
      this.lastChain = rule.chain;
      this.lastByMark = byMark;
    }
    const first = byMark.get(mark);
    let state = first;
    while (
      state !== undefined &&
      (state.proposedIn === this.reading ||
        !sameSlice(rule.text, rule.sourceStart, rule.sourceEnd, state.source) ||
        !sameSlice(rule.text, rule.destinationStart, rule.destinationEnd, state.destination))
    ) {
      state = state.next;
    }
    if (state === undefined) {
      state = {
        source: detach(viewSource(rule)),
        destination: detach(viewDestination(rule)),
        packets: undefined,
        bytes: undefined,
        proposedPackets: 0,
        proposedBytes: 0,
        proposedIn: 0,
        next: undefined,
      };
      // Appended, so that identical rules keep their order.
      if (first === undefined) byMark.set(mark, state);
      else {
        let last = first;
        while (last.next !== undefined) last = last.next;
        last.next = state;
      }
    }
    if (state.packets === undefined || state.bytes === undefined) {
      out.packets = rule.packets;
      out.bytes = rule.bytes;
    } else if (rule.packets < state.packets || rule.bytes < state.bytes) {
      // A reset shows in either counter; then both new values are the delta.
      out.packets = rule.packets;
      out.bytes = rule.bytes;
    } else {
      out.packets = counterDelta(state.packets, rule.packets);
      out.bytes = counterDelta(state.bytes, rule.bytes);
    }
    state.proposedPackets = rule.packets;
    state.proposedBytes = rule.bytes;
    state.proposedIn = this.reading;
  }

  /** The reading is complete: adopt its counters and forget the rules it did not list. */
  commit(): void {
    const reading = this.reading;
    for (const [chain, byMark] of this.rules) {
      for (const [mark, first] of byMark) {
        let head: RuleState | undefined = first;
        while (head !== undefined && head.proposedIn !== reading) head = head.next;
        if (head === undefined) {
          byMark.delete(mark);
          continue;
        }
        if (head !== first) byMark.set(mark, head);
        for (let state: RuleState | undefined = head; state !== undefined; state = state.next) {
          state.packets = state.proposedPackets;
          state.bytes = state.proposedBytes;
          while (state.next !== undefined && state.next.proposedIn !== reading) state.next = state.next.next;
        }
      }
      if (byMark.size === 0) this.rules.delete(chain);
    }
    this.lastByMark = undefined;
  }
}

/**
 * A copy of an address that does not keep the dump it was cut from alive
 * (V8 slices keep their parent string): only done when a rule is first seen.
 */
function detach(text: string | undefined): string | undefined {
  return text === undefined ? undefined : (JSON.parse(JSON.stringify(text)) as string);
}
