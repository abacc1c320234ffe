/**
 * Pure: a fast reading of the users document, straight from its text. A
 * gateway's document lists 50,000 users and 100,000 marks: JSON.parse alone
 * makes an object, an array or a string of each of their 400,000 parts, and
 * holds the event loop for the whole of it. This reads the text once, keeps
 * only what the snapshot holds, and pauses (yields) every ENTRIES_PER_STEP
 * entries so that its caller can let readings run between slices.
 *
 * It answers only when sure. Strict JSON for everything it reads (a string
 * with escapes is decoded by JSON.parse itself); anything invalid, and what it
 * leaves to the general reader (a key repeated where JSON.parse would keep
 * the last, an entry field that is not a string where one is wanted, nesting
 * past MAX_DEPTH in an ignored field), gives undefined: document.ts then reads
 * the document the general way, for the same snapshot or the error that names
 * the field.
 */
import type { MarkEntry, User, UsersSnapshot } from './document.js';
import { isName, isPoolAddress, markId, poolHost, userIp } from './fields.js';

/** Entries read between two pauses: about half a millisecond's work. */
export const ENTRIES_PER_STEP = 512;

/** Ignored fields nested deeper than this are left to the general reader (no recursion past it). */
const MAX_DEPTH = 64;

const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const COLON = 58;
const OPEN_ARRAY = 91;
const CLOSE_ARRAY = 93;
const OPEN_OBJECT = 123;
const CLOSE_OBJECT = 125;

/** Yields between slices; returns the snapshot, or undefined when the general reader must decide. */
export function* scanUsersDocument(text: string, source: string): Generator<void, UsersSnapshot | undefined> {
  const scan = new Scanner(text);
  const users: User[] = [];
  const marks: MarkEntry[] = [];
  let seenUsers = false;
  let seenMarks = false;
  scan.space();
  if (!scan.eat(OPEN_OBJECT)) return undefined;
  scan.space();
  if (!scan.eat(CLOSE_OBJECT)) {
    for (;;) {
      const key = scan.string();
      if (key === undefined) return undefined;
      scan.space();
      if (!scan.eat(COLON)) return undefined;
      scan.space();
      if (key === 'users' || key === 'marks') {
        const isUsers = key === 'users';
        if (isUsers ? seenUsers : seenMarks) return undefined;
        if (isUsers) seenUsers = true;
        else {
          seenMarks = true;
          // The owners of marks are known as they are read only when every user was read first.
          scan.mapping &&= seenUsers;
        }
        if (!scan.eat(OPEN_ARRAY)) return undefined;
        scan.space();
        if (!scan.eat(CLOSE_ARRAY)) {
          // The loop over entries is the Scanner's (a generator's own loops are never optimised).
          for (;;) {
            const more = isUsers ? scan.users(users, ENTRIES_PER_STEP) : scan.marks(marks, ENTRIES_PER_STEP);
            if (more === undefined) return undefined;
            if (!more) break;
            yield;
          }
        }
      } else if (!scan.skipValue(0)) return undefined;
      scan.space();
      if (scan.eat(CLOSE_OBJECT)) break;
      if (!scan.eat(COMMA)) return undefined;
      scan.space();
    }
  }
  scan.space();
  if (scan.pos !== text.length || !seenUsers) return undefined;
  const snapshot = { source, users, marks };
  if (scan.mapping) mapped.set(snapshot, { byIp: scan.byIp, byMark: scan.byMark });
  return snapshot;
}

/**
 * What the scan already knows of the mapping of a snapshot it made (every
 * user read before the marks, and no mark with the addresses of two users):
 * address -> user index, and mark -> user index or -1 (no user). The mark map
 * takes it rather than look everything up again. A snapshot is not changed
 * after it is made; one made from it (limits.maxUsers) has none.
 */
export function mappingOf(snapshot: UsersSnapshot): ScannedMapping | undefined {
  return mapped.get(snapshot);
}

export interface ScannedMapping {
  byIp: ReadonlyMap<string, number>;
  byMark: ReadonlyMap<number, number>;
}

const mapped = new WeakMap<UsersSnapshot, ScannedMapping>();

/** What the scan keeps of a pool address: the list of it alone, and its user (-1: none). */
interface PoolAddress {
  alone: readonly string[];
  user: number;
}

