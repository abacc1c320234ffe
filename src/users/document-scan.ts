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
import { createHash } from 'node:crypto';
import type { MarkEntry, User, UsersSnapshot } from './document.js';
import { isName, isPoolAddress, markId, poolHost, userIp } from './fields.js';
import { grown } from '../shared/grown.js';

/** Entries read between two pauses: about half a millisecond's work. */
export const ENTRIES_PER_STEP = 512;

/**
 * A block (see Blocks) ends after an entry whose key (a user's address as
 * written, a mark's id) hashes to 0 in this many: about as many entries on
 * average. The cuts are where the entries say, not where an index says, so
 * an entry inserted or removed changes the block around it, never the ones
 * after it.
 */
const BLOCK_CUT = 256;
/** Whether a key whose hash is `hash` ends a block (see BLOCK_CUT). */
function endsBlock(hash: number): boolean {
  return Math.imul(hash, 0x9e3779b1) >>> 0 < 2 ** 32 / BLOCK_CUT;
}

/** Whether a block ends after a user whose address is written `address` (without escapes), whatever its index: for tests that move whole blocks. */
export function userEndsBlock(address: string): boolean {
  return endsBlock(hashOf(address, 0, address.length));
}

/** Whether a block ends after the mark `id`, whatever its index. */
export function markEndsBlock(id: number): boolean {
  return endsBlock(id | 0);
}

/** A block ends after this many entries whatever their keys (a digest of a block costs its length). */
const MAX_BLOCK = 2048;

/** Characters at the start and at the end of a block whose hashes find the blocks of the last document a block may repeat. */
const HEAD = 64;

/** Blocks of entries taken again (see Blocks) between two pauses: each costs a digest of its text, far less than reading it. */
const BLOCKS_TAKEN_PER_STEP = 16;

/** Map entries made between two pauses, when a mapping differs from the previous one. */
const MAP_ENTRIES_PER_STEP = 4096;

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

/**
 * What the last sync leaves that the next scan may take again, when the new
 * document repeats it (a synced document mostly repeats the last one): its
 * users, whose objects are kept for entries that spell the same fields, and
 * the mapping its scan made (mappingOf), kept when the new one is the same;
 * beside them, the blocks of users and marks as the last text wrote them
 * (see Blocks), taken again where the new text writes them the same. Only
 * the cost depends on it, never the result: everything is compared with the
 * new text exactly (a block by its SHA-256 digest). `byIp` and `byMark`, when given, must be the
 * mapping of a snapshot whose users are `users`. A scan that keeps byMark
 * keeps what it read beside it, for the next scan, in place of what was.
 */
export interface PreviousScan {
  users: readonly User[];
  byIp?: ReadonlyMap<string, number>;
  byMark?: ReadonlyMap<number, number>;
}

const NOTHING_BEFORE: PreviousScan = { users: [] };

/** Yields between slices; returns the snapshot, or undefined when the general reader must decide. */
export function* scanUsersDocument(text: string, source: string, previous: PreviousScan = NOTHING_BEFORE): Generator<void, UsersSnapshot | undefined> {
  const scan = new Scanner(text, previous);
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
            const more = isUsers ? scan.readUsers(ENTRIES_PER_STEP) : scan.readMarks(ENTRIES_PER_STEP);
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
  const { users } = scan;
  const marks = scan.compactMarks();
  const snapshot = snapshotOf(source, users, marks);
  if (scan.mapping) {
    // The previous mapping when it is the same (the usual sync), else one made in steps.
    let byIp = scan.sameByIp();
    if (!byIp) {
      const made = new Map<string, number>();
      for (let next = 0; next < users.length; yield) next = scan.mapAddresses(made, next, MAP_ENTRIES_PER_STEP);
      byIp = made;
    }
    let byMark = scan.sameByMark();
    if (!byMark) {
      const made = new Map<number, number>();
      for (let next = 0; next < marks.count; yield) next = scan.mapMarks(made, next, MAP_ENTRIES_PER_STEP);
      byMark = made;
      placesOf.set(made, scan.places());
    }
    // For the next scan: these marks as written (a byMark kept may have been read from a text written otherwise).
    placesOf.get(byMark)!.written = scan.writtenMarks(marks);
    mapped.set(snapshot, { byIp, byMark });
  }
  blocksOf.set(users, scan.userBlocks);
  return snapshot;
}

/**
 * What the scan already knows of the mapping of a snapshot it made (every
 * user read before the marks, and no mark with the addresses of two users):
 * address -> user index, and mark -> user index or -1 (no user). The mark map
 * takes it rather than look everything up again. A snapshot is not changed
 * after it is made; one made from it (limits.maxUsers) has none. The maps may
 * be those of the previous scan (see PreviousScan): neither is ever changed.
 */
export function mappingOf(snapshot: UsersSnapshot): ScannedMapping | undefined {
  return mapped.get(snapshot);
}

export interface ScannedMapping {
  byIp: ReadonlyMap<string, number>;
  byMark: ReadonlyMap<number, number>;
}

const mapped = new WeakMap<UsersSnapshot, ScannedMapping>();

/**
 * The marks of a byMark the scan made, in the document's order: their ids
 * and owners by place, for as long as that map lives. The next scan compares
 * its marks with them place by place (memory read in order) rather than look
 * each one up in the map (two cache misses a mark).
 */
interface MarkPlaces {
  count: number;
  ids: Float64Array<ArrayBuffer>;
  owners: Int32Array<ArrayBuffer>;
  /** The last document's `marks` as written, when every user was read before them (see WrittenMarks). */
  written?: WrittenMarks;
}

