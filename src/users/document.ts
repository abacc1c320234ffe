/**
 * Pure validation of the users document (its form is in the README). A
 * document is accepted whole or rejected whole with one UsersDocumentError
 * that names the source and the field. A gateway's document lists tens of
 * thousands of users, so the happy path builds no strings for error messages.
 */
import { hostAddress, isAddressOrPrefix } from '../shared/address.js';
import { UsersDocumentError } from '../errors.js';
import { parseU32 } from '../shared/u32.js';
import { preview as show } from './preview.js';

export interface User {
  user_code: string;
  /** Canonical form (see canonicalIp). */
  user_intra_ip: string;
  /** A display name, when the document gives one: exported as the user_name attribute. */
  user_name?: string;
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
  const fail = (field: string | undefined, problem: string): never => {
    throw new UsersDocumentError(source, field, problem);
  };
  if (!isObject(doc)) fail(undefined, 'must be a JSON object with a "users" array');
  const { users: rawUsers, marks: rawMarks } = doc as Record<string, unknown>;
  if (!Array.isArray(rawUsers)) return fail('users', 'must be an array');

  const users: User[] = new Array(rawUsers.length);
  const byIp = new Map<string, number>();
  for (let i = 0; i < rawUsers.length; i++) {
    const entry: unknown = rawUsers[i];
    if (!isObject(entry)) fail(`users[${i}]`, 'must be an object');
    const { user_code: code, user_intra_ip: rawIp, user_name: name } = entry as Record<string, unknown>;
    if (typeof code !== 'string' || code.trim() === '') fail(`users[${i}].user_code`, `must be a non-empty string, got ${show(code)}`);
    // A bare address (no prefix): hostAddress returns it canonical.
    const ip = typeof rawIp === 'string' && !rawIp.includes('/') ? hostAddress(rawIp) : undefined;
    if (ip === undefined) return fail(`users[${i}].user_intra_ip`, `must be an IPv4 or IPv6 address, got ${show(rawIp)}`);
    const earlier = byIp.get(ip);
    if (earlier !== undefined) fail(`users[${i}].user_intra_ip`, `${ip} is already the address of users[${earlier}]`);
    byIp.set(ip, i);
    if (name !== undefined && (typeof name !== 'string' || name.trim() === '')) fail(`users[${i}].user_name`, `must be a non-empty string when present, got ${show(name)}`);
    users[i] = name === undefined ? { user_code: code as string, user_intra_ip: ip } : { user_code: code as string, user_intra_ip: ip, user_name: name as string };
  }

  const marks: MarkEntry[] = [];
  if (rawMarks !== undefined) {
    if (!Array.isArray(rawMarks)) fail('marks', 'must be an array when present');
    const seen = new Map<number, number>();
    const list = rawMarks as unknown[];
    for (let i = 0; i < list.length; i++) {
      const entry: unknown = list[i];
      if (!isObject(entry)) fail(`marks[${i}]`, 'must be an object');
      const { mark_id: rawId, sips: rawSips, dips: rawDips } = entry as Record<string, unknown>;
      const id = markId(rawId);
      if (id === undefined) {
        return fail(`marks[${i}].mark_id`, `must be an integer from 0 to 4294967295 (or a string such as "0x65"), got ${show(rawId)}`);
      }
      const earlier = seen.get(id);
      if (earlier !== undefined) fail(`marks[${i}].mark_id`, `mark ${id} is already defined by marks[${earlier}]`);
      seen.set(id, i);
      const sips = addressList(rawSips, (j, problem) => fail(`marks[${i}].sips${j}`, problem));
      const dips = addressList(rawDips, (j, problem) => fail(`marks[${i}].dips${j}`, problem));
      marks.push({ mark_id: id, sips, dips });
    }
  }
  return { source, users, marks };
}

function markId(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 && value <= 0xffffffff ? value : undefined;
  if (typeof value === 'string') return parseU32(value.trim().toLowerCase());
  return undefined;
}

/** Checks a list of addresses or prefixes. */
function addressList(value: unknown, fail: (index: string, problem: string) => never): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return fail('', `must be an array of addresses, got ${show(value)}`);
  for (let j = 0; j < value.length; j++) {
    const item: unknown = value[j];
    if (typeof item !== 'string' || !isAddressOrPrefix(item)) fail(`[${j}]`, `must be an IP address or prefix, got ${show(item)}`);
  }
  return value as string[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
