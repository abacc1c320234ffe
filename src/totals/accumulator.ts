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
import type { DeltaSink, Measures } from '../sources/source.js';

export interface Totals {
  rxPackets: Count;
  txPackets: Count;
  rxBytes: Count;
  txBytes: Count;
}

/** What a shaper's classes handled for a user: sent packets and bytes, drops and overlimits, per direction. */
export interface ShapedTotals extends Totals {
  rxDropped: Count;
  txDropped: Count;
  rxOverlimits: Count;
  txOverlimits: Count;
}

export const zeroShaped = (): ShapedTotals => ({ ...zeroTotals(), rxDropped: 0, txDropped: 0, rxOverlimits: 0, txOverlimits: 0 });

export interface UserSeries {
  user: SeriesOwner;
  /** What the MARK rules counted. */
  totals: Totals;
  /** What the shaper's classes counted: with a TC source only, from its first increase for the user. */
  shaped?: ShapedTotals;
  /** When the series began (ms since epoch): the start of its cumulative sums. */
  since: number;
  /** When the user left the users document (ms since epoch); unset while present. */
  removedAt?: number;
  /** The Accumulator's own: the users update that last placed the series in a mapping. */
  placed?: number;
}

export const zeroTotals = (): Totals => ({ rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 });

/** A mapping lined up with the series: owner i's series (and its totals) at index i. */
interface Lined {
  map: MarkMap;
  series: (UserSeries | undefined)[];
  totals: Totals[];
}

/** Each owner's series in the mapping in force, found ahead of setUsers() (see lookUpSteps). */
export interface SeriesLookUp {
  /** The mapping in force the series were found in. */
  readonly against: Lined | undefined;
  readonly found: (UserSeries | undefined)[];
  done: number;
}

/** Owners looked up per step of lookUpSteps: a fraction of a millisecond. */
const OWNERS_PER_STEP = 2048;

export class Accumulator {
  /** Every exported series, by its attributes: how a user is found again in the next users document. */
  private readonly series = new SeriesIndex();
  readonly unattributed: Totals = zeroTotals();
  /** What shaper classes tied to no user counted. */
  readonly unattributedShaped: ShapedTotals = zeroShaped();
  /** The current mapping and its owners' series (and their totals), index for index. */
  private current: Lined | undefined;
  /** Counts the users updates: a series the latest placed carries its number (a mark, not a set of 50,000). */
  private updates = 0;

  /**
   * Adopts the owners of a new mapping: new ones start at zero, missing ones
   * are marked removed. An owner that has a series already is replaced in
   * `map.users` by that series' owner object (the same attributes). With
   * `lookUp` (made by lookUpSteps for `map`), the owners' series are those it
   * found, when the mapping in force is still the one it looked in.
   */
  setUsers(map: MarkMap, now: number, lookUp?: SeriesLookUp): void {
    const previous = this.current;
    const found = lookUp !== undefined && lookUp.against === previous && lookUp.done === map.users.length ? lookUp.found : undefined;
    const update = ++this.updates;
    const series: UserSeries[] = new Array(map.users.length);
    const owners = map.users as SeriesOwner[];
    for (let i = 0; i < series.length; i++) {
      const user = owners[i]!;
      // A document synced again mostly repeats its owners: found in the previous mapping, at their index or address.
      const unchanged = found !== undefined ? found[i] : previous && this.unchangedSeries(previous, i, user);
      // Its owner stays the series' own (the same attributes): one object per owner, however often the document syncs.
      if (unchanged) owners[i] = unchanged.user;
      const entry = unchanged ?? this.seriesOf(user, now);
      entry.placed = update;
      series[i] = entry;
    }
    // Present now: the series this update placed. Every series present before is one of the previous
    // mapping's (only setUsers and lineUp make one present, for the mapping in force); without one, any may be.
    const removed = (entry: UserSeries | undefined) => {
      if (entry && entry.placed !== update && entry.removedAt === undefined) entry.removedAt = now;
    };
    if (previous) previous.series.forEach(removed);
    else this.series.forEach(removed);
    this.current = { map, series, totals: [] };
  }