/**
 * A `marks` array as written, by blocks (see Blocks), and what the scan read
 * from it: the marks, their owners, and the users of the other addresses. A
 * block written the same, anywhere, reads the same marks with the same
 * addresses: it is taken again when the users those addresses name are
 * found again (at the same addresses, maybe at other indices) and no new
 * user has an address it names that named none (see userFrom).
 */
interface WrittenMarks {
  blocks: Blocks;
  marks: CompactMarks;
  owners: Int32Array<ArrayBuffer>;
  otherUsers: readonly number[];
}

/** The digest of the text from `start` to `end`. */
function digestOf(text: string, start: number, end: number): string {
  return createHash('sha256').update(text.slice(start, end)).digest('base64');
}

const placesOf = new WeakMap<ReadonlyMap<number, number>, MarkPlaces>();

/**
 * An array of the document as written, by blocks of entries cut where the
 * entries say (see BLOCK_CUT): the index of each block's first entry, how
 * many it has, its text's length and SHA-256 digest (the text itself is
 * megabytes), and hashes of its first and last HEAD characters. A block of
 * the next document written the same holds the same entries, wherever it
 * is: they are taken again for the cost of a digest rather than of a
 * reading (the manager already takes a document with the digest of the last
 * one as the same). Everything that depends on an entry's index (addresses
 * and ids given twice, owners, the maps) is worked out again for the index
 * it has now.
 */
interface Blocks {
  starts: number[];
  counts: number[];
  lengths: number[];
  digests: string[];
  heads: number[];
  tails: number[];
}

/** The blocks of the last document by the hash of their first HEAD characters: the first, and each one's next with the same hash (-1: none). */
interface BlockIndex {
  first: Map<number, number>;
  next: Int32Array;
}

function indexOf(blocks: Blocks): BlockIndex {
  const first = new Map<number, number>();
  const next = new Int32Array(blocks.heads.length);
  for (let b = blocks.heads.length - 1; b >= 0; b--) {
    next[b] = first.get(blocks.heads[b]!) ?? -1;
    first.set(blocks.heads[b]!, b);
  }
  return { first, next };
}

/** The hash of the first HEAD characters from `start` (fewer at the text's end). */
function headAt(text: string, start: number): number {
  return hashOf(text, start, Math.min(text.length, start + HEAD));
}

/** The hash of the last HEAD characters before `end` (fewer from `start`). */
function tailBefore(text: string, start: number, end: number): number {
  return hashOf(text, Math.max(start, end - HEAD), end);
}

/** The block of the last document (see Blocks) that the text from `start` repeats, or -1. */
function repeatedBlock(blocks: Blocks, index: BlockIndex, text: string, start: number): number {
  for (let b = index.first.get(headAt(text, start)) ?? -1; b >= 0; b = index.next[b]!) {
    const end = start + blocks.lengths[b]!;
    if (end <= text.length && tailBefore(text, start, end) === blocks.tails[b] && digestOf(text, start, end) === blocks.digests[b]) return b;
  }
  return -1;
}

function noBlocks(): Blocks {
  return { starts: [], counts: [], lengths: [], digests: [], heads: [], tails: [] };
}

/** The `users` of a scanned snapshot as written, as long as the users array lives: their objects are taken again. */
const blocksOf = new WeakMap<readonly User[], Blocks>();

/** Notes a block read (or taken: its digest known) from `start` to `end`, of the entries from `first` to `next`. */
function noteBlock(blocks: Blocks, first: number, next: number, text: string, start: number, end: number, digest: string | undefined): void {
  blocks.starts.push(first);
  blocks.counts.push(next - first);
  blocks.lengths.push(end - start);
  blocks.digests.push(digest ?? digestOf(text, start, end));
  blocks.heads.push(headAt(text, start));
  blocks.tails.push(tailBefore(text, start, end));
}

/**
 * The marks of a scanned snapshot, as the scan read them: no object per mark
 * (100,000 of them, and a list per pool address, at every sync, were most of
 * a sync's garbage). Each list of addresses is one code (see USER_ADDRESS);
 * entriesOf makes the MarkEntry objects, when something reads
 * snapshot.marks. Holds strings of its own and the users', never the text.
 */
interface CompactMarks {
  count: number;
  ids: Float64Array<ArrayBuffer>;
  sips: Int32Array<ArrayBuffer>;
  dips: Int32Array<ArrayBuffer>;
  users: readonly User[];
  /** The pool addresses that are no user's address as written, by index. */
  others: readonly string[];
  /** The lists of two or more addresses, by index. */
  lists: readonly (readonly string[])[];
}

/**
 * A list of addresses, coded: 0 for none, else an index shifted left by two
 * beside a tag: a user's address (the user's index), another address (an
 * index into `others`), or a list of two or more (an index into `lists`).
 */
const USER_ADDRESS = 1;
const OTHER_ADDRESS = 2;
const LIST = 3;

