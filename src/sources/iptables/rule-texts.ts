/**
 * Pure: the texts of the rules a source remembers, each the UTF-8 bytes of a
 * rule line after `-A ` (its chain's name, and a space and its rule text when
 * it has one), all in one buffer. ParsedRules (the text at a place in the dump)
 * and RuleMemory (a rule's identity) hold a text by its id: 100,000 rules cost
 * their 10 MB once, instead of a string each beside the bytes an unchanged line
 * is compared with.
 *
 * An id names its text while anyone holds it (hold/release count the holders);
 * a text nobody holds is dropped when the buffer is next compacted, and its id
 * goes to a later text.
 */
import { grown } from '../../shared/grown.js';

/** The least buffer: small, so that a small table's churn compacts it too (the tests see compaction). */
const MIN_BYTES = 1024;

export class RuleTexts {
  private buffer = Buffer.alloc(0);
  private data = new DataView(new ArrayBuffer(0));
  private used = 0;
  /** Per id: where its bytes are, how many, how many hold it, and whether they are all ASCII. */
  private at = new Int32Array(1024);
  private length = new Int32Array(1024);
  private holders = new Int32Array(1024);
  private ascii = new Uint8Array(1024);
  private readonly freeIds: number[] = [];
  private nextId = 0;
  private heldIds = 0;
  /** Bytes of the texts held: the rest of `used` is dropped at the next compaction. */
  private heldBytes = 0;

  /** A new text, held once: the bytes data[from, to), UTF-8. */
  addBytes(data: DataView, from: number, to: number): number {
    const length = to - from;
    const id = this.newId(length);
    // Four bytes at a time: a copy call per rule (Buffer#copy) cost more than the copy.
    const kept = this.data;
    let i = from;
    let j = this.used;
    let any = 0;
    for (; i + 4 <= to; i += 4, j += 4) {
      const four = data.getInt32(i);
      kept.setInt32(j, four);
      any |= four;
    }
    for (; i < to; i++, j++) {
      const one = data.getUint8(i);
      kept.setUint8(j, one);
      any |= one;
    }
    this.used += length;
    // ASCII when no byte has its high bit set.
    this.ascii[id] = (any & 0x80808080) === 0 ? 1 : 0;
    return id;
  }

  /** A new text, held once: text[from, to) written as UTF-8. */
  addText(text: string, from: number, to: number): number {
    const line = text.slice(from, to);
    const length = Buffer.byteLength(line, 'utf8');
    const id = this.newId(length);
    this.buffer.write(line, this.used, length, 'utf8');
    this.used += length;
    this.ascii[id] = length === line.length ? 1 : 0;
    return id;
  }

  hold(id: number): void {
    if (this.holders[id]!++ > 0) return;
    this.heldIds += 1;
    this.heldBytes += this.length[id]!;
  }

  release(id: number): void {
    if (--this.holders[id]! === 0) {
      this.heldIds -= 1;
      this.heldBytes -= this.length[id]!;
      this.freeIds.push(id);
    }
  }

  /** Texts held (for tests and self-telemetry). */
  get held(): number {
    return this.heldIds;
  }

  /** Bytes the buffer holds, dropped texts' included until the next compaction (for tests). */
  get bytes(): number {
    return this.used;
  }

  /**
   * Compacts the buffer when the texts held are less than a quarter of its
   * bytes: after a table shrank, its dropped lines would otherwise stay in
   * memory until new lines filled the buffer. Called after a reading.
   */
  tidy(): void {
    if (this.used > MIN_BYTES && 4 * this.heldBytes < this.used) this.compact(0);
  }

  /** Whether data[start, end) are the bytes of text `id`. */
  sameBytes(id: number, data: DataView, start: number, end: number): boolean {
    if (this.length[id] !== end - start) return false;
    const kept = this.data;
    let i = start;
    let j = this.at[id]!;
    for (; i + 4 <= end; i += 4, j += 4) if (data.getInt32(i) !== kept.getInt32(j)) return false;
    for (; i < end; i++, j++) if (data.getUint8(i) !== kept.getUint8(j)) return false;
    return true;
  }

  /** Whether texts `a` and `b` are the same. */
  same(a: number, b: number): boolean {
    return a === b || this.sameBytes(a, this.data, this.at[b]!, this.at[b]! + this.length[b]!);
  }

  /** Whether text[from, to) is text `id`. */
  sameText(id: number, text: string, from: number, to: number): boolean {
    const at = this.at[id]!;
    if (this.ascii[id] === 0) return this.buffer.toString('utf8', at, at + this.length[id]!) === text.slice(from, to);
    if (this.length[id] !== to - from) return false;
    const bytes = this.buffer;
    for (let i = from, j = at; i < to; i++, j++) if (text.charCodeAt(i) !== bytes[j]) return false;
    return true;
  }

  /** Whether text `id` is all ASCII: then its characters are its bytes. */
  isAscii(id: number): boolean {
    return this.ascii[id] === 1;
  }

  /** The text's length in bytes (in characters too, for an ASCII one). */
  lengthOf(id: number): number {
    return this.length[id]!;
  }

  /** Bytes [from, to) of text `id`, decoded (a range that cuts no character). */
  slice(id: number, from: number, to: number): string {
    const at = this.at[id]!;
    return this.buffer.toString(this.ascii[id] === 1 ? 'latin1' : 'utf8', at + from, at + to);
  }

  /** The whole text `id`. */
  text(id: number): string {
    const at = this.at[id]!;
    return this.buffer.toString('utf8', at, at + this.length[id]!);
  }

  /** An id for `length` new bytes at `used`, held once. */
  private newId(length: number): number {
    if (this.used + length > this.buffer.length) this.compact(length);
    let id = this.freeIds.pop();
    if (id === undefined) {
      id = this.nextId++;
      if (id === this.at.length) this.grow();
    }
    this.at[id] = this.used;
    this.length[id] = length;
    this.holders[id] = 1;
    this.heldIds += 1;
    this.heldBytes += length;
    return id;
  }

  /**
   * A new buffer, twice the held texts and `more` bytes: the bytes as they
   * were when held texts are most of them, else only the held texts' bytes.
   */
  private compact(more: number): void {
    const live = this.heldBytes;
    const buffer = Buffer.allocUnsafe(Math.max(2 * (live + more), MIN_BYTES));
    if (2 * live >= this.used) this.buffer.copy(buffer, 0, 0, this.used);
    else {
      let used = 0;
      for (let id = 0; id < this.nextId; id++) {
        if (this.holders[id]! === 0) continue;
        const at = this.at[id]!;
        this.buffer.copy(buffer, used, at, at + this.length[id]!);
        this.at[id] = used;
        used += this.length[id]!;
      }
      this.used = used;
    }
    this.buffer = buffer;
    this.data = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }

  private grow(): void {
    const size = this.at.length * 2;
    this.at = grown(this.at, new Int32Array(size));
    this.length = grown(this.length, new Int32Array(size));
    this.holders = grown(this.holders, new Int32Array(size));
    this.ascii = grown(this.ascii, new Uint8Array(size));
  }
}