  /**
   * setUsers(map)'s search of each owner's series in the mapping in force, in
   * steps (the users sync runs them in slices between readings): most of its
   * time at 50,000 users, and it changes nothing. setUsers then only adopts
   * what was found.
   */
  *lookUpSteps(map: MarkMap): Generator<void, SeriesLookUp> {
    const lookUp: SeriesLookUp = { against: this.current, found: new Array(map.users.length), done: 0 };
    // The loop is a method's: a generator's own loops are never optimised.
    while (this.lookUpSome(lookUp, map)) yield;
    return lookUp;
  }

  private lookUpSome(lookUp: SeriesLookUp, map: MarkMap): boolean {
    const end = Math.min(lookUp.done + OWNERS_PER_STEP, map.users.length);
    const previous = lookUp.against;
    if (previous) for (let i = lookUp.done; i < end; i++) lookUp.found[i] = this.unchangedSeries(previous, i, map.users[i]!);
    lookUp.done = end;
    return end < map.users.length;
  }

  /**
   * The previous mapping's series of an owner with the same attributes, at
   * the same index or at its address; undefined if none.
   * The previous mapping's series are all present, so nothing is to undo.
   */
  private unchangedSeries(previous: Lined, i: number, user: SeriesOwner): UserSeries | undefined {
    const atIndex = previous.series[i];
    // The same object first: a users document synced again keeps the owners it repeats (see PreviousScan).
    if (atIndex && (atIndex.user === user || sameAttributes(atIndex.user, user))) return atIndex;
    const j = previous.map.byIp.get(user.user_intra_ip);
    const atAddress = j === undefined ? undefined : previous.series[j];
    return atAddress && sameAttributes(atAddress.user, user) ? atAddress : undefined;
  }

  /** The user's series, present again if it was removed, new (from zero) if there is none. */
  private seriesOf(user: SeriesOwner, now: number): UserSeries {
    let entry = this.series.get(user);
    if (entry) delete entry.removedAt;
    else this.series.add((entry = { user, totals: zeroTotals(), since: now, placed: 0 }));
    return entry;
  }

  /**
   * Where a reading made with `map` adds its increases: owner i to the totals
   * of that mapping's owner i, null to unattributed; `measures` says which
   * totals (what MARK rules marked, or what shaper classes handled). A reading
   * that began before the latest users update (its mapping replaced while it
   * ran) finds its owners' series by their attributes; a user removed since
   * counts as unattributed.
   */
  sinkFor(map: MarkMap, measures: Measures = 'marked'): DeltaSink {
    const lined = map === this.current?.map ? this.current : { map, series: map.users.map((user) => this.presentSeries(user)), totals: [] as Totals[] };
    const seriesAt = (owner: number) => {
      // Users known by address: the reading may have made owners since the mapping was adopted.
      if (owner >= lined.series.length) this.lineUp(lined);
      return lined.series[owner];
    };
    if (measures === 'shaped') {
      return (owner, direction, packets, bytes, dropped = 0, overlimits = 0) => {
        const entry = owner === null ? undefined : seriesAt(owner);
        addShaped(entry ? (entry.shaped ??= zeroShaped()) : this.unattributedShaped, direction, packets, bytes, dropped, overlimits);
      };
    }
    // The hot path (a reading of 100,000 rules): the totals by index, made once per mapping.
    const { unattributed } = this;
    if (lined.totals.length !== lined.series.length) lined.totals = lined.series.map((entry) => entry?.totals ?? unattributed);
    const totals = lined.totals;
    return (owner, direction, packets, bytes) => {
      if (owner !== null && owner >= totals.length) {
        seriesAt(owner);
        for (let i = totals.length; i < lined.series.length; i++) totals.push(lined.series[i]?.totals ?? unattributed);
      }
      addTo(owner === null ? unattributed : totals[owner]!, direction, packets, bytes);
    };
  }

