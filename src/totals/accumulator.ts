/**
 * Pure: monotonic per-user totals. Readings hand in per-user deltas (see
 * TableReading and RuleMemory), so an exported total never goes down. Users
 * come and go with the users document: a removed user's series stays, frozen,
 * for a grace period, then is dropped.
 */
import type { SeriesOwner } from '../attribution/mark-map.js';
import { addCount, type Count } from '../shared/count.js';
import type { Direction } from '../attribution/chain-directions.js';
import { userKey } from '../attribution/mark-map.js';

export interface Totals {
  rxPackets: Count;
  txPackets: Count;
  rxBytes: Count;
  txBytes: Count;
}

export interface UserSeries {
  user: SeriesOwner;
  totals: Totals;
  /** When the series began (ms since epoch): the start of its cumulative sums. */
  since: number;
  /** When the user left the users document (ms since epoch); unset while present. */
  removedAt?: number;
}

export const zeroTotals = (): Totals => ({ rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 });

export class Accumulator {
  private readonly series = new Map<string, UserSeries>();
  readonly unattributed: Totals = zeroTotals();
  /** Changes whenever users are added, removed or expired: invalidates `targets`. */
  private generation = 0;
  private targets: { keys: readonly string[]; generation: number; totals: Totals[] } | undefined;

  /** Adopts the users of a new 'sync': new users start at zero, missing ones are marked removed. */
  setUsers(users: readonly SeriesOwner[], now: number): void {
    this.generation += 1;
    const present = new Set<string>();
    for (const user of users) {
      const key = userKey(user);
      present.add(key);
      const existing = this.series.get(key);
      if (existing) delete existing.removedAt;
      else this.series.set(key, { user, totals: zeroTotals(), since: now });
    }
    for (const [key, entry] of this.series) {
      if (!present.has(key) && entry.removedAt === undefined) entry.removedAt = now;
    }
  }

  /** Adds a delta to a user's totals (by userKey); null, an unknown or a removed user: to unattributed. */
  add(user: string | null, direction: Direction, packets: Count, bytes: Count): void {
    addTo(this.totalsOf(user), direction, packets, bytes);
  }

  /**
   * The totals each of `keys` adds to (as add() resolves them), kept while
   * neither the keys nor the users change: a reading hands in 100,000 deltas,
   * and this spares each a lookup in a large map.
   */
  totalsFor(keys: readonly string[]): readonly Totals[] {
    if (this.targets?.keys !== keys || this.targets.generation !== this.generation) {
      this.targets = { keys, generation: this.generation, totals: keys.map((key) => this.totalsOf(key)) };
    }
    return this.targets.totals;
  }

  private totalsOf(user: string | null): Totals {
    const owner = user === null ? undefined : this.series.get(user);
    return owner && owner.removedAt === undefined ? owner.totals : this.unattributed;
  }

  /** Drops users removed more than `graceMs` ago and returns them. */
  expireRemoved(now: number, graceMs: number): SeriesOwner[] {
    const expired: SeriesOwner[] = [];
    for (const [key, entry] of this.series) {
      if (entry.removedAt !== undefined && now - entry.removedAt >= graceMs) {
        this.series.delete(key);
        this.generation += 1;
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

/** Adds a delta to one series' totals. */
export function addTo(totals: Totals, direction: Direction, packets: Count, bytes: Count): void {
  if (direction === 'rx') {
    totals.rxPackets = addCount(totals.rxPackets, packets);
    totals.rxBytes = addCount(totals.rxBytes, bytes);
  } else {
    totals.txPackets = addCount(totals.txPackets, packets);
    totals.txBytes = addCount(totals.txBytes, bytes);
  }
}
