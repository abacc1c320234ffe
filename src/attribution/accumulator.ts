/**
 * Pure: monotonic per-user totals. Readings hand in per-user deltas (see
 * TableReading and RuleMemory), so an exported total never goes down. Users
 * come and go with the users document: a removed user's series stays, frozen,
 * for a grace period, then is dropped.
 */
import type { SeriesOwner } from './mark-map.js';
import { addCount, type Count } from '../count.js';
import type { Direction } from '../mangle/chains.js';
import { userKey } from './mark-map.js';

export interface Totals {
  rxPackets: Count;
  txPackets: Count;
  rxBytes: Count;
  txBytes: Count;
}

export interface UserSeries {
  user: SeriesOwner;
  totals: Totals;
  /** When the user left the users document (ms since epoch); unset while present. */
  removedAt?: number;
}

export const zeroTotals = (): Totals => ({ rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 });

export class Accumulator {
  private readonly series = new Map<string, UserSeries>();
  readonly unattributed: Totals = zeroTotals();

  /** Adopts the users of a new 'sync': new users start at zero, missing ones are marked removed. */
  setUsers(users: readonly SeriesOwner[], now: number): void {
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

  /** Adds a delta to a user's totals (by userKey); null, an unknown or a removed user: to unattributed. */
  add(user: string | null, direction: Direction, packets: Count, bytes: Count): void {
    const owner = user === null ? undefined : this.series.get(user);
    const totals = owner && owner.removedAt === undefined ? owner.totals : this.unattributed;
    if (direction === 'rx') {
      totals.rxPackets = addCount(totals.rxPackets, packets);
      totals.rxBytes = addCount(totals.rxBytes, bytes);
    } else {
      totals.txPackets = addCount(totals.txPackets, packets);
      totals.txBytes = addCount(totals.txBytes, bytes);
    }
  }

  /** Drops users removed more than `graceMs` ago and returns them. */
  expireRemoved(now: number, graceMs: number): SeriesOwner[] {
    const expired: SeriesOwner[] = [];
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
}
