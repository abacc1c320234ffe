/**
 * Pure: the mapping the config manager's 'sync' rebuilds. mark -> user through
 * the mark pool (the user whose user_intra_ip is among the mark's sips/dips),
 * and ip -> user for rules whose mark the pool lacks. The series owners are
 * numbered by their place in `users`, so a reading can sum per owner in arrays.
 *
 * With `breakdown: 'mark'` the owners are a user's marks: one series per pool
 * mark a user owns (with its mark_id and peer_ip), plus one per user for the
 * marks the pool lacks (mark_id "", counted by the rules' addresses).
 */
import type { MarkEntry, User, UsersSnapshot } from '../users/document.js';
import { mappingOf, markCount } from '../users/document-scan.js';
import { poolHost } from '../users/fields.js';

export type Breakdown = 'user' | 'mark';

/** Who a series belongs to: a user, or (breakdown by mark) one of a user's marks. */
export interface SeriesOwner extends User {
  mark_id?: string;
  peer_ip?: string;
}

let lastId = 0;

/** byMark's value for a mark the pool knows but no user owns. */
export const NO_USER = -1;

export interface MarkMap {
  /** Differs between any two mappings of this process: lets per-rule caches name a mapping without holding it. */
  id: number;
  /** The series owners: the users, or with breakdown by mark the users' marks. */
  users: readonly SeriesOwner[];
  /** Marks the pool knows: to their user's index, or NO_USER. */
  byMark: ReadonlyMap<number, number>;
  /** Canonical address -> user index. */
  byIp: ReadonlyMap<string, number>;
  /** Pool entries whose sips/dips hold the addresses of more than one user (the first one wins). */
  conflicts: { mark_id: number; users: string[] }[];
  /**
   * Without a users document (phase 1 of the requirements): users are known
   * by address, and a rule's address that no owner has yet becomes one (see
   * ownerByAddress), up to this many owners.
   */
  byAddress?: { maxOwners: number };
}

export function buildMarkMap(snapshot: UsersSnapshot, breakdown: Breakdown = 'user'): MarkMap {
  const builder = new MarkMapBuilder(snapshot, breakdown);
  while (builder.step(Infinity));
  return builder.result();
}

/** Pool entries mapped between two pauses of markMapSteps. */
export const MARKS_PER_STEP = 2048;

/**
 * The same mapping, made in steps: yields between slices of the pool, so that
 * readings can run while a large document is mapped; returns the mapping,
 * which nothing sees before it is whole.
 */
export function* markMapSteps(snapshot: UsersSnapshot, breakdown: Breakdown = 'user'): Generator<void, MarkMap> {
  const builder = new MarkMapBuilder(snapshot, breakdown);
  // The loop over the pool is the builder's (a generator's own loops are never optimised).
  while (builder.step(MARKS_PER_STEP)) yield;
  return builder.result();
}

class MarkMapBuilder {
  private readonly users: SeriesOwner[];
  private readonly byIp: Map<string, number> | ReadonlyMap<string, number> = new Map<string, number>();
  private readonly byMark: Map<number, number> | ReadonlyMap<number, number> = new Map<number, number>();
  private readonly conflicts: MarkMap['conflicts'] = [];
  /** The user of each pool address seen (NO_USER: none), so that an address named by many marks is looked at once. */
  private readonly userOfAddress = new Map<string, number>();
  private next = 0;
  /** How many pool entries the snapshot has: counted without making them (a scanned snapshot makes them on first use). */
  private readonly count: number;

  constructor(
    private readonly snapshot: UsersSnapshot,
    private readonly breakdown: Breakdown,
  ) {
    this.count = markCount(snapshot);
    this.users = breakdown === 'mark' ? snapshot.users.map((u) => ({ ...u, mark_id: '', peer_ip: '' })) : snapshot.users;
    // Series by user: what the document's scan already mapped (its -1 is NO_USER) is the mapping.
    const scanned = breakdown === 'user' ? mappingOf(snapshot) : undefined;
    if (scanned) {
      this.byIp = scanned.byIp;
      this.byMark = scanned.byMark;
      this.next = this.count;
      return;
    }
    const byIp = this.byIp as Map<string, number>;
    for (let i = 0; i < this.users.length; i++) byIp.set(this.users[i]!.user_intra_ip, i);
  }