/** Reads the whole text at once (no pauses). */
export function scanUsersDocumentNow(text: string, source: string): UsersSnapshot | undefined {
  const steps = scanUsersDocument(text, source);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/** A position in the text and the strict JSON pieces read from it; each method leaves `pos` after what it read. */
class Scanner {
  pos = 0;
  /** Canonical user_intra_ip -> user index (and the check that no address is given twice). */
  readonly byIp = new Map<string, number>();
  /** mark_id -> its user's index or -1 (and the check that no mark_id is given twice). */
  readonly byMark = new Map<number, number>();
  /** Whether byMark holds the mapping's owners (see mappingOf). */
  mapping = true;

  constructor(private readonly text: string) {}

  space(): void {
    const { text } = this;
    let i = this.pos;
    for (;;) {
      const c = text.charCodeAt(i);
      if (c !== 32 && c !== 10 && c !== 13 && c !== 9) break;
      i++;
    }
    this.pos = i;
  }

  eat(c: number): boolean {
    if (this.text.charCodeAt(this.pos) !== c) return false;
    this.pos++;
    return true;
  }

  /** Whether the text holds `"name"` here (a key without escapes); if so, reads it. */
  key(name: string): boolean {
    const { text, pos } = this;
    if (text.charCodeAt(pos) !== QUOTE || text.charCodeAt(pos + name.length + 1) !== QUOTE || !text.startsWith(name, pos + 1)) return false;
    this.pos = pos + name.length + 2;
    return true;
  }

  /** A JSON string's value; undefined when there is none here or it is not valid JSON. */
  string(): string | undefined {
    const end = this.stringEnd();
    if (end < 0) return undefined;
    const start = this.pos;
    this.pos = end + 1;
    if (!this.escaped) return this.text.slice(start + 1, end);
    try {
      return JSON.parse(this.text.slice(start, end + 1)) as string;
    } catch {
      return undefined;
    }
  }

  /** Whether the last string seen held a backslash. */
  private escaped = false;

  /** Where the string starting here ends (its closing quote), or -1. */
  private stringEnd(): number {
    const { text } = this;
    if (text.charCodeAt(this.pos) !== QUOTE) return -1;
    this.escaped = false;
    for (let i = this.pos + 1; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) return i;
      if (c === BACKSLASH) {
        this.escaped = true;
        i++;
      } else if (c < 32) return -1;
    }
    return -1;
  }

  /** Where the JSON number starting here ends, or -1. */
  private numberEnd(): number {
    const { text } = this;
    let i = this.pos;
    if (text.charCodeAt(i) === 45 /* - */) i++;
    if (text.charCodeAt(i) === 48 /* 0 */) i++;
    else if ((i = digitsEnd(text, i)) < 0) return -1;
    if (text.charCodeAt(i) === 46 /* . */ && (i = digitsEnd(text, i + 1)) < 0) return -1;
    if ((text.charCodeAt(i) | 32) === 101 /* e */) {
      i++;
      const sign = text.charCodeAt(i);
      if (sign === 43 || sign === 45) i++;
      if ((i = digitsEnd(text, i)) < 0) return -1;
    }
    return i;
  }

  /** Passes over any JSON value (an ignored field's). */
  skipValue(depth: number): boolean {
    const { text } = this;
    const c = text.charCodeAt(this.pos);
    if (c === QUOTE) return this.string() !== undefined;
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (depth >= MAX_DEPTH) return false;
      const object = c === OPEN_OBJECT;
      const close = object ? CLOSE_OBJECT : CLOSE_ARRAY;
      this.pos++;
      this.space();
      if (this.eat(close)) return true;
      for (;;) {
        if (object) {
          if (this.string() === undefined) return false;
          this.space();
          if (!this.eat(COLON)) return false;
          this.space();
        }
        if (!this.skipValue(depth + 1)) return false;
        this.space();
        if (this.eat(close)) return true;
        if (!this.eat(COMMA)) return false;
        this.space();
      }
    }
    const word = c === 116 ? 'true' : c === 102 ? 'false' : c === 110 ? 'null' : undefined;
    if (word !== undefined) {
      if (!text.startsWith(word, this.pos)) return false;
      this.pos += word.length;
      return true;
    }
    const end = this.numberEnd();
    if (end < 0) return false;
    this.pos = end;
    return true;
  }

  /**
   * Reads up to `count` entries of the `users` array (the reading is inside
   * it, past its '['): true when more follow, false after its ']', undefined
   * when the general reader must decide.
   */
  users(users: User[], count: number): boolean | undefined {
    for (let n = 0; n < count; n++) {
      if (!this.user(users)) return undefined;
      const end = this.afterEntry();
      if (end !== true) return end === undefined ? undefined : false;
    }
    return true;
  }

  /** The same for the `marks` array. */
  marks(marks: MarkEntry[], count: number): boolean | undefined {
    for (let n = 0; n < count; n++) {
      if (!this.mark(marks)) return undefined;
      const end = this.afterEntry();
      if (end !== true) return end === undefined ? undefined : false;
    }
    return true;
  }

  /** After an array's entry: true at a ',' (another entry follows), false at the ']', undefined for anything else. */
  private afterEntry(): boolean | undefined {
    this.space();
    if (this.eat(CLOSE_ARRAY)) return false;
    if (!this.eat(COMMA)) return undefined;
    this.space();
    return true;
  }

  /** Reads one `users` entry into `users`; false when it is not sure to be valid. */
  user(users: User[]): boolean {
    if (!this.eat(OPEN_OBJECT)) return false;
    let code: string | undefined;
    let rawIp: string | undefined;
    let name: string | undefined;
    this.space();
    if (!this.eat(CLOSE_OBJECT)) {
      for (;;) {
        // The usual keys are matched in place; any other key is read (it may spell one with escapes).
        let field = this.key('user_code') ? 1 : this.key('user_intra_ip') ? 2 : this.key('user_name') ? 3 : 0;
        if (field === 0) {
          const key = this.string();
          if (key === undefined) return false;
          field = key === 'user_code' ? 1 : key === 'user_intra_ip' ? 2 : key === 'user_name' ? 3 : 0;
        }
        this.space();
        if (!this.eat(COLON)) return false;
        this.space();
        if (field === 0) {
          if (!this.skipValue(0)) return false;
        } else {
          // Repeated (JSON.parse keeps the last) or not a string (an error to word): the general reader's.
          if ((field === 1 ? code : field === 2 ? rawIp : name) !== undefined) return false;
          const value = this.string();
          if (value === undefined) return false;
          if (field === 1) code = value;
          else if (field === 2) rawIp = value;
          else name = value;
        }
        this.space();
        if (this.eat(CLOSE_OBJECT)) break;
        if (!this.eat(COMMA)) return false;
        this.space();
      }
    }
    const valid = userIp(rawIp);
    if (!isName(code) || valid === undefined || (name !== undefined && !isName(name))) return false;
    const ip = own(valid);
    // One Set operation: an address seen before leaves the size as it was.
    const { byIp } = this;
    const known = byIp.size;
    if (byIp.set(ip, users.length).size === known) return false;
    users.push(name === undefined ? { user_code: own(code), user_intra_ip: ip } : { user_code: own(code), user_intra_ip: ip, user_name: own(name) });
    return true;
  }

  /** Reads one `marks` entry into `marks`; false when it is not sure to be valid. */
  mark(marks: MarkEntry[]): boolean {
    if (!this.eat(OPEN_OBJECT)) return false;
    let id: number | undefined;
    let sips: readonly string[] | undefined;
    let dips: readonly string[] | undefined;
    // The first user each list names, and whether it names another.
    let sipsUser = -1;
    let dipsUser = -1;
    let mixed = false;
    let seenId = false;
    this.space();
    if (!this.eat(CLOSE_OBJECT)) {
      for (;;) {
        let field = this.key('mark_id') ? 1 : this.key('sips') ? 2 : this.key('dips') ? 3 : 0;
        if (field === 0) {
          const key = this.string();
          if (key === undefined) return false;
          field = key === 'mark_id' ? 1 : key === 'sips' ? 2 : key === 'dips' ? 3 : 0;
        }
        this.space();
        if (!this.eat(COLON)) return false;
        this.space();
        if (field === 0) {
          if (!this.skipValue(0)) return false;
        } else if (field === 1) {
          if (seenId) return false;
          seenId = true;
          id = this.markIdValue();
          if (id === undefined) return false;
        } else {
          if ((field === 2 ? sips : dips) !== undefined) return false;
          const list = this.addresses();
          if (list === undefined) return false;
          mixed ||= this.listMixed;
          if (field === 2) (sips = list), (sipsUser = this.listUser);
          else (dips = list), (dipsUser = this.listUser);
        }
        this.space();
        if (this.eat(CLOSE_OBJECT)) break;
        if (!this.eat(COMMA)) return false;
        this.space();
      }
    }
    if (id === undefined) return false;
    // Its owner: the first user among its sips, then its dips; one naming two users is the mark map's to report.
    if (mixed || (sipsUser >= 0 && dipsUser >= 0 && sipsUser !== dipsUser)) this.mapping = false;
    const { byMark } = this;
    const known = byMark.size;
    if (byMark.set(id, sipsUser >= 0 ? sipsUser : dipsUser).size === known) return false;
    marks.push({ mark_id: id, sips: sips ?? NO_ADDRESSES, dips: dips ?? NO_ADDRESSES });
    return true;
  }

  /** A valid mark_id (a JSON number or string), or undefined. */
  private markIdValue(): number | undefined {
    if (this.text.charCodeAt(this.pos) === QUOTE) return markId(this.string());
    const end = this.numberEnd();
    if (end < 0) return undefined;
    // The usual id is a few plain digits: their value, exactly, without a string for Number().
    let value = 0;
    for (let i = this.pos; i < end && value >= 0; i++) {
      const c = this.text.charCodeAt(i);
      value = c >= 48 && c <= 57 && end - this.pos <= 10 ? value * 10 + (c - 48) : -1;
    }
    if (value < 0) value = Number(this.text.slice(this.pos, end));
    this.pos = end;
    return markId(value);
  }

  /**
   * A JSON array of valid pool addresses, or undefined. A pool names the same
   * peers and users over and over: each distinct address is checked once, and
   * a list of one address (the usual) is one shared, frozen array.
   */
  private addresses(): readonly string[] | undefined {
    this.listUser = -1;
    this.listMixed = false;
    if (!this.eat(OPEN_ARRAY)) return undefined;
    this.space();
    if (this.eat(CLOSE_ARRAY)) return NO_ADDRESSES;
    let list: string[] | undefined;
    for (;;) {
      const item = this.poolAddress();
      if (item === undefined) return undefined;
      if (item.user >= 0 && item.user !== this.listUser) {
        if (this.listUser >= 0) this.listMixed = true;
        else this.listUser = item.user;
      }
      this.space();
      if (this.eat(CLOSE_ARRAY)) {
        if (list === undefined) return item.alone;
        list.push(item.alone[0]!);
        return list;
      }
      if (!this.eat(COMMA)) return undefined;
      this.space();
      (list ??= []).push(item.alone[0]!);
    }
  }

  /** Of the last list read: the first user it names (-1: none), and whether it names another. */
  private listUser = -1;
  private listMixed = false;

  /**
   * Each pool address read so far, found again from the text without making
   * a string of it (a pool names the same addresses over and over: 200,000
   * reads of 50,001 addresses): an open-addressing table of indexes into
   * `seen`, by a hash of the address's characters.
   */
  private readonly seen: PoolAddress[] = [];
  private slots = new Int32Array(1024);
  /** 32 - log2(slots.length): a slot is the top bits of the hash times the golden ratio (near hashes, as of 10.8.0.2 and 10.8.0.3, land far apart). */
  private shift = 22;

  private poolAddress(): PoolAddress | undefined {
    const { text } = this;
    const start = this.pos + 1;
    if (text.charCodeAt(this.pos) !== QUOTE) return undefined;
    let hash = 0;
    let end = start;
    for (; end < text.length; end++) {
      const c = text.charCodeAt(end);
      if (c === QUOTE) break;
      // Escapes and control characters: the general string reading decides.
      if (c === BACKSLASH || c < 32) return this.newPoolAddress(-1);
      hash = (Math.imul(hash, 31) + c) | 0;
    }
    if (end >= text.length) return undefined;
    const { slots, seen } = this;
    const mask = slots.length - 1;
    let slot = Math.imul(hash, 0x9e3779b1) >>> this.shift;
    for (let at = slots[slot]!; at !== 0; at = slots[(slot = (slot + 1) & mask)]!) {
      const known = seen[at - 1]!;
      const address = known.alone[0]!;
      if (address.length === end - start && text.startsWith(address, start)) {
        this.pos = end + 1;
        return known;
      }
    }
    return this.newPoolAddress(slot);
  }

  /** Reads a pool address not seen yet (at `slot` of the table, or -1: not to be put there). */
  private newPoolAddress(slot: number): PoolAddress | undefined {
    const item = this.string();
    if (item === undefined || !isPoolAddress(item)) return undefined;
    const host = this.mapping ? poolHost(item) : undefined;
    const user = host === undefined ? undefined : this.byIp.get(host);
    const entry = { alone: Object.freeze([own(item)]), user: user ?? -1 };
    if (slot >= 0) {
      this.seen.push(entry);
      this.slots[slot] = this.seen.length;
      if (2 * this.seen.length > this.slots.length) this.rehash();
    }
    return entry;
  }

  /** A table twice as large, for the addresses seen. */
  private rehash(): void {
    const slots = new Int32Array(2 * this.slots.length);
    const mask = slots.length - 1;
    this.shift--;
    for (let i = 0; i < this.seen.length; i++) {
      const address = this.seen[i]!.alone[0]!;
      let hash = 0;
      for (let k = 0; k < address.length; k++) hash = (Math.imul(hash, 31) + address.charCodeAt(k)) | 0;
      let slot = Math.imul(hash, 0x9e3779b1) >>> this.shift;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = i + 1;
    }
    this.slots = slots;
  }
}

const NO_ADDRESSES: readonly string[] = Object.freeze([]);

/**
 * A string read from the text, as one the snapshot may keep: V8 makes a slice
 * of 13 characters or more a view that holds the whole text (megabytes, for
 * as long as the user is known). Concatenation and a slice of that copy it.
 */
function own(value: string): string {
  return value.length < 13 ? value : (value + ' ').slice(0, -1);
}

/** Where the run of one or more digits from `i` ends, or -1 when there is none. */
function digitsEnd(text: string, i: number): number {
  const from = i;
  for (let c = text.charCodeAt(i); c >= 48 && c <= 57; c = text.charCodeAt(++i));
  return i > from ? i : -1;
}