  /** Series for the owners a growing mapping made after it was adopted (the current mapping only; else none). */
  private lineUp(lined: Lined): void {
    const now = Date.now();
    const current = lined.map === this.current?.map;
    for (let i = lined.series.length; i < lined.map.users.length; i++) lined.series.push(current ? this.seriesOf(lined.map.users[i]!, now) : undefined);
  }

  private presentSeries(user: SeriesOwner): UserSeries | undefined {
    const entry = this.series.get(user);
    return entry && entry.removedAt === undefined ? entry : undefined;
  }

  /** Drops users removed more than `graceMs` ago and returns them. */
  expireRemoved(now: number, graceMs: number): SeriesOwner[] {
    const expired: UserSeries[] = [];
    this.series.forEach((entry) => {
      if (entry.removedAt !== undefined && now - entry.removedAt >= graceMs) expired.push(entry);
    });
    for (const entry of expired) this.series.delete(entry);
    return expired.map((entry) => entry.user);
  }

  /** Every exported user series (present users and removed ones still in their grace period). */
  users(): IterableIterator<UserSeries> {
    return this.series.values();
  }
}

/**
 * Series by their identity, their attributes (so a renamed user is a new
 * series, as it is for Prometheus), found through the address string the
 * owner holds anyway: a key string per series cost about 100 bytes (5 MB at
 * 50,000 users). Series that share an address (a user's marks, with the
 * breakdown by mark; a renamed user's old series in its grace period) are
 * told apart by their other attributes.
 */
class SeriesIndex {
  private readonly byIp = new Map<string, UserSeries | UserSeries[]>();

  get(owner: SeriesOwner): UserSeries | undefined {
    const found = this.byIp.get(owner.user_intra_ip);
    if (found === undefined) return undefined;
    if (Array.isArray(found)) return found.find((entry) => sameAttributes(entry.user, owner));
    return sameAttributes(found.user, owner) ? found : undefined;
  }

  /** A series whose attributes no other has. */
  add(entry: UserSeries): void {
    const ip = entry.user.user_intra_ip;
    const found = this.byIp.get(ip);
    if (found === undefined) this.byIp.set(ip, entry);
    else if (Array.isArray(found)) found.push(entry);
    else this.byIp.set(ip, [found, entry]);
  }

  delete(entry: UserSeries): void {
    const ip = entry.user.user_intra_ip;
    const found = this.byIp.get(ip);
    if (found === entry) this.byIp.delete(ip);
    else if (Array.isArray(found)) {
      const rest = found.filter((other) => other !== entry);
      if (rest.length === 1) this.byIp.set(ip, rest[0]!);
      else this.byIp.set(ip, rest);
    }
  }

  /** forEach rather than an iterator of entries: called after every reading, and an entry array per series was megabytes of garbage. */
  forEach(visit: (entry: UserSeries) => void): void {
    this.byIp.forEach((found) => (Array.isArray(found) ? found.forEach((entry) => visit(entry)) : visit(found)));
  }

  *values(): IterableIterator<UserSeries> {
    for (const found of this.byIp.values()) {
      if (Array.isArray(found)) yield* found;
      else yield found;
    }
  }
}

/** Whether two owners are one series' (the same attributes). */
function sameAttributes(a: SeriesOwner, b: SeriesOwner): boolean {
  return a.user_intra_ip === b.user_intra_ip && a.user_code === b.user_code && a.user_name === b.user_name && a.mark_id === b.mark_id && a.peer_ip === b.peer_ip;
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

/** Adds a shaper class's increases to one series' shaped totals. */
function addShaped(totals: ShapedTotals, direction: Direction, packets: Count, bytes: Count, dropped: Count, overlimits: Count): void {
  addTo(totals, direction, packets, bytes);
  if (direction === 'rx') {
    totals.rxDropped = addCount(totals.rxDropped, dropped);
    totals.rxOverlimits = addCount(totals.rxOverlimits, overlimits);
  } else {
    totals.txDropped = addCount(totals.txDropped, dropped);
    totals.txOverlimits = addCount(totals.txOverlimits, overlimits);
  }
}