  /** Maps up to `count` more pool entries; false when the pool is done. */
  step(count: number): boolean {
    if (this.next === this.count) return false;
    const { marks } = this.snapshot;
    const end = Math.min(this.count, this.next + count);
    for (; this.next < end; this.next++) this.add(marks[this.next]!);
    return this.next < this.count;
  }

  result(): MarkMap {
    const { users, byMark, byIp, conflicts } = this;
    return { id: ++lastId, users, byMark, byIp, conflicts };
  }

  private add(entry: MarkEntry): void {
    let owner = NO_USER;
    let others: number[] | undefined;
    for (let k = 0, n = entry.sips.length + entry.dips.length; k < n; k++) {
      const user = this.userOf(k < entry.sips.length ? entry.sips[k]! : entry.dips[k - entry.sips.length]!);
      if (user === NO_USER || user === owner) continue;
      if (owner === NO_USER) owner = user;
      else if (!others?.includes(user)) (others ??= []).push(user);
    }
    const { users } = this;
    if (others) this.conflicts.push({ mark_id: entry.mark_id, users: [owner, ...others].map((i) => users[i]!.user_code) });
    if (this.breakdown === 'mark' && owner !== NO_USER) {
      // The mark's own series; its peer is the first other host of the pool entry.
      const user = users[owner]!;
      const peer = entry.sips.concat(entry.dips).map(poolHost).find((h) => h !== undefined && h !== user.user_intra_ip) ?? '';
      const { mark_id: _user, peer_ip: _peer, ...named } = user;
      users.push({ ...named, mark_id: String(entry.mark_id), peer_ip: peer });
      owner = users.length - 1;
    }
    (this.byMark as Map<number, number>).set(entry.mark_id, owner);
  }

  /** The user whose address a pool address names, or NO_USER. */
  private userOf(address: string): number {
    let user = this.userOfAddress.get(address);
    if (user === undefined) {
      const host = poolHost(address);
      user = (host === undefined ? undefined : this.byIp.get(host)) ?? NO_USER;
      this.userOfAddress.set(address, user);
    }
    return user;
  }
}

/**
 * The host of a rule address such as `10.8.0.2/32` or `fd00::2/128`;
 * undefined for a wider prefix, which is no single user. iptables and tc print
 * addresses canonically (inet_ntop), the form byIp is keyed by, so no parsing
 * is needed.
 */
function hostOf(address: string): string | undefined {
  const slash = address.indexOf('/');
  if (slash === -1) return address;
  return address.slice(slash + 1) === (address.includes(':') ? '128' : '32') ? address.slice(0, slash) : undefined;
}

/** Whether a rule address names one host (a wider prefix does not). */
export function isHostAddress(address: string): boolean {
  return hostOf(address) !== undefined;
}

/** The owner of a rule address; undefined when it is no user's host address. */
export function ownerOfAddress(map: MarkMap, address: string): number | undefined {
  const host = hostOf(address);
  return host === undefined ? undefined : map.byIp.get(host);
}

/** A mapping for users known by address alone: it starts empty and grows with the addresses rules carry. */
export function addressMarkMap(maxOwners: number): MarkMap {
  return { id: ++lastId, users: [], byMark: new Map(), byIp: new Map(), conflicts: [], byAddress: { maxOwners } };
}

/**
 * The owner of a rule's host address in a by-address mapping, made when the
 * address is new: its user_code and user_intra_ip are the address itself (as
 * iptables prints it). Undefined for a wider prefix, or past maxOwners.
 */
export function ownerByAddress(map: MarkMap, address: string): number | undefined {
  const host = hostOf(address);
  const found = host === undefined ? undefined : map.byIp.get(host);
  if (found !== undefined || host === undefined || !map.byAddress || map.users.length >= map.byAddress.maxOwners) return found;
  // Owned by the mapping alone, so it may grow: readings add owners, the accumulator lines up with them.
  const owner = (map.users as SeriesOwner[]).push({ user_code: host, user_intra_ip: host }) - 1;
  (map.byIp as Map<string, number>).set(host, owner);
  return owner;
}

/** An empty mapping: every rule is unattributed until the first 'sync'. */
export const EMPTY_MARK_MAP: MarkMap = buildMarkMap({ source: '(none)', users: [], marks: [] });
