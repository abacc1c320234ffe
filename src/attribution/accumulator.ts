/**
 * Pure: monotonic per-user totals built from per-rule deltas, so an exported
 * total never goes down. A counter that went down (`iptables -Z`, a rule
 * deleted and added again) is a reset: its new value is the delta. A rule seen
 * for the first time contributes its whole counter (a restart loses nothing).
 * A rule that disappears keeps what it already contributed.
 *
 * A rule is known by its chain, mark, -s and -d (the tunnel client writes one
 * rule per mark and direction); identical rules are told apart by their order.
 * Keys are a chain name and a mark number, not the rule's text: this runs for
 * every rule of a 100,000-rule table every few seconds.
 */
import type { User } from '../config-manager/users-document.js';
import { addCount, counterDelta, type Count } from '../count.js';
import type { RuleReading } from './attribute.js';
import { userKey } from './mark-map.js';

export { counterDelta };

export interface Totals {
  rxPackets: Count;
  txPackets: Count;
  rxBytes: Count;
  txBytes: Count;
}

export interface UserSeries {
  user: User;
  totals: Totals;
  /** When the user left the users document (ms since epoch); unset while present. */
  removedAt?: number;
}

export const zeroTotals = (): Totals => ({ rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 });

interface RuleState {
  source: string | undefined;
  destination: string | undefined;
  packets: Count;
  bytes: Count;
  /** The reading that last saw the rule. */
  seen: number;
  /** Another rule with the same chain and mark. */
  next: RuleState | undefined;
}

/** Per source (`ipv4`, `ipv6`): chain -> mark -> the rules with that chain and mark. */
type RuleIndex = Map<string, Map<number, RuleState>>;

export class Accumulator {
  private readonly rules = new Map<string, RuleIndex>();
  private readonly series = new Map<string, UserSeries>();
  private reading = 0;
  readonly unattributed: Totals = zeroTotals();

  /** Adopts the users of a new 'sync': new users start at zero, missing ones are marked removed. */
  setUsers(users: readonly User[], now: number): void {
    const present = new Set<string>();
    for (const user of users) {
      const key = userKey(user);
      present.add(key);
      const existing = this.series.get(key);
      if (existing) delete existing.removedAt;
      else this.series.set(key, { user, totals: zeroTotals() });
    }
    for (const [key, entry] of this.series) {
      if (!present.has(key) && entry.removedAt === undefined) entry.removedAt = now;
    }
  }

  /**
   * Adds one source's complete reading. Rules of that source that are not in
   * `readings` are forgotten: a rule that comes back is new and counts from zero.
   */
  apply(source: string, readings: readonly RuleReading[]): void {
    const seen = ++this.reading;
    let index = this.rules.get(source);
    if (!index) this.rules.set(source, (index = new Map()));
    for (const reading of readings) {
      let byMark = index.get(reading.chain);
      if (!byMark) index.set(reading.chain, (byMark = new Map()));
      const first = byMark.get(reading.mark);
      let state = first;
      while (state !== undefined && (state.seen === seen || state.source !== reading.source || state.destination !== reading.destination)) {
        state = state.next;
      }
      let packets: Count;
      let bytes: Count;
      if (state === undefined) {
        const added: RuleState = {
          source: detach(reading.source),
          destination: detach(reading.destination),
          packets: reading.packets,
          bytes: reading.bytes,
          seen,
          next: undefined,
        };
        // Appended, so that identical rules keep their order.
        if (first === undefined) byMark.set(reading.mark, added);
        else {
          let last = first;
          while (last.next !== undefined) last = last.next;
          last.next = added;
        }
        packets = reading.packets;
        bytes = reading.bytes;
      } else {
        // A reset shows in either counter; then both new values are the delta.
        const reset = reading.packets < state.packets || reading.bytes < state.bytes;
        packets = reset ? reading.packets : counterDelta(state.packets, reading.packets);
        bytes = reset ? reading.bytes : counterDelta(state.bytes, reading.bytes);
        state.packets = reading.packets;
        state.bytes = reading.bytes;
        state.seen = seen;
      }
      if (packets === 0 && bytes === 0) continue;
      const owner = reading.user === null ? undefined : this.series.get(reading.user);
      const totals = owner && owner.removedAt === undefined ? owner.totals : this.unattributed;
      if (reading.direction === 'rx') {
        totals.rxPackets = addCount(totals.rxPackets, packets);
        totals.rxBytes = addCount(totals.rxBytes, bytes);
      } else {
        totals.txPackets = addCount(totals.txPackets, packets);
        totals.txBytes = addCount(totals.txBytes, bytes);
      }
    }
    forgetUnseen(index, seen);
  }

  /** Drops users removed more than `graceMs` ago and returns them. */
  expireRemoved(now: number, graceMs: number): User[] {
    const expired: User[] = [];
    for (const [key, entry] of this.series) {
      if (entry.removedAt !== undefined && now - entry.removedAt >= graceMs) {
        this.series.delete(key);
        expired.push(entry.user);
      }
    }
    return expired;
  }

  /** Every exported user series (present users and removed ones still in their grace period). */
  users(): IterableIterator<UserSeries> {
    return this.series.values();
  }

  get userCount(): number {
    return this.series.size;
  }
}

function forgetUnseen(index: RuleIndex, seen: number): void {
  for (const [chain, byMark] of index) {
    for (const [mark, first] of byMark) {
      let head: RuleState | undefined = first;
      while (head !== undefined && head.seen !== seen) head = head.next;
      if (head === undefined) {
        byMark.delete(mark);
        continue;
      }
      if (head !== first) byMark.set(mark, head);
      let state: RuleState = head;
      let next = state.next;
      while (next !== undefined) {
        if (next.seen !== seen) state.next = next.next;
        else state = next;
        next = state.next;
      }
    }
    if (byMark.size === 0) index.delete(chain);
  }
}

/**
 * A copy of an address that does not keep the dump it was cut from alive
 * (V8 slices keep their parent string): only done when a rule is first seen.
 */
function detach(text: string | undefined): string | undefined {
  return text === undefined ? undefined : (JSON.parse(JSON.stringify(text)) as string);
}