/** The MarkEntry objects of compact marks; a list of one address is one shared, frozen array per address. */
function entriesOf(marks: CompactMarks): MarkEntry[] {
  const { count, ids, sips, dips, users, others, lists } = marks;
  const ofUser: (readonly string[] | undefined)[] = [];
  const ofOther: (readonly string[] | undefined)[] = [];
  const listOf = (code: number): readonly string[] => {
    const index = code >>> 2;
    switch (code & 3) {
      case USER_ADDRESS:
        return (ofUser[index] ??= Object.freeze([users[index]!.user_intra_ip]));
      case OTHER_ADDRESS:
        return (ofOther[index] ??= Object.freeze([others[index]!]));
      case LIST:
        return lists[index]!;
      default:
        return NO_ADDRESSES;
    }
  };
  const entries: MarkEntry[] = new Array(count);
  for (let i = 0; i < count; i++) entries[i] = { mark_id: ids[i]!, sips: listOf(sips[i]!), dips: listOf(dips[i]!) };
  return entries;
}

/**
 * A snapshot whose `marks` are made on first use (a mapping by user, taken
 * from the scan, never needs them); until then markCount says how many.
 * Reading or setting `marks` leaves a plain data property, as in any other
 * snapshot, and lets the compact form go.
 */
function snapshotOf(source: string, users: User[], marks: CompactMarks): UsersSnapshot {
  const snapshot = { source, users } as UsersSnapshot;
  const settle = (value: MarkEntry[]): MarkEntry[] => {
    Object.defineProperty(snapshot, 'marks', { value, writable: true, enumerable: true, configurable: true });
    unmade.delete(snapshot);
    return value;
  };
  Object.defineProperty(snapshot, 'marks', {
    get: () => settle(entriesOf(marks)),
    set: settle,
    enumerable: true,
    configurable: true,
  });
  unmade.set(snapshot, marks.count);
  return snapshot;
}

/** How many marks the snapshots whose `marks` are not made yet have. */
const unmade = new WeakMap<UsersSnapshot, number>();

/** How many pool entries a snapshot has, without making its entries when they are not made yet. */
export function markCount(snapshot: UsersSnapshot): number {
  return unmade.get(snapshot) ?? snapshot.marks.length;
}

