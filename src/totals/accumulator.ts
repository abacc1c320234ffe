/**
 * Pure: monotonic per-user totals. Readings hand in per-user increases (see
 * the sources), so an exported total never goes down. Users come and go with
 * the users document: a removed user's series stays, frozen, for a grace
 * period, then is dropped.
 *
 * Inside a reading a user is its owner index in the reading's mapping: at each
 * users update the series line up with the mapping's owners, index for index,
 * so a reading's 100,000 increases find their totals by index.
 */
import type { Direction } from '../attribution/chain-directions.js';
import type { MarkMap, SeriesOwner } from '../attribution/mark-map.js';
import { addCount, type Count } from '../shared/count.js';
import type { DeltaSink } from '../sources/source.js';

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
  /** Every exported series, by its attributes: how a user is found again in the next users document. */
  private readonly series = new Map<string, UserSeries>();
  readonly unattributed: Totals = zeroTotals();
  /** The current mapping and its owners' totals, index for index. */
  private current: { map: MarkMap; totals: Totals[] } | undefined;

  /** Adopts the owners of a new mapping: new ones start at zero, missing ones are marked removed. */
  setUsers(map: MarkMap, now: number): void {
    const present = new Set<UserSeries>();
    const totals = map.users.map((user) => {
      const entry = this.seriesOf(user, now);
      present.add(entry);
      return entry.totals;
    });
    for (const entry of this.series.values()) {
      if (!present.has(entry) && entry.removedAt === undefined) entry.removedAt = now;
    }
    this.current = { map, totals };
  }

  /** The user's series, present again if it was removed, new (from zero) if there is none. */
  private seriesOf(user: SeriesOwner, now: number): UserSeries {
    const key = seriesKey(user);
    let entry = this.series.get(key);
    if (entry) delete entry.removedAt;
    else this.series.set(key, (entry = { user, totals: zeroTotals(), since: now }));
    return entry;
  }

  /**
   * Where a reading made with `map` adds its increases: owner i to the totals
   * of that mapping's owner i, null to unattributed. A reading that began
   * before the latest users update (its mapping replaced while it ran) finds
   * its owners' series by their attributes; a user removed since counts as
   * unattributed.
   */
  sinkFor(map: MarkMap): DeltaSink {
    const { unattributed } = this;
    const totals = map === this.current?.map ? this.current.totals : map.users.map((user) => this.presentTotals(user) ?? unattributed);
    return (owner, direction, packets, bytes) => {
      // Users known by address: the reading may have made owners since the mapping was adopted.
      if (owner !== null && owner >= totals.length) this.lineUp(map, totals);
      addTo(owner === null ? unattributed : totals[owner]!, direction, packets, bytes);
    };
  }

  /** Series for the owners a growing mapping made after it was adopted (current mapping only; else unattributed). */
  private lineUp(map: MarkMap, totals: Totals[]): void {
    const now = Date.now();
    for (let i = totals.length; i < map.users.length; i++) totals.push(map === this.current?.map ? this.seriesOf(map.users[i]!, now).totals : this.unattributed);
  }

  private presentTotals(user: SeriesOwner): Totals | undefined {
    const entry = this.series.get(seriesKey(user));
    return entry && entry.removedAt === undefined ? entry.totals : undefined;
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

/** A series' identity: its attributes (so a renamed user is a new series, as it is for Prometheus). */
function seriesKey(owner: SeriesOwner): string {
  return JSON.stringify([owner.user_intra_ip, owner.user_code, owner.user_name, owner.mark_id, owner.peer_ip]);
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
