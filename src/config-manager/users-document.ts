/**
 * Pure validation of the users document (DESIGN.md, "Users document"). A
 * document is accepted whole or rejected whole with one UsersDocumentError
 * that names the source and the field.
 */
import { canonicalIp, isAddressOrPrefix } from '../address.js';
import { UsersDocumentError } from '../errors.js';
import { parseU32 } from '../mangle/parse.js';

export interface User {
  user_code: string;
  /** Canonical form (see canonicalIp). */
  user_intra_ip: string;
}

export interface MarkEntry {
  mark_id: number;
  sips: string[];
  dips: string[];
}

/** A validated users document: what a 'sync' carries. */
export interface UsersSnapshot {
  source: string;
  users: User[];
  marks: MarkEntry[];
}

export function parseUsersDocument(text: string, source: string): UsersSnapshot {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new UsersDocumentError(source, undefined, `not valid JSON (${(error as Error).message})`, { cause: error });
  }
  if (!isObject(doc)) throw new UsersDocumentError(source, undefined, 'must be a JSON object with a "users" array');
  if (!Array.isArray(doc.users)) throw new UsersDocumentError(source, 'users', 'must be an array');

  const users: User[] = [];
  const byIp = new Map<string, number>();
  doc.users.forEach((entry: unknown, i: number) => {
    const at = `users[${i}]`;
    if (!isObject(entry)) throw new UsersDocumentError(source, at, 'must be an object');
    const code = entry.user_code;
    if (typeof code !== 'string' || code.trim() === '') {
      throw new UsersDocumentError(source, `${at}.user_code`, `must be a non-empty string, got ${show(code)}`);
    }
    const rawIp = entry.user_intra_ip;
    const ip = typeof rawIp === 'string' ? canonicalIp(rawIp) : undefined;
    if (ip === undefined) {
      throw new UsersDocumentError(source, `${at}.user_intra_ip`, `must be an IPv4 or IPv6 address, got ${show(rawIp)}`);
    }
    const earlier = byIp.get(ip);
    if (earlier !== undefined) {
      throw new UsersDocumentError(source, `${at}.user_intra_ip`, `${ip} is already the address of users[${earlier}]`);
    }
    byIp.set(ip, i);
    users.push({ user_code: code, user_intra_ip: ip });
  });

  const marks: MarkEntry[] = [];
  if (doc.marks !== undefined) {
    if (!Array.isArray(doc.marks)) throw new UsersDocumentError(source, 'marks', 'must be an array when present');
    const seen = new Map<number, number>();
    doc.marks.forEach((entry: unknown, i: number) => {
      const at = `marks[${i}]`;
      if (!isObject(entry)) throw new UsersDocumentError(source, at, 'must be an object');
      const id = markId(entry.mark_id);
      if (id === undefined) {
        throw new UsersDocumentError(
          source,
          `${at}.mark_id`,
          `must be an integer from 0 to 4294967295 (or a string such as "0x65"), got ${show(entry.mark_id)}`,
        );
      }
      const earlier = seen.get(id);
      if (earlier !== undefined) {
        throw new UsersDocumentError(source, `${at}.mark_id`, `mark ${id} is already defined by marks[${earlier}]`);
      }
      seen.set(id, i);
      marks.push({ mark_id: id, sips: addressList(entry.sips, source, `${at}.sips`), dips: addressList(entry.dips, source, `${at}.dips`) });
    });
  }
  return { source, users, marks };
}

function markId(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 && value <= 0xffffffff ? value : undefined;
  if (typeof value === 'string') return parseU32(value.trim().toLowerCase());
  return undefined;
}

function addressList(value: unknown, source: string, field: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new UsersDocumentError(source, field, `must be an array of addresses, got ${show(value)}`);
  return value.map((item: unknown, i: number) => {
    if (typeof item !== 'string' || !isAddressOrPrefix(item)) {
      throw new UsersDocumentError(source, `${field}[${i}]`, `must be an IP address or prefix, got ${show(item)}`);
    }
    return item;
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 60 ? `${text.slice(0, 60)}…` : text;
}
