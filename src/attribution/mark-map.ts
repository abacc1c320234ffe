/**
 * Pure: the mapping the config manager's 'sync' rebuilds. mark -> user through
 * the mark pool (the user whose user_intra_ip is among the mark's sips/dips),
 * and ip -> user for rules whose mark the pool lacks. Users are numbered by
 * their place in `users`, so a reading can sum per user in arrays.
 */
import { hostAddress } from '../address.js';
import type { User, UsersSnapshot } from '../config-manager/users-document.js';

/** The key of a user's series: its address and code (both are series attributes). */
export function userKey(user: User): string {
  return `${user.user_intra_ip} ${user.user_code}`;
}

/** byMark's value for a mark the pool knows but no user owns. */
export const NO_USER = -1;

export interface MarkMap {
  users: readonly User[];
  /** userKey of users[i], computed once. */
  keys: readonly string[];
  /** Marks the pool knows: to their user's index, or NO_USER. */
  byMark: ReadonlyMap<number, number>;
  /** Canonical address -> user index. */
  byIp: ReadonlyMap<string, number>;
  /** Pool entries whose sips/dips hold the addresses of more than one user (the first one wins). */
  conflicts: { mark_id: number; users: string[] }[];
}

export function buildMarkMap(snapshot: UsersSnapshot): MarkMap {
  const users = snapshot.users;
  const byIp = new Map<string, number>();
  users.forEach((user, i) => byIp.set(user.user_intra_ip, i));

  const byMark = new Map<number, number>();
  const conflicts: MarkMap['conflicts'] = [];
  for (const entry of snapshot.marks) {
    let owner = NO_USER;
    let others: number[] | undefined;
    for (const address of entry.sips.concat(entry.dips)) {
      const host = hostAddress(address);
      const user = host === undefined ? undefined : byIp.get(host);
      if (user === undefined || user === owner) continue;
      if (owner === NO_USER) owner = user;
      else if (!others?.includes(user)) (others ??= []).push(user);
    }
    byMark.set(entry.mark_id, owner);
    if (others) conflicts.push({ mark_id: entry.mark_id, users: [owner, ...others].map((i) => users[i]!.user_code) });
  }
  return { users, keys: users.map(userKey), byMark, byIp, conflicts };
}

/** An empty mapping: every rule is unattributed until the first 'sync'. */
export const EMPTY_MARK_MAP: MarkMap = buildMarkMap({ source: '(none)', users: [], marks: [] });
