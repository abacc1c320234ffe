/**
 * Pure: the mapping the config manager's 'sync' rebuilds. mark -> user through
 * the mark pool (the user whose user_intra_ip is among the mark's sips/dips),
 * and ip -> user for rules whose mark the pool lacks. Users are referred to by
 * their key (see userKey), computed once here rather than once per rule.
 */
import { hostAddress } from '../address.js';
import type { User, UsersSnapshot } from '../config-manager/users-document.js';

/** The key of a user's series: its address and code (both are series attributes). */
export function userKey(user: User): string {
  return `${user.user_intra_ip} ${user.user_code}`;
}

export interface MarkMap {
  users: readonly User[];
  /** Marks the pool knows: to their user's key, or null when no user's address is among sips/dips. */
  byMark: ReadonlyMap<number, string | null>;
  /** Canonical address -> user key. */
  byIp: ReadonlyMap<string, string>;
  /** Pool entries whose sips/dips hold the addresses of more than one user (the first one wins). */
  conflicts: { mark_id: number; users: string[] }[];
}

export function buildMarkMap(snapshot: UsersSnapshot): MarkMap {
  const byIp = new Map<string, string>();
  const codes = new Map<string, string>();
  for (const user of snapshot.users) {
    const key = userKey(user);
    byIp.set(user.user_intra_ip, key);
    codes.set(key, user.user_code);
  }

  const byMark = new Map<number, string | null>();
  const conflicts: MarkMap['conflicts'] = [];
  for (const entry of snapshot.marks) {
    const owners: string[] = [];
    for (const address of [...entry.sips, ...entry.dips]) {
      const host = hostAddress(address);
      const key = host === undefined ? undefined : byIp.get(host);
      if (key !== undefined && !owners.includes(key)) owners.push(key);
    }
    byMark.set(entry.mark_id, owners[0] ?? null);
    if (owners.length > 1) conflicts.push({ mark_id: entry.mark_id, users: owners.map((k) => codes.get(k)!) });
  }
  return { users: snapshot.users, byMark, byIp, conflicts };
}

/** An empty mapping: every rule is unattributed until the first 'sync'. */
export const EMPTY_MARK_MAP: MarkMap = buildMarkMap({ source: '(none)', users: [], marks: [] });
