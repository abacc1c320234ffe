/**
 * Pure: monotonic per-user totals built from per-rule deltas, so an exported
 * total never goes down. A counter that went down (`iptables -Z`, a rule
 * deleted and added again) is a reset: its new value is the delta. A rule seen
 * for the first time contributes its whole counter (a restart loses nothing).
 * A rule that disappears keeps what it already contributed.
 */
import type { User } from '../config-manager/users-document.js';
import type { Count } from '../mangle/parse.js';
import type { RuleReading } from './attribute.js';
import { userKey } from './mark-map.js';

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

export const zeroTotals = (): Totals => ({ rxPackets: 0n, txPackets: 0n, rxBytes: 0n, txBytes: 0n });

/** The increase of a kernel counter since the last reading; a decrease is a reset. */
export function counterDelta(previous: Count | undefined, current: Count): Count {
  return previous === undefined || current < previous ? current : current - previous;
}

interface LastCounters {
  packets: Count;
  bytes: Count;
}

export class Accumulator {
  /** Per source (e.g. `ipv4`, `ipv6`): rule key -> its counters at the last reading. */
  private readonly last = new Map<string, Map<string, LastCounters>>();
  private readonly series = new Map<string, UserSeries>();
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
    const previous = this.last.get(source) ?? new Map<string, LastCounters>();
    const next = new Map<string, LastCounters>();
    for (const reading of readings) {
      const before = previous.get(reading.ruleKey);
      const reset = before !== undefined && (reading.packets < before.packets || reading.bytes < before.bytes);
      const packets = reset ? reading.packets : counterDelta(before?.packets, reading.packets);
      const bytes = reset ? reading.bytes : counterDelta(before?.bytes, reading.bytes);
      next.set(reading.ruleKey, { packets: reading.packets, bytes: reading.bytes });
      if (packets === 0n && bytes === 0n) continue;
      const owner = reading.user === null ? undefined : this.series.get(reading.user);
      const totals = owner && owner.removedAt === undefined ? owner.totals : this.unattributed;
      if (reading.direction === 'rx') {
        totals.rxPackets += packets;
        totals.rxBytes += bytes;
      } else {
        totals.txPackets += packets;
        totals.txBytes += bytes;
      }
    }
    this.last.set(source, next);
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
