/**
 * Pure validation of the users document (its form is in the README). A
 * document is accepted whole or rejected whole with one UsersDocumentError
 * that names the source and the field. A gateway's document lists tens of
 * thousands of users, so the happy path builds no strings for error messages.
 */
import { UsersDocumentError } from '../errors.js';
import { scanUsersDocument, scanUsersDocumentNow, type PreviousScan } from './document-scan.js';
import { isName, isPoolAddress, markId, userIp } from './fields.js';
import { preview as show } from './preview.js';
import { inSlices } from './slices.js';

export interface User {
  user_code: string;
  /** Canonical form (see canonicalIp). */
  user_intra_ip: string;
  /** A display name, when the document gives one: exported as the user_name attribute. */
  user_name?: string;
}

export interface MarkEntry {
  mark_id: number;
  /** Read only: lists may be shared between entries. */
  sips: readonly string[];
  dips: readonly string[];
}

/** A validated users document: what a 'sync' carries. */
export interface UsersSnapshot {
  source: string;
  users: User[];
  /** A scanned snapshot makes these on first use: markCount counts them without that. */
  marks: MarkEntry[];
}

export { markCount } from './document-scan.js';

/**
 * The snapshot of a valid document; throws UsersDocumentError for any other.
 * The fast reading of document-scan.ts answers for the usual document; what it
 * leaves (an odd form, and every invalid document) is read the general way.
 */
export function parseUsersDocument(text: string, source: string): UsersSnapshot {
  return scanUsersDocumentNow(text, source) ?? parseUsersDocumentGenerally(text, source);
}

/**
 * The same, read in slices with pauses between them, so that readings run
 * while a large document is read (`onPause` is told of each). The general
 * way, when needed, is one slice: JSON.parse cannot be cut. `previous` (what
 * the last sync left, see PreviousScan) makes a document that repeats it
 * cheaper to read; the snapshot is the same without it.
 */
export async function parseUsersDocumentInSlices(text: string, source: string, onPause?: () => void, previous?: PreviousScan): Promise<UsersSnapshot> {
  return (await inSlices(scanUsersDocument(text, source, previous), onPause)) ?? parseUsersDocumentGenerally(text, source);
}

/** The general way: JSON.parse, then every field checked; the first problem is thrown, naming its field. */
export function parseUsersDocumentGenerally(text: string, source: string): UsersSnapshot {
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
    if (!isName(code)) fail(`users[${i}].user_code`, `must be a non-empty string, got ${show(code)}`);
    const ip = userIp(rawIp);
    if (ip === undefined) return fail(`users[${i}].user_intra_ip`, `must be an IPv4 or IPv6 address, got ${show(rawIp)}`);
    const earlier = byIp.get(ip);
    if (earlier !== undefined) fail(`users[${i}].user_intra_ip`, `${ip} is already the address of users[${earlier}]`);
    byIp.set(ip, i);
    if (name !== undefined && !isName(name)) fail(`users[${i}].user_name`, `must be a non-empty string when present, got ${show(name)}`);
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

/** Checks a list of addresses or prefixes. */
function addressList(value: unknown, fail: (index: string, problem: string) => never): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return fail('', `must be an array of addresses, got ${show(value)}`);
  for (let j = 0; j < value.length; j++) {
    const item: unknown = value[j];
    if (!isPoolAddress(item)) fail(`[${j}]`, `must be an IP address or prefix, got ${show(item)}`);
  }
  return value as string[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