/** Reads the whole text at once (no pauses). */
export function scanUsersDocumentNow(text: string, source: string, previous?: PreviousScan): UsersSnapshot | undefined {
  const steps = scanUsersDocument(text, source, previous);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/** A position in the text and the strict JSON pieces read from it; each method leaves `pos` after what it read. */
class Scanner {
  pos = 0;
  readonly users: User[] = [];
  /** How many marks were read. */
  private count = 0;
  /** Whether the owners of the marks are known as they are read (see mappingOf). */
  mapping = true;
  /** Whether every user so far has the address of the previous document's user at its index (none can be given twice then). */
  private sameAddresses = true;
  /** Whether every mark so far has the id of the previous document's mark at its place (none can be given twice then). */
  private sameIds: boolean;
  /** Whether every mark so far also has the owner the previous mapping gives it. */
  private sameOwners: boolean;
  /** The previous document's marks by place (none: count 0). */
  private readonly before: MarkPlaces;

  constructor(
    private readonly text: string,
    private readonly previous: PreviousScan,
  ) {
    this.before = (previous.byMark && placesOf.get(previous.byMark)) ?? NO_PLACES;
    this.blocksBefore = blocksOf.get(previous.users);
    this.sameIds = this.sameOwners = this.before.count > 0;
    if (previous.byIp !== undefined) this.userFrom = new Int32Array(previous.users.length);
  }

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
    return this.valueOf(start, end, this.escaped);
  }

  /** The value of the JSON string whose quotes are at `start` and `end`; undefined when it is not valid JSON. */
  private valueOf(start: number, end: number, escaped: boolean): string | undefined {
    if (!escaped) return this.text.slice(start + 1, end);
    try {
      return JSON.parse(this.text.slice(start, end + 1)) as string;
    } catch {
      return undefined;
    }
  }

  /** Whether the JSON string whose quotes are at `start` and `end` spells `value` without escapes. */
  private spells(start: number, end: number, escaped: boolean, value: string): boolean {
    return !escaped && end - start - 1 === value.length && this.text.startsWith(value, start + 1);
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
   * Reads a block of up to `count` entries of the `users` array (the reading
   * is inside it, past its '['), or a few blocks taken again (see Blocks):
   * true when more follow, false after its ']', undefined when the general
   * reader must decide.
   */
  readUsers(count: number): boolean | undefined {
    return this.readBlocks(true, count);
  }

  /** The same for the `marks` array. */
  readMarks(count: number): boolean | undefined {
    return this.readBlocks(false, count);
  }

  private readBlocks(isUsers: boolean, count: number): boolean | undefined {
    const blocks = isUsers ? this.userBlocks : this.markBlocks;
    for (let read = 0, taken = 0; ; ) {
      if (this.blockStart < 0) {
        // At a block's first entry: a block of the last document that it repeats is taken whole.
        const start = this.pos;
        const first = isUsers ? this.users.length : this.count;
        const took = isUsers ? this.repeatedUsers(start) : this.repeatedMarks(start);
        if (took === undefined) return undefined;
        if (took) {
          noteBlock(blocks, first, isUsers ? this.users.length : this.count, this.text, start, this.pos, this.takenDigest);
          const more = this.afterEntry();
          // A block taken again costs a digest: a few of them between two pauses.
          if (!more || ++taken === BLOCKS_TAKEN_PER_STEP) return more;
          continue;
        }
        this.blockStart = start;
        this.blockFirst = first;
      }
      if (!(isUsers ? this.user() : this.mark())) return undefined;
      const end = this.pos;
      const next = isUsers ? this.users.length : this.count;
      const more = this.afterEntry();
      if (more === undefined) return undefined;
      if (!more || this.cut || next - this.blockFirst === MAX_BLOCK) {
        noteBlock(blocks, this.blockFirst, next, this.text, this.blockStart, end, undefined);
        this.blockStart = -1;
      }
      if (!more || ++read === count) return more;
    }
  }

  /** Where the block being read begins (-1: the next entry begins one), and the index of its first entry. */
  private blockStart = -1;
  private blockFirst = 0;
  /** Whether the last entry read ends a block (see BLOCK_CUT). */
  private cut = false;
  /** The `users` and `marks` arrays read, by blocks (see Blocks). */
  readonly userBlocks: Blocks = noBlocks();
  private readonly markBlocks: Blocks = noBlocks();
  /** The last document's users by blocks (none: undefined), and their index by heads, made when first needed. */
  private readonly blocksBefore: Blocks | undefined;
  private userIndex: BlockIndex | undefined;
  private markIndex: BlockIndex | undefined;
  /** The digest of the block last taken. */
  private takenDigest = '';

  /**
   * Where each user of the last document is in this one (its index plus
   * one; 0: no user has its address now), and the addresses of users that
   * no user of the last document had: kept while the users are read, when
   * the last document's byIp is known (see PreviousScan). Every address is
   * one of the last document's or a new one, so an address given twice is
   * found here, without a table of all the addresses; and the marks of the
   * last document are taken again with the users they name at their
   * indices now (see WrittenMarks).
   */
  private readonly userFrom: Int32Array | undefined;
  private readonly added = new Set<string>();
  /** Whether the users of the last document are known again, for its marks: at the same indices (1), through userFrom (2), or not (0); worked out at the first block of marks. */
  private usersAgain = -1;

  /**
   * Whether the block of users from here is written as a block of the last
   * document was (see Blocks); if so, takes its users and reads past it.
   * Undefined when one of their addresses was given before (the general
   * reader's to report).
   */
  private repeatedUsers(start: number): boolean | undefined {
    const before = this.blocksBefore;
    if (before === undefined) return false;
    const block = repeatedBlock(before, (this.userIndex ??= indexOf(before)), this.text, start);
    if (block < 0) return false;
    const { users, userFrom } = this;
    const previous = this.previous.users;
    const from = before.starts[block]!;
    const shift = users.length - from;
    // At the indices they had, the users have the addresses the last document's had there: sameAddresses holds as it did.
    if (shift !== 0) this.sameAddresses = false;
    for (let j = from, end = from + before.counts[block]!; j < end; j++) {
      const user = previous[j]!;
      // An address given twice: found by userFrom, or (without it) by the table past the addresses that are the same.
      if (userFrom !== undefined) {
        if (userFrom[j] !== 0) return undefined;
        userFrom[j] = j + shift + 1;
      } else if (!this.sameAddresses && !this.addUserAddress(user.user_intra_ip)) return undefined;
      users.push(user);
    }
    this.takenDigest = before.digests[block]!;
    this.pos = start + before.lengths[block]!;
    return true;
  }

  /**
   * Whether the block of marks from here is written as a block of the last
   * document was, and reads the same now (see WrittenMarks); if so, takes
   * its marks, with their users at their indices now, and reads past it.
   * Undefined when one of their ids was given before (the general reader's
   * to report).
   */
  private repeatedMarks(start: number): boolean | undefined {
    const written = this.before.written;
    if (written === undefined || !this.mapping) return false;
    if (this.usersAgain < 0) this.usersAgain = this.sameByIp() !== undefined ? 1 : this.userFrom !== undefined ? 2 : 0;
    if (this.usersAgain === 0) return false;
    const { blocks, marks, owners } = written;
    const block = repeatedBlock(blocks, (this.markIndex ??= indexOf(blocks)), this.text, start);
    if (block < 0) return false;
    const from = blocks.starts[block]!;
    const end = from + blocks.counts[block]!;
    const moved = this.usersAgain === 2;
    if (moved && !this.readsTheSame(written, from, end)) return false;
    for (let place = from; place < end; place++) {
      const owner = owners[place]!;
      if (!this.addMarkAt(marks.ids[place]!, moved && owner >= 0 ? this.userFrom![owner]! - 1 : owner, this.codeFrom(written, marks.sips[place]!), this.codeFrom(written, marks.dips[place]!))) return undefined;
    }
    this.takenDigest = blocks.digests[block]!;
    this.pos = start + blocks.lengths[block]!;
    return true;
  }

  /**
   * Whether the last document's marks from `from` to `end` name the same
   * users now, at their indices now: every user they named has its address
   * in this document, and no new user has an address they named that was
   * no user's (see userFrom).
   */
  private readsTheSame(written: WrittenMarks, from: number, end: number): boolean {
    const { sips, dips } = written.marks;
    // (A mark's owner is one of the users its addresses name.)
    for (let place = from; place < end; place++) {
      if (!this.codeReadsTheSame(written, sips[place]!) || !this.codeReadsTheSame(written, dips[place]!)) return false;
    }
    return true;
  }

  /** The same for one list of addresses (see USER_ADDRESS). */
  private codeReadsTheSame(written: WrittenMarks, code: number): boolean {
    const index = code >>> 2;
    switch (code & 3) {
      case USER_ADDRESS:
        return this.userFrom![index] !== 0;
      case OTHER_ADDRESS: {
        const user = written.otherUsers[index]!;
        return user >= 0 ? this.userFrom![user] !== 0 : this.noUserHas(written.marks.others[index]!);
      }
      case LIST:
        for (const address of written.marks.lists[index]!) {
          const host = poolHost(address);
          const user = host === undefined ? undefined : this.previous.byIp!.get(host);
          if (user === undefined ? !this.noUserHas(address) : this.userFrom![user] === 0) return false;
        }
        return true;
      default:
        return true;
    }
  }

  /** Whether a pool address whose host was no user's address in the last document is none's in this one either. */
  private noUserHas(address: string): boolean {
    if (this.added.size === 0) return true;
    const host = poolHost(address);
    return host === undefined || !this.added.has(host);
  }

  /** The code in this scan of a list's code in the last one (see WrittenMarks): the same users (at their indices now), the other addresses and lists found again. */
  private codeFrom(written: WrittenMarks, code: number): number {
    const tag = code & 3;
    const index = code >>> 2;
    if (tag === OTHER_ADDRESS) {
      const from = (this.othersFrom ??= new Int32Array(written.marks.others.length));
      // (Plus one: 0 is not found yet.)
      if (from[index] === 0) {
        const user = written.otherUsers[index]!;
        from[index] = this.otherIndex(written.marks.others[index]!, user >= 0 && this.usersAgain === 2 ? this.userFrom![user]! - 1 : user) + 1;
      }
      return (from[index]! - 1) * 4 + OTHER_ADDRESS;
    }
    // A list of several addresses is one mark's: never changed, it is this scan's too.
    if (tag === LIST) return (this.lists.push(written.marks.lists[index]!) - 1) * 4 + LIST;
    return tag === USER_ADDRESS && this.usersAgain === 2 ? (this.userFrom![index]! - 1) * 4 + USER_ADDRESS : code;
  }

  /** The index in `others` of each of the last scan's other addresses taken again (plus one; 0: not yet). */
  private othersFrom: Int32Array | undefined;

  /** After an array's entry: true at a ',' (another entry follows), false at the ']', undefined for anything else. */
  private afterEntry(): boolean | undefined {
    this.space();
    if (this.eat(CLOSE_ARRAY)) return false;
    if (!this.eat(COMMA)) return undefined;
    this.space();
    return true;
  }

  /** Reads one `users` entry; false when it is not sure to be valid. */
  user(): boolean {
    if (!this.eat(OPEN_OBJECT)) return false;
    // Each field's string, by the places of its quotes (-1: absent): compared in place before any string is made.
    let codeAt = -1;
    let codeEnd = 0;
    let codeEscaped = false;
    let ipAt = -1;
    let ipEnd = 0;
    let ipEscaped = false;
    let nameAt = -1;
    let nameEnd = 0;
    let nameEscaped = false;
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
          if ((field === 1 ? codeAt : field === 2 ? ipAt : nameAt) >= 0) return false;
          const at = this.pos;
          const end = this.stringEnd();
          if (end < 0) return false;
          this.pos = end + 1;
          if (field === 1) (codeAt = at), (codeEnd = end), (codeEscaped = this.escaped);
          else if (field === 2) (ipAt = at), (ipEnd = end), (ipEscaped = this.escaped);
          else (nameAt = at), (nameEnd = end), (nameEscaped = this.escaped);
        }
        this.space();
        if (this.eat(CLOSE_OBJECT)) break;
        if (!this.eat(COMMA)) return false;
        this.space();
      }
    }
    if (codeAt < 0 || ipAt < 0) return false;
    const { users, previous } = this;
    const at = users.length;
    const before = previous.users[at];
    let user: User;
    // The last document's index of a user with this address (-1: none, or not known).
    let from = -1;
    if (
      before !== undefined &&
      this.spells(codeAt, codeEnd, codeEscaped, before.user_code) &&
      this.spells(ipAt, ipEnd, ipEscaped, before.user_intra_ip) &&
      (nameAt < 0 ? before.user_name === undefined : before.user_name !== undefined && this.spells(nameAt, nameEnd, nameEscaped, before.user_name))
    ) {
      // The previous document's user, spelt the same: valid as it was, and kept (its series finds it by identity).
      user = before;
      from = at;
    } else {
      const code = this.valueOf(codeAt, codeEnd, codeEscaped);
      const valid = userIp(this.valueOf(ipAt, ipEnd, ipEscaped));
      const name = nameAt < 0 ? undefined : this.valueOf(nameAt, nameEnd, nameEscaped);
      if (!isName(code) || valid === undefined || (nameAt >= 0 && !isName(name))) return false;
      from = previous.byIp?.get(valid) ?? -1;
      const moved = from < 0 ? undefined : previous.users[from];
      if (moved !== undefined && moved.user_code === code && moved.user_name === name) {
        // A user of the previous document at another index (an entry inserted or removed before it), the same: kept too.
        user = moved;
      } else {
        const ip = own(valid);
        user = name === undefined ? { user_code: own(code), user_intra_ip: ip } : { user_code: own(code), user_intra_ip: ip, user_name: own(name) };
      }
    }
    const ip = user.user_intra_ip;
    this.cut = endsBlock(hashOf(this.text, ipAt + 1, ipEnd));
    if (this.sameAddresses && (before === undefined || before.user_intra_ip !== ip)) this.sameAddresses = false;
    // An address given twice is the general reader's to report: found by userFrom, or by the table past the addresses that are the same.
    const { userFrom, added } = this;
    if (userFrom !== undefined) {
      if (from >= 0 ? userFrom[from] !== 0 : added.has(ip)) return false;
      if (from >= 0) userFrom[from] = at + 1;
      else added.add(ip);
    } else if (!this.sameAddresses && !this.addUserAddress(ip)) return false;
    users.push(user);
    return true;
  }

  /** Whether the users' table of addresses holds every user read (it is made when first needed). */
  private addressesTabled = 0;

  /**
   * The users' canonical addresses: an open-addressing table of user indexes
   * (plus one) by a hash of the address's characters, so that a pool address
   * is found from the text itself, without a string made for it. A slot is
   * the top bits of the hash times the golden ratio (near hashes, as of
   * 10.8.0.2 and 10.8.0.3, land far apart).
   */
  private userSlots = new Int32Array(1024);
  /** 32 - log2(userSlots.length). */
  private userShift = 22;

  /** Adds the next user's address to the table; false when a user has it already. */
  private addUserAddress(ip: string): boolean {
    this.tableAddresses();
    if (2 * (this.users.length + 1) > this.userSlots.length) this.growUserSlots();
    const { userSlots, users } = this;
    const mask = userSlots.length - 1;
    let slot = Math.imul(hashOf(ip, 0, ip.length), 0x9e3779b1) >>> this.userShift;
    for (let at = userSlots[slot]!; at !== 0; at = userSlots[(slot = (slot + 1) & mask)]!) {
      if (users[at - 1]!.user_intra_ip === ip) return false;
    }
    userSlots[slot] = users.length + 1;
    this.addressesTabled = users.length + 1;
    return true;
  }

  /** Puts the users read so far and not in the table yet into it (known distinct: a same-address prefix, or checked by userFrom). */
  private tableAddresses(): void {
    const { users } = this;
    if (this.addressesTabled === users.length) return;
    // growUserSlots doubles the table: from half the size wanted.
    this.userShift = 33 - Math.max(10, Math.ceil(Math.log2(2 * users.length + 2)));
    this.userSlots = new Int32Array(2 ** (32 - this.userShift));
    this.growUserSlots();
    this.addressesTabled = users.length;
  }

  /** The index of the user whose address `text` holds from `start` to `end` (hashed: `hash`), or -1. */
  private userAt(text: string, start: number, end: number, hash: number): number {
    this.tableAddresses();
    const { userSlots, users } = this;
    const mask = userSlots.length - 1;
    const length = end - start;
    let slot = Math.imul(hash, 0x9e3779b1) >>> this.userShift;
    for (let at = userSlots[slot]!; at !== 0; at = userSlots[(slot = (slot + 1) & mask)]!) {
      const ip = users[at - 1]!.user_intra_ip;
      if (ip.length === length && text.startsWith(ip, start)) return at - 1;
    }
    return -1;
  }

  /** A table twice as large, for the users' addresses. */
  private growUserSlots(): void {
    const slots = new Int32Array(2 * this.userSlots.length);
    const mask = slots.length - 1;
    this.userShift--;
    const { users } = this;
    for (let i = 0; i < users.length; i++) {
      const ip = users[i]!.user_intra_ip;
      let slot = Math.imul(hashOf(ip, 0, ip.length), 0x9e3779b1) >>> this.userShift;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = i + 1;
    }
    this.userSlots = slots;
  }

  /** Reads one `marks` entry; false when it is not sure to be valid. */
  mark(): boolean {
    if (!this.eat(OPEN_OBJECT)) return false;
    let id: number | undefined;
    // The lists' codes (see USER_ADDRESS), -1 while absent.
    let sips = -1;
    let dips = -1;
    // The first user each list names, and whether it names another.
    let sipsUser = -1;
    let dipsUser = -1;
    let mixed = false;
    let seenId = false;
    // The user the previous document's mark at this place had (at its index now): its address is looked at first.
    const place = this.count;
    const expected = place < this.before.count ? this.before.owners[place]! : -1;
    this.expected = expected >= 0 && this.userFrom !== undefined ? this.userFrom[expected]! - 1 : expected;
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
          if ((field === 2 ? sips : dips) >= 0) return false;
          const list = this.addresses();
          if (list < 0) return false;
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
    this.cut = markEndsBlock(id);
    // Its owner: the first user among its sips, then its dips; one naming two users is the mark map's to report.
    if (mixed || (sipsUser >= 0 && dipsUser >= 0 && sipsUser !== dipsUser)) this.mapping = false;
    const owner = sipsUser >= 0 ? sipsUser : dipsUser;
    return this.addMarkAt(id, owner, Math.max(0, sips), Math.max(0, dips));
  }

  /** Adds the next mark, compared with the previous document's at its place; false when its id was read before. */
  private addMarkAt(id: number, owner: number, sips: number, dips: number): boolean {
    const place = this.count;
    const { before } = this;
    if (this.sameIds && (place >= before.count || before.ids[place] !== id)) {
      this.sameIds = this.sameOwners = false;
      this.tableIds(place);
    }
    if (this.sameOwners && before.owners[place] !== owner) this.sameOwners = false;
    // A mark_id given twice is the general reader's to report.
    if (!this.addMark(id, owner, sips, dips)) return false;
    this.count++;
    return true;
  }

  /** The marks read: their ids, owners and lists' codes by place, and an open-addressing table of places (plus one) by id. */
  private ids = new Float64Array(1024);
  private owners = new Int32Array(1024);
  private sips = new Int32Array(1024);
  private dips = new Int32Array(1024);
  private idSlots = new Int32Array(2048);
  /** 32 - log2(idSlots.length). */
  private idShift = 21;

  /** Adds the next mark (at `count`); false when its id was read before. */
  private addMark(id: number, owner: number, sips: number, dips: number): boolean {
    const { ids, idSlots } = this;
    const place = this.count;
    let slot = 0;
    if (!this.sameIds) {
      const mask = idSlots.length - 1;
      slot = Math.imul(id | 0, 0x9e3779b1) >>> this.idShift;
      for (let at = idSlots[slot]!; at !== 0; at = idSlots[(slot = (slot + 1) & mask)]!) {
        if (ids[at - 1] === id) return false;
      }
    }
    if (place === ids.length) {
      this.ids = grown(ids, new Float64Array(2 * ids.length));
      this.owners = grown(this.owners, new Int32Array(2 * ids.length));
      this.sips = grown(this.sips, new Int32Array(2 * ids.length));
      this.dips = grown(this.dips, new Int32Array(2 * ids.length));
    }
    this.ids[place] = id;
    this.owners[place] = owner;
    this.sips[place] = sips;
    this.dips[place] = dips;
    if (!this.sameIds) {
      idSlots[slot] = place + 1;
      if (2 * (place + 1) > idSlots.length) this.growIdSlots(place + 1);
    }
    return true;
  }

  /** Puts the ids of the first `count` marks (a same-id prefix, known distinct) into the table of ids. */
  private tableIds(count: number): void {
    // growIdSlots doubles the table: from half the size wanted.
    this.idShift = 33 - Math.max(11, Math.ceil(Math.log2(2 * count + 2)));
    this.idSlots = new Int32Array(2 ** (32 - this.idShift));
    this.growIdSlots(count);
  }

  /** The `marks` read, as written, for the next scan (see WrittenMarks); undefined when they were not read after every user. */
  writtenMarks(marks: CompactMarks): WrittenMarks | undefined {
    return this.mapping ? { blocks: this.markBlocks, marks, owners: this.owners, otherUsers: this.otherUsers } : undefined;
  }

  /** What the next scan compares its marks with (see MarkPlaces). */
  places(): MarkPlaces {
    return { count: this.count, ids: this.ids, owners: this.owners };
  }

  /** The marks read, for the snapshot (see CompactMarks). */
  compactMarks(): CompactMarks {
    const { count, ids, sips, dips, users, others, lists } = this;
    return { count, ids, sips, dips, users, others, lists };
  }

  /** A table twice as large, for the ids of the first `count` marks. */
  private growIdSlots(count: number): void {
    const slots = new Int32Array(2 * this.idSlots.length);
    const mask = slots.length - 1;
    this.idShift--;
    const { ids } = this;
    for (let i = 0; i < count; i++) {
      let slot = Math.imul(ids[i]! | 0, 0x9e3779b1) >>> this.idShift;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = i + 1;
    }
    this.idSlots = slots;
  }

  /** The previous scan's byIp, when it is this document's too: the same addresses at the same places. */
  sameByIp(): ReadonlyMap<string, number> | undefined {
    const { byIp, users } = this.previous;
    return this.sameAddresses && byIp !== undefined && byIp.size === this.users.length && users.length === this.users.length ? byIp : undefined;
  }

  /** The previous scan's byMark, when it is this document's too: the same marks with the same owners. */
  sameByMark(): ReadonlyMap<number, number> | undefined {
    const { byMark } = this.previous;
    // Every mark (no id twice) has its previous owner, and there are as many: the same map.
    return this.sameOwners && byMark !== undefined && byMark.size === this.count ? byMark : undefined;
  }

  /** Puts the addresses of users from `from` (up to `count` of them) into `byIp`; returns where it stopped. */
  mapAddresses(byIp: Map<string, number>, from: number, count: number): number {
    const { users } = this;
    const end = Math.min(users.length, from + count);
    for (let i = from; i < end; i++) byIp.set(users[i]!.user_intra_ip, i);
    return end;
  }

  /** Puts the owners of marks from `from` (up to `count` of them) into `byMark`; returns where it stopped. */
  mapMarks(byMark: Map<number, number>, from: number, count: number): number {
    const { ids, owners } = this;
    const end = Math.min(this.count, from + count);
    for (let i = from; i < end; i++) byMark.set(ids[i]!, owners[i]!);
    return end;
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
   * A JSON array of valid pool addresses, as its code (see USER_ADDRESS), or -1.
   * A pool names the same peers and users over and over: each distinct
   * address is checked once, and a list of one address (the usual) is the
   * code of that address, no array.
   */
  private addresses(): number {
    this.listUser = -1;
    this.listMixed = false;
    if (!this.eat(OPEN_ARRAY)) return -1;
    this.space();
    if (this.eat(CLOSE_ARRAY)) return 0;
    let list: string[] | undefined;
    for (;;) {
      if (!this.poolAddress()) return -1;
      const code = this.itemCode;
      const user = this.itemUser;
      if (user >= 0 && user !== this.listUser) {
        if (this.listUser >= 0) this.listMixed = true;
        else this.listUser = user;
      }
      this.space();
      if (this.eat(CLOSE_ARRAY)) {
        if (list === undefined) return code;
        list.push(this.addressOf(code));
        return (this.lists.push(list) - 1) * 4 + LIST;
      }
      if (!this.eat(COMMA)) return -1;
      this.space();
      (list ??= []).push(this.addressOf(code));
    }
  }

  /** The address of a one-address code. */
  private addressOf(code: number): string {
    return (code & 3) === USER_ADDRESS ? this.users[code >>> 2]!.user_intra_ip : this.others[code >>> 2]!;
  }

  /** Of the last list read: the first user it names (-1: none), and whether it names another. */
  private listUser = -1;
  private listMixed = false;
  /** Of the last pool address read: its code, and its user (-1: none). */
  private itemCode = 0;
  private itemUser = -1;

  /** The user whose address the current mark is expected to name (see mark()), or -1. */
  private expected = -1;

  /** The pool addresses that are no user's address as written, and their users (-1: none), by index. */
  private readonly others: string[] = [];
  private readonly otherUsers: number[] = [];
  /** The lists of two or more addresses, by index. */
  private readonly lists: (readonly string[])[] = [];

  /**
   * The other addresses written without escapes, found again from the text
   * without making a string of them: an open-addressing table of places
   * (plus one) in `seen`, which holds their indexes in `others`.
   */
  private readonly seen: number[] = [];
  private slots = new Int32Array(1024);
  /** 32 - log2(slots.length). */
  private shift = 22;

  /** Reads a valid pool address (into itemCode and itemUser); false when there is none here. */
  private poolAddress(): boolean {
    const { text } = this;
    const start = this.pos + 1;
    if (text.charCodeAt(this.pos) !== QUOTE) return false;
    let hash = 0;
    let end = start;
    for (; end < text.length; end++) {
      const c = text.charCodeAt(end);
      if (c === QUOTE) break;
      // Escapes and control characters: the general string reading decides.
      if (c === BACKSLASH || c < 32) return this.newPoolAddress(-1);
      hash = (Math.imul(hash, 31) + c) | 0;
    }
    if (end >= text.length) return false;
    // A user's address as the user has it (the usual pool address): valid, and that user's. The expected user first.
    const { expected, users } = this;
    if (expected >= 0 && expected < users.length && this.spells(start - 1, end, false, users[expected]!.user_intra_ip)) return this.userAddress(expected, end);
    // Then the other addresses seen (a few peers, as a rule: in the cache).
    const { slots, seen, others } = this;
    const mask = slots.length - 1;
    let slot = Math.imul(hash, 0x9e3779b1) >>> this.shift;
    for (let at = slots[slot]!; at !== 0; at = slots[(slot = (slot + 1) & mask)]!) {
      const index = seen[at - 1]!;
      const address = others[index]!;
      if (address.length === end - start && text.startsWith(address, start)) {
        this.pos = end + 1;
        this.itemCode = index * 4 + OTHER_ADDRESS;
        this.itemUser = this.otherUsers[index]!;
        return true;
      }
    }
    // Then every user's (when their table is made: a document whose users repeat the last one's needs none).
    const user = this.addressesTabled === users.length ? this.userAt(text, start, end, hash) : -1;
    return user >= 0 ? this.userAddress(user, end) : this.newPoolAddress(slot);
  }

  /** Reads the address of user `user`, which ends at `end`. */
  private userAddress(user: number, end: number): boolean {
    this.pos = end + 1;
    this.itemCode = user * 4 + USER_ADDRESS;
    this.itemUser = user;
    return true;
  }

  /** Reads a pool address not seen yet (at `slot` of the table, or -1: not to be put there). */
  private newPoolAddress(slot: number): boolean {
    const item = this.string();
    if (item === undefined || !isPoolAddress(item)) return false;
    const host = this.mapping ? poolHost(item) : undefined;
    const byIp = host === undefined ? undefined : this.sameByIp();
    const user = host === undefined ? -1 : byIp ? (byIp.get(host) ?? -1) : this.userAt(host, 0, host.length, hashOf(host, 0, host.length));
    this.itemCode = this.addOther(own(item), user, slot) * 4 + OTHER_ADDRESS;
    this.itemUser = user;
    return true;
  }

  /** Adds another address (its user: `user`), at `slot` of the table (-1: not to be put there); returns its index. */
  private addOther(address: string, user: number, slot: number): number {
    const index = this.others.push(address) - 1;
    this.otherUsers.push(user);
    if (slot >= 0) {
      this.seen.push(index);
      this.slots[slot] = this.seen.length;
      if (2 * this.seen.length > this.slots.length) this.rehash();
    }
    return index;
  }

  /** The index of another address (its user: `user`) among those seen, added when it is not. */
  private otherIndex(address: string, user: number): number {
    const { slots, seen, others } = this;
    const mask = slots.length - 1;
    let slot = Math.imul(hashOf(address, 0, address.length), 0x9e3779b1) >>> this.shift;
    for (let at = slots[slot]!; at !== 0; at = slots[(slot = (slot + 1) & mask)]!) {
      if (others[seen[at - 1]!] === address) return seen[at - 1]!;
    }
    return this.addOther(address, user, slot);
  }

  /** A table twice as large, for the addresses seen. */
  private rehash(): void {
    const slots = new Int32Array(2 * this.slots.length);
    const mask = slots.length - 1;
    this.shift--;
    for (let i = 0; i < this.seen.length; i++) {
      const address = this.others[this.seen[i]!]!;
      let slot = Math.imul(hashOf(address, 0, address.length), 0x9e3779b1) >>> this.shift;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = i + 1;
    }
    this.slots = slots;
  }
}

/** The hash of the characters of `text` from `start` to `end` that the scan's tables are keyed by. */
function hashOf(text: string, start: number, end: number): number {
  let hash = 0;
  for (let i = start; i < end; i++) hash = (Math.imul(hash, 31) + text.charCodeAt(i)) | 0;
  return hash;
}

const NO_ADDRESSES: readonly string[] = Object.freeze([]);
const NO_PLACES: MarkPlaces = { count: 0, ids: new Float64Array(0), owners: new Int32Array(0) };

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
