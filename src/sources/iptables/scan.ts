/**
 * Pure parser of `iptables-save -c` / `ip6tables-save -c` output (the nf_tables
 * and the legacy backend print the same format). No I/O here.
 *
 * Every line is classified once: `#` comment, `*table`, `:CHAIN POLICY [p:b]`,
 * `[p:b] -A CHAIN ...`, `COMMIT`. Anything else is a ParseError naming the line,
 * so garbage never becomes counters.
 *
 * A gateway's table holds 100,000 rules and is read every few seconds, so the
 * parser takes the output in chunks as it streams in (`push`), scans with
 * charCodeAt and indexOf of single characters (no regex or split per line), and hands each rule to a
 * visitor as one reused RuleView: nothing is allocated per rule unless the
 * visitor asks for it. The plain model of a whole dump (model.ts) is built
 * from the same scan, for tools and tests.
 *
 * The save command's output comes as bytes. A rule line whose text is the one
 * seen at its place in the last reading (ParsedRules) is read from the bytes
 * as they are: its counters are taken, its text compared with the kept one,
 * and nothing is decoded or allocated. Every other line is decoded and read as
 * text, by the same code as a dump given as text.
 */
import { parseDigits, type Count } from '../../shared/count.js';
import { grown } from '../../shared/grown.js';
import { parseU32 } from '../../shared/u32.js';
import { ParseError } from '../../errors.js';
import { RuleTexts } from './rule-texts.js';


export interface SaveChain {
  name: string;
  /** `ACCEPT`/`DROP` for builtin chains, null for user-defined ones (printed as `-`). */
  policy: string | null;
}

/**
 * The rule being visited: valid only during the visitor's call (the parser
 * reuses it). Addresses and the rule text are positions in `text` (or in a
 * kept line, see `texts`); use viewSource/viewDestination/viewSpec to read them.
 */
export interface RuleView {
  table: string;
  /** The declared chain's name string (one per chain, shared by its rules). */
  chain: string;
  /**
   * The counters, exact below 2^53. When either is larger (rare) they are NaN
   * and `exact` holds both: read them with rulePackets/ruleBytes where that
   * matters. Numbers only, so storing them allocates nothing.
   */
  packets: number;
  bytes: number;
  exact: { packets: Count; bytes: Count } | undefined;
  jump: string | undefined;
  goto: boolean;
  mark: number | undefined;
  /** Meaningful only when `mark` is set. */
  markMask: number;
  line: number;
  /** The line the positions below are in, unless `texts` is set. */
  text: string;
  /**
   * The rule line's kept text in ParsedRules' RuleTexts (its identity there),
   * when the parser was lent ParsedRules; else -1.
   */
  textId: number;
  /** Set when the positions below are byte offsets in the kept text `textId`, not in `text`. */
  texts: RuleTexts | undefined;
  specStart: number;
  specEnd: number;
  /** -1 when the rule has no (or a negated) -s. */
  sourceStart: number;
  sourceEnd: number;
  /** -1 when the rule has no (or a negated) -d. */
  destinationStart: number;
  destinationEnd: number;
}

export interface SaveVisitor {
  /** Lent to the parser by a visitor that reads the same table again and again (see ParsedRules). */
  readonly parsed?: ParsedRules;
  /** A `*table` line. */
  table?(name: string): void;
  chain?(table: string, chain: SaveChain): void;
  rule(rule: RuleView): void;
}

export function rulePackets(rule: RuleView): Count {
  return rule.exact === undefined ? rule.packets : rule.exact.packets;
}

export function ruleBytes(rule: RuleView): Count {
  return rule.exact === undefined ? rule.bytes : rule.exact.bytes;
}

export function viewSource(rule: RuleView): string | undefined {
  return rule.sourceStart < 0 ? undefined : viewSlice(rule, rule.sourceStart, rule.sourceEnd);
}

export function viewDestination(rule: RuleView): string | undefined {
  return rule.destinationStart < 0 ? undefined : viewSlice(rule, rule.destinationStart, rule.destinationEnd);
}

export function viewSpec(rule: RuleView): string {
  return viewSlice(rule, rule.specStart, rule.specEnd);
}

function viewSlice(rule: RuleView, start: number, end: number): string {
  return rule.texts === undefined ? rule.text.slice(start, end) : rule.texts.slice(rule.textId, start, end);
}

/** Where the rule's line after `-A ` begins in `text`: at its chain's name, which the rule text (if any) follows after a space. */
function lineStart(view: RuleView): number {
  return view.specStart === view.specEnd ? view.specEnd - view.chain.length : view.specStart - view.chain.length - 1;
}

/** The longest line accepted: a longer one means the output is not a dump. */
const MAX_LINE = 1 << 20;
const U64_MAX = (1n << 64n) - 1n;

const NEWLINE = 10;
const SPACE = 32;
const QUOTE = 34;
const HASH = 35;
const STAR = 42;
const DASH = 45;
const COLON = 58;
const BRACKET = 91;
const CLOSE_BRACKET = 93;
const BACKSLASH = 92;
const BANG = 33;
const LETTER_J = 106;
const LETTER_G = 103;
const LETTER_S = 115;
const LETTER_D = 100;
const LETTER_F = 102;
const LETTER_CAPITAL_A = 65;
/**
 * The largest piece of output decoded into one string: V8 allocates a longer
 * string among its long-lived objects, and each reading then paid a full collection.
 */
const DECODE_BYTES = 64 * 1024;
/** Rule lines in a row that the bytes could not be read from before the rest of the output piece is read as text. */
const BYTE_MISSES = 8;
/** Short options with exactly one value: -i, -o, -p, -m. */
const ONE_VALUE_SHORT = [105, 111, 112, 109];
/**
 * Long options whose one value is free text (names, comments, strings), which
 * iptables-save prints unquoted when it is made of safe characters, `-j` included.
 * `match-set` takes two (the set's name and its flags).
 */
const MARK_OPERATIONS = ['--and-mark ', '--or-mark ', '--xor-mark '];
const ONE_VALUE_LONG = new Set(['comment', 'string', 'hex-string', 'log-prefix', 'nflog-prefix', 'name', 'helper', 'physdev-in', 'physdev-out', 'uid-owner', 'gid-owner', 'match-set', 'algo']);

interface OpenTable {
  name: string;
  chains: Map<string, SaveChain>;
}

/** Streaming form: push() chunks as they arrive, then end(); every rule goes to the visitor. */
export class IptablesSaveParser {
  private current: OpenTable | undefined;
  private lastChain: SaveChain | undefined;
  /** The chain of the last rule read from bytes (its name is the kept one, not always lastChain's). */
  private keptChain: SaveChain | undefined;
  private keptChainName = '';
  /** The bytes the text being read was decoded from, character for byte from textFrom on (undefined when not so). */
  private textBytes: DataView | undefined;
  private textFrom = 0;
  /** Tables the dump has listed: iptables-save prints each once, so a second one is an error, never summed. */
  private readonly tablesSeen = new Set<string>();
  /** The unfinished last line of the chunks so far: text, or the first restBytes bytes of restLine when the output comes as bytes. */
  private rest = '';
  private restLine = new Uint8Array(0);
  private restBytes = 0;
  private restChars = 0;
  private lineNo = 0;
  /** Rules so far: a rule's place in the dump, for ParsedRules. */
  private rulesSeen = 0;
  private readonly view: RuleView = {
    table: '',
    chain: '',
    packets: 0.5, // a double from the start: the fields stay unboxed
    bytes: 0.5,
    exact: undefined,
    jump: undefined,
    goto: false,
    mark: undefined,
    markMask: 0xffffffff,
    line: 0,
    text: '',
    textId: -1,
    texts: undefined,
    specStart: 0,
    specEnd: 0,
    sourceStart: -1,
    sourceEnd: -1,
    destinationStart: -1,
    destinationEnd: -1,
  };

  constructor(private readonly visitor: SaveVisitor) {}

  /** The next piece of the output: text, or bytes (UTF-8; used at once, not kept). */
  push(chunk: string | Uint8Array): this {
    if (typeof chunk !== 'string') return this.pushBytes(chunk);
    if (this.restBytes > 0) throw new Error('a dump is given as text or as bytes, not both');
    let start = 0;
    let nl = chunk.indexOf('\n');
    if (this.rest !== '' && nl !== -1) {
      // The line begun in the last chunk is joined on its own, so the scan below
      // runs on the chunk itself: a flat string, not a concatenation (much faster to scan).
      const line = this.rest + chunk.slice(0, nl);
      this.rest = '';
      this.line(line, 0, line.length);
      start = nl + 1;
      nl = chunk.indexOf('\n', start);
    }
    for (; nl !== -1; nl = chunk.indexOf('\n', start)) {
      this.line(chunk, start, nl);
      start = nl + 1;
    }
    if (start < chunk.length) this.rest += chunk.slice(start);
    // The unfinished line is checked too, so that no chunking lets the buffer grow unbounded.
    if (this.rest.length > MAX_LINE) this.tooLong(this.lineNo + 1, this.rest, 0);
    return this;
  }

  private pushBytes(chunk: Uint8Array): this {
    if (this.rest !== '') throw new Error('a dump is given as text or as bytes, not both');
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const lastNl = bytes.lastIndexOf(NEWLINE);
    let start = 0;
    if (lastNl !== -1 && this.restBytes > 0) {
      // The line begun in an earlier chunk, completed: read from the kept bytes.
      const first = bytes.indexOf(NEWLINE);
      this.keepRest(bytes, 0, first + 1);
      const line = Buffer.from(this.restLine.buffer, 0, this.restBytes);
      this.restBytes = this.restChars = 0;
      this.lines(line, 0, line.length);
      start = first + 1;
    }
    if (lastNl >= start) {
      this.lines(bytes, start, lastNl + 1);
      start = lastNl + 1;
    }
    if (start < bytes.length) {
      this.keepRest(bytes, start, bytes.length);
      // Bounded as the text's unfinished line is, in characters: at least one per byte that does not continue a character.
      if (this.restChars > MAX_LINE) this.tooLong(this.lineNo + 1, Buffer.from(this.restLine.buffer, 0, 1024).toString('utf8'), 0);
    }
    return this;
  }

  /** Appends bytes[from, to) to the unfinished line (a copy: the chunk is not the parser's to keep). */
  private keepRest(bytes: Uint8Array, from: number, to: number): void {
    const length = this.restBytes + to - from;
    if (length > this.restLine.length) {
      const larger = new Uint8Array(Math.max(length, 2 * this.restLine.length, 4096));
      larger.set(this.restLine.subarray(0, this.restBytes));
      this.restLine = larger;
    }
    this.restLine.set(bytes.subarray(from, to), this.restBytes);
    this.restBytes = length;
    for (let i = from; i < to; i++) if ((bytes[i]! & 0xc0) !== 0x80) this.restChars += 1;
  }

  /**
   * Whole lines bytes[from, to), the last ending with a newline. A rule line
   * unchanged since the last reading is read from the bytes; runs of other lines
   * are decoded and read as text (all of them, once the bytes missed a few
   * rules in a row, as on a first reading).
   */
  private lines(bytes: Buffer, from: number, to: number): void {
    const byBytes = this.visitor.parsed !== undefined;
    const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let misses = 0;
    let textFrom = -1;
    for (let start = from; start < to; ) {
      const nl = bytes.indexOf(NEWLINE, start);
      if (byBytes && misses < BYTE_MISSES && bytes[start] === BRACKET) {
        // The lines before are read first: a table, chain or rule among them tells what this one means.
        if (textFrom >= 0) {
          this.textLines(bytes, data, textFrom, start);
          textFrom = -1;
        }
        if (this.unchangedRule(bytes, data, start, nl)) {
          misses = 0;
          start = nl + 1;
          continue;
        }
        misses += 1;
      }
      if (textFrom < 0) textFrom = start;
      start = nl + 1;
    }
    if (textFrom >= 0) this.textLines(bytes, data, textFrom, to);
  }

  /** Whole lines bytes[from, to), decoded in pieces of at most DECODE_BYTES cut after a newline, read as text. */
  private textLines(bytes: Buffer, data: DataView, from: number, to: number): void {
    while (from < to) {
      let cut = to;
      if (to - from > DECODE_BYTES) {
        cut = bytes.lastIndexOf(NEWLINE, from + DECODE_BYTES - 1) + 1;
        if (cut <= from) cut = bytes.indexOf(NEWLINE, from) + 1; // one line longer than a piece
      }
      const text = bytes.toString('utf8', from, cut);
      // As many characters as bytes: each character is its byte, and a rule kept from this text keeps its bytes too.
      this.textBytes = text.length === cut - from ? data : undefined;
      this.textFrom = from;
      for (let start = 0, nl = text.indexOf('\n'); nl !== -1; start = nl + 1, nl = text.indexOf('\n', start)) this.line(text, start, nl);
      from = cut;
    }
    this.textBytes = undefined;
  }

  /**
   * Reads the rule line bytes[start, nl) when its text after `-A ` is the one
   * seen at its place last time, in a chain declared by that name; false
   * (nothing read) otherwise, and whenever the line is anything the text
   * reading might refuse or read otherwise, which then reads it.
   */
  private unchangedRule(bytes: Buffer, data: DataView, start: number, nl: number): boolean {
    const table = this.current;
    const parsed = this.visitor.parsed!;
    if (table === undefined || nl - start > MAX_LINE) return false;
    let end = nl;
    while (end > start && bytes[end - 1]! <= SPACE) end--;
    let i = start + 1;
    let packets = 0;
    for (let c = bytes[i]!; i < end && c >= 48 && c <= 57; c = bytes[++i]!) packets = packets * 10 + (c - 48);
    if (i === start + 1 || i - start - 1 > 15 || bytes[i] !== COLON) return false;
    const bytesStart = ++i;
    let count = 0;
    for (let c = bytes[i]!; i < end && c >= 48 && c <= 57; c = bytes[++i]!) count = count * 10 + (c - 48);
    if (i === bytesStart || i - bytesStart > 15 || bytes[i] !== CLOSE_BRACKET || bytes[i + 1] !== SPACE || bytes[i + 2] !== DASH || bytes[i + 3] !== LETTER_CAPITAL_A || bytes[i + 4] !== SPACE) {
      return false;
    }
    i += 5;
    const place = this.rulesSeen;
    if (!parsed.sameLine(place, data, i, end)) return false;
    // The chain it was in last time, by that name, must be declared in this table.
    const name = parsed.chainAt(place)!;
    let chain = this.keptChain;
    if (chain === undefined || name !== this.keptChainName) {
      chain = table.chains.get(name);
      if (chain === undefined) return false;
      this.keptChain = chain;
      this.keptChainName = name;
    }
    const view = this.view;
    parsed.fill(place, view);
    this.lineNo += 1;
    this.rulesSeen += 1;
    this.lastChain = chain;
    view.table = table.name;
    view.chain = chain.name;
    view.packets = packets;
    view.bytes = count;
    view.exact = undefined;
    view.line = this.lineNo;
    this.visitor.rule(view);
    return true;
  }

  /** The output is complete: checks that it did not stop inside a table. */
  end(): void {
    if (this.restBytes > 0) {
      this.rest = Buffer.from(this.restLine.buffer, 0, this.restBytes).toString('utf8');
      this.restBytes = 0;
    }
    if (this.rest !== '') {
      const last = this.rest;
      this.rest = '';
      this.line(last, 0, last.length);
    }
    if (this.current) {
      throw new ParseError(`dump ended inside table *${this.current.name} without COMMIT (truncated output?)`, this.lineNo, '');
    }
    this.visitor.parsed?.truncate(this.rulesSeen);
  }

  private fail(message: string, text: string, start: number, end: number): never {
    throw new ParseError(message, this.lineNo, text.slice(start, end));
  }

  /** The same error wherever the chunks split the line: measured on the raw line, shown from its start. */
  private tooLong(line: number, text: string, start: number): never {
    throw new ParseError('line longer than 1 MiB: not iptables-save output', line, text.slice(start, start + 80));
  }

  private line(text: string, start: number, end: number): void {
    this.lineNo += 1;
    if (end - start > MAX_LINE) this.tooLong(this.lineNo, text, start);
    while (end > start && text.charCodeAt(end - 1) <= SPACE) end--; // \r, trailing blanks
    while (start < end && text.charCodeAt(start) <= SPACE) start++;
    if (start === end) return;
    switch (text.charCodeAt(start)) {
      case HASH:
        return;
      case BRACKET:
        return this.rule(text, start, end);
      case COLON:
        return this.chain(text, start, end);
      case STAR: {
        if (this.current) this.fail(`table *${this.current.name} was not closed by COMMIT before a new table`, text, start, end);
        const name = text.slice(start + 1, end);
        if (!/^[a-z_]+$/.test(name)) this.fail('bad table name', text, start, end);
        if (this.tablesSeen.has(name)) this.fail(`table *${name} twice in one dump: not one save command's output`, text, start, end);
        this.tablesSeen.add(name);
        this.current = { name, chains: new Map() };
        this.lastChain = undefined;
        this.keptChain = undefined;
        this.visitor.table?.(name);
        return;
      }
      default:
        if (end - start === 6 && text.startsWith('COMMIT', start)) {
          if (!this.current) this.fail('COMMIT outside a table', text, start, end);
          this.current = undefined;
          return;
        }
        if (text.startsWith('-A ', start)) this.fail('rule has no [packets:bytes] counters: run the save command with -c', text, start, end);
        this.fail('not an iptables-save line', text, start, end);
    }
  }

  private chain(text: string, start: number, end: number): void {
    if (!this.current) this.fail('chain declared outside a table', text, start, end);
    // `:NAME POLICY [p:b]`
    const nameEnd = text.indexOf(' ', start);
    if (nameEnd === -1 || nameEnd >= end || nameEnd === start + 1) this.fail('bad chain declaration', text, start, end);
    let policyEnd = text.indexOf(' ', nameEnd + 1);
    if (policyEnd === -1 || policyEnd > end) policyEnd = end;
    const name = text.slice(start + 1, nameEnd);
    const policy = text.slice(nameEnd + 1, policyEnd);
    // A builtin chain's policy or `-`, then the chain's own counters: nothing else is a declaration.
    if (!(policy === 'ACCEPT' || policy === 'DROP' || policy === '-') || !/^ \[\d+:\d+\]$/.test(text.slice(policyEnd, end))) {
      this.fail('bad chain declaration', text, start, end);
    }
    if (this.current.chains.has(name)) this.fail(`chain ${name} declared twice`, text, start, end);
    const chain = { name, policy: policy === '-' ? null : policy };
    this.current.chains.set(name, chain);
    this.visitor.chain?.(this.current.name, chain);
  }

  private rule(text: string, start: number, end: number): void {
    const table = this.current;
    if (!table) this.fail('rule outside a table', text, start, end);
    // The counters' values are taken in the same pass that finds their ends:
    // exact as numbers up to 15 digits; longer ones are read again exactly.
    let i = start + 1;
    const packetsStart = i;
    let packets = 0;
    for (let c = text.charCodeAt(i); i < end && c >= 48 && c <= 57; c = text.charCodeAt(++i)) packets = packets * 10 + (c - 48);
    const packetsEnd = i;
    if (packetsEnd === packetsStart || text.charCodeAt(i) !== COLON) this.fail('bad [packets:bytes] counters', text, start, end);
    const bytesStart = ++i;
    let bytes = 0;
    for (let c = text.charCodeAt(i); i < end && c >= 48 && c <= 57; c = text.charCodeAt(++i)) bytes = bytes * 10 + (c - 48);
    const bytesEnd = i;
    if (bytesEnd === bytesStart || text.charCodeAt(i) !== CLOSE_BRACKET) this.fail('bad [packets:bytes] counters', text, start, end);
    i++;
    if (!literalAt(text, i, ' -A ')) this.fail('expected -A after the counters', text, start, end);
    i += 4;
    // The declared chain's own name string, shared by its rules. Rules come
    // grouped by chain, so the last chain usually matches without a lookup
    // (compared in place: a chain name is short, and a slice per rule was garbage),
    // and its end is known without a search.
    let chain = this.lastChain;
    let chainEnd = chain === undefined ? -1 : i + chain.name.length;
    if (chain === undefined || chainEnd > end || (chainEnd < end && text.charCodeAt(chainEnd) !== SPACE) || !literalAt(text, i, chain.name)) {
      chainEnd = text.indexOf(' ', i);
      if (chainEnd === -1 || chainEnd > end) chainEnd = end;
      chain = table.chains.get(text.slice(i, chainEnd));
      if (!chain) this.fail(`rule for chain ${text.slice(i, chainEnd)} that the table does not declare`, text, start, end);
      this.lastChain = chain;
    }
    const view = this.view;
    view.table = table.name;
    view.chain = chain.name;
    if (packetsEnd - packetsStart <= 15 && bytesEnd - bytesStart <= 15) {
      view.packets = packets;
      view.bytes = bytes;
      view.exact = undefined;
    } else {
      // 16 digits or more: read again exactly (the numbers above may be rounded).
      const exactPackets = this.counter(text, packetsStart, packetsEnd, start, end);
      const exactBytes = this.counter(text, bytesStart, bytesEnd, start, end);
      const fit = typeof exactPackets === 'number' && typeof exactBytes === 'number';
      view.packets = fit ? exactPackets : NaN;
      view.bytes = fit ? exactBytes : NaN;
      view.exact = fit ? undefined : { packets: exactPackets, bytes: exactBytes };
    }
    view.line = this.lineNo;
    view.text = text;
    view.specStart = chainEnd < end ? chainEnd + 1 : end;
    view.specEnd = end;
    const parsed = this.visitor.parsed;
    const place = this.rulesSeen++;
    view.texts = undefined;
    if (parsed === undefined) {
      view.textId = -1;
      this.walk(view, text, start, end);
    } else if (!parsed.reuse(place, view)) {
      this.walk(view, text, start, end);
      parsed.keep(place, view, this.textBytes, this.textFrom);
    }
    this.visitor.rule(view);
  }

  /** The option walk: the target, the MARK value and the addresses of the rule text. */
  private walk(view: RuleView, text: string, lineStart: number, end: number): void {
    view.jump = undefined;
    view.goto = false;
    view.mark = undefined; // markMask is left as it was: it means nothing without a mark
    view.sourceStart = view.sourceEnd = view.destinationStart = view.destinationEnd = -1;
    this.options(view, text, view.specStart, end, lineStart);
  }

  private counter(text: string, from: number, to: number, lineStart: number, lineEnd: number): Count {
    if (to - from > 20 || (to - from === 20 && BigInt(text.slice(from, to)) > U64_MAX)) {
      this.fail('counter larger than 2^64-1', text, lineStart, lineEnd);
    }
    return parseDigits(text, from, to);
  }

  /**
   * Reads the options markmeter needs by the grammar iptables-save prints:
   * `[!] -opt [value...]` up to the target. -s and -d (maybe negated) are
   * recorded; -i, -o, -p, -m and the free-text long options take exactly one
   * value, so a comment, string or interface name that looks like an option
   * (`--comment -j`, `-i -j`, printed unquoted) is never taken for one; other
   * long options take the values up to the next option. The first -j/-g is
   * the target, and the MARK value is printed right after `MARK`.
   * Values are found with indexOf of one character per token: a gateway's
   * rule has a handful of tokens, so this costs about what a plain scan did.
   */
  private options(rule: RuleView, text: string, start: number, end: number, lineStart: number): void {
    let negated = false;
    let i = start;
    while (i < end) {
      let tokenEnd = this.tokenEnd(text, i, end, lineStart);
      const length = tokenEnd - i;
      if (length === 1 && text.charCodeAt(i) === BANG) {
        negated = true;
        i = tokenEnd + 1;
        continue;
      }
      if (text.charCodeAt(i) !== DASH || length < 2) this.fail('a value where an option belongs', text, lineStart, end);
      const letter = text.charCodeAt(i + 1);
      if (length === 2 && (letter === LETTER_J || letter === LETTER_G)) {
        this.target(rule, text, letter === LETTER_G, tokenEnd + 1, end, lineStart);
        return;
      }
      if (length === 2 && (letter === LETTER_S || letter === LETTER_D)) {
        const valueStart = tokenEnd + 1;
        const valueEnd = valueStart < end ? this.tokenEnd(text, valueStart, end, lineStart) : valueStart;
        if (valueEnd === valueStart) this.fail(`-${String.fromCharCode(letter)} without a value`, text, lineStart, end);
        if (!negated && letter === LETTER_S) {
          rule.sourceStart = valueStart;
          rule.sourceEnd = valueEnd;
        } else if (!negated) {
          rule.destinationStart = valueStart;
          rule.destinationEnd = valueEnd;
        }
        tokenEnd = valueEnd;
      } else if (length === 2 && letter === LETTER_F) {
        // -f (fragments) has no value.
      } else if (length === 2 ? ONE_VALUE_SHORT.includes(letter) : ONE_VALUE_LONG.has(text.slice(i + 2, tokenEnd))) {
        if (tokenEnd < end) tokenEnd = this.tokenEnd(text, tokenEnd + 1, end, lineStart);
        if (length > 2 && text.startsWith('match-set', i + 2) && tokenEnd < end) tokenEnd = this.tokenEnd(text, tokenEnd + 1, end, lineStart); // name and flags
      } else {
        // Any other option: its values run up to the next option (or `!`).
        while (tokenEnd + 1 < end && text.charCodeAt(tokenEnd + 1) !== DASH && !(text.charCodeAt(tokenEnd + 1) === BANG && text.charCodeAt(tokenEnd + 2) === SPACE)) {
          tokenEnd = this.tokenEnd(text, tokenEnd + 1, end, lineStart);
        }
      }
      negated = false;
      i = tokenEnd + 1;
    }
  }

  /** The target after -j/-g: its name, and for MARK the value it sets. */
  private target(rule: RuleView, text: string, goto: boolean, valueStart: number, end: number, lineStart: number): void {
    const valueEnd = valueStart < end ? spaceOrEnd(text, valueStart, end) : valueStart;
    if (valueEnd <= valueStart) this.fail(`-${goto ? 'g' : 'j'} without a value`, text, lineStart, end);
    rule.goto = goto;
    if (valueEnd - valueStart === 4 && literalAt(text, valueStart, 'MARK')) {
      rule.jump = 'MARK';
      // Exactly one option and its value follow: what else is there is not a dump, and a MARK
      // rule misread would silently lose its user's counts.
      const option = valueEnd + 1;
      const length = literalAt(text, option, '--set-xmark ') ? 12 : literalAt(text, option, '--set-mark ') ? 11 : 0;
      const valueAt = length > 0 ? option + length : MARK_OPERATIONS.findIndex((o) => text.startsWith(o, option)) >= 0 ? text.indexOf(' ', option) + 1 : -1;
      const markEnd = valueAt > 0 ? spaceOrEnd(text, valueAt, end) : -1;
      if (markEnd <= valueAt || markEnd !== end) this.fail('MARK without one --set-xmark/--set-mark value', text, lineStart, end);
      // --and-mark, --or-mark, --xor-mark (old MARK revisions) change a mark without setting a user's: not counted.
      if (length > 0) this.markValue(rule, text, valueAt, markEnd, lineStart, end);
    } else {
      rule.jump = text.slice(valueStart, valueEnd);
    }
  }

  /** The end of the token at `i`: a quoted string (with backslash escapes) runs to its closing quote, anything else to the next space. */
  private tokenEnd(text: string, i: number, end: number, lineStart: number): number {
    if (text.charCodeAt(i) === QUOTE) i = this.skipQuoted(text, i, end, lineStart);
    return spaceOrEnd(text, i, end);
  }

  private skipQuoted(text: string, i: number, end: number, lineStart: number): number {
    for (let j = i + 1; j < end; j++) {
      const c = text.charCodeAt(j);
      if (c === BACKSLASH) j++;
      else if (c === QUOTE) return j + 1;
    }
    this.fail('unterminated quoted string', text, lineStart, end);
  }

  /** `0x65/0xffffffff`, `0x65` or `101`. */
  private markValue(rule: RuleView, text: string, start: number, end: number, lineStart: number, lineEnd: number): void {
    let slash = text.indexOf('/', start);
    if (slash === -1 || slash > end) slash = end;
    const mark = parseU32(text, start, slash);
    // The full mask, as the tunnel client writes it, without a call that would box the large value.
    const full = slash === end || (end - slash === 11 && literalAt(text, slash, '/0xffffffff'));
    const mask = full ? 0xffffffff : parseU32(text, slash + 1, end);
    if (mark === undefined || mask === undefined) this.fail(`bad mark value ${text.slice(start, end)}`, text, lineStart, lineEnd);
    rule.mark = mark;
    rule.markMask = mask;
  }
}

/**
 * What the option walk found in each rule line of the last reading, by the
 * rule's place in the dump. A table keeps its rules and their order from one
 * reading to the next, so at most places the line is the one seen there last
 * time: the walk is skipped and its findings reused. The line is compared
 * whole, and the walk depends on nothing else, so a reused finding is exactly
 * what the walk would find. Each place's line is kept in RuleTexts, shared with
 * the rule memory, which knows a rule by the same text id.
 */
export class ParsedRules {
  /** Per place: its line's text in `texts` (-1: none). */
  private ids = new Int32Array(1024).fill(-1);
  /** Places with a line: those of the last reading (and more while one is read). */
  private places = 0;
  /** Per place: the rule's chain name, for reading an unchanged rule from bytes where the chain changes. */
  private chains: (string | undefined)[] = [];
  private jumps: (string | undefined)[] = [];
  /** Per place: bit 1 goto, bit 2 a mark. */
  private flags = new Uint8Array(1024);
  private marks = new Uint32Array(1024);
  private masks = new Uint32Array(1024);
  /** Per place, 4 entries: -s start and end, -d start and end, from the rule text's start (-1: none). */
  private addresses = new Int32Array(4096);

  constructor(readonly texts = new RuleTexts()) {}

  /** Whether the rule at `place` has the line it had last time; if so, fills in what the walk found then. */
  reuse(place: number, view: RuleView): boolean {
    const id = place < this.places ? this.ids[place]! : -1;
    if (id < 0 || !this.texts.sameText(id, view.text, lineStart(view), view.specEnd)) return false;
    this.fill(place, view);
    return true;
  }

  /** The chain the rule at `place` was in last time. */
  chainAt(place: number): string | undefined {
    return this.chains[place];
  }

  /** Whether data[start, end), the UTF-8 bytes of a rule line after `-A `, are the line kept at `place`. */
  sameLine(place: number, data: DataView, start: number, end: number): boolean {
    const id = place < this.places ? this.ids[place]! : -1;
    return id >= 0 && this.texts.sameBytes(id, data, start, end);
  }

  /** After sameLine(): fills in what the walk found, the view's positions being in the kept line (in bytes). */
  fill(place: number, view: RuleView): void {
    const id = this.ids[place]!;
    const texts = this.texts;
    view.textId = id;
    view.texts = texts;
    view.text = '';
    const chain = this.chains[place]!;
    const chainBytes = texts.isAscii(id) ? chain.length : Buffer.byteLength(chain);
    const lineLength = texts.lengthOf(id);
    view.specStart = lineLength === chainBytes ? lineLength : chainBytes + 1;
    view.specEnd = lineLength;
    this.found(place, view, view.specStart);
  }

  private found(place: number, view: RuleView, start: number): void {
    const flags = this.flags[place]!;
    view.jump = this.jumps[place];
    view.goto = (flags & 1) !== 0;
    if ((flags & 2) !== 0) {
      view.mark = this.marks[place]!;
      view.markMask = this.masks[place]!;
    } else view.mark = undefined;
    const a = this.addresses;
    const k = 4 * place;
    view.sourceStart = a[k]! < 0 ? -1 : start + a[k]!;
    view.sourceEnd = a[k]! < 0 ? -1 : start + a[k + 1]!;
    view.destinationStart = a[k + 2]! < 0 ? -1 : start + a[k + 2]!;
    view.destinationEnd = a[k + 2]! < 0 ? -1 : start + a[k + 3]!;
  }

  /**
   * Remembers the rule's line and what the walk found at `place`. `bytes` from
   * `offset` on are the view's text, byte for character, when it was decoded
   * so: its line's bytes are copied from there rather than written again.
   */
  keep(place: number, view: RuleView, bytes?: DataView, offset = 0): void {
    if (place >= this.flags.length) this.grow(place);
    const texts = this.texts;
    const old = place < this.places ? this.ids[place]! : -1;
    if (old >= 0) texts.release(old);
    const from = lineStart(view);
    const id = bytes !== undefined ? texts.addBytes(bytes, offset + from, offset + view.specEnd) : texts.addText(view.text, from, view.specEnd);
    this.ids[place] = id;
    if (place >= this.places) this.places = place + 1;
    view.textId = id;
    const start = view.specStart;
    // One string for the rules of a chain in a row: a kept chain is compared by identity first.
    this.chains[place] = place > 0 && this.chains[place - 1] === view.chain ? this.chains[place - 1]! : detach(view.chain);
    // A target other than MARK is a slice of the dump: copied so that it does not keep the dump alive.
    this.jumps[place] = view.jump === undefined || view.jump === 'MARK' ? view.jump : detach(view.jump);
    this.flags[place] = (view.goto ? 1 : 0) | (view.mark !== undefined ? 2 : 0);
    this.marks[place] = view.mark ?? 0;
    this.masks[place] = view.markMask;
    // From the rule text's start, in the kept line's bytes (its characters, when it is ASCII).
    const ascii = texts.isAscii(id);
    const { text } = view;
    const a = this.addresses;
    const k = 4 * place;
    a[k] = view.sourceStart < 0 ? -1 : ascii ? view.sourceStart - start : utf8Length(text, start, view.sourceStart);
    a[k + 1] = view.sourceStart < 0 ? -1 : ascii ? view.sourceEnd - start : utf8Length(text, start, view.sourceEnd);
    a[k + 2] = view.destinationStart < 0 ? -1 : ascii ? view.destinationStart - start : utf8Length(text, start, view.destinationStart);
    a[k + 3] = view.destinationStart < 0 ? -1 : ascii ? view.destinationEnd - start : utf8Length(text, start, view.destinationEnd);
  }

  /** Forgets the places past the last rule of a reading (the table shrank). */
  truncate(rules: number): void {
    for (let place = rules; place < this.places; place++) {
      const id = this.ids[place]!;
      if (id >= 0) this.texts.release(id);
      this.ids[place] = -1;
    }
    if (this.places > rules) {
      this.places = rules;
      this.chains.length = rules;
      this.jumps.length = rules;
    }
  }

  private grow(place: number): void {
    const size = Math.max(place + 1, this.flags.length * 2);
    this.ids = grown(this.ids, new Int32Array(size).fill(-1));
    this.flags = grown(this.flags, new Uint8Array(size));
    this.marks = grown(this.marks, new Uint32Array(size));
    this.masks = grown(this.masks, new Uint32Array(size));
    this.addresses = grown(this.addresses, new Int32Array(4 * size));
  }
}

/**
 * A copy of a piece of a dump that does not keep the dump alive (V8 slices
 * keep their parent string): only made for a rule text not seen before.
 * Slicing a concatenation makes V8 copy it into a string of its own first:
 * about ten times cheaper than a JSON round trip, which the first reading of
 * 100,000 rules paid 100,000 times.
 */
export function detach(text: string): string {
  return ` ${text}`.slice(1);
}

/** The UTF-8 length of text[from, to). */
function utf8Length(text: string, from: number, to: number): number {
  return Buffer.byteLength(text.slice(from, to), 'utf8');
}

/**
 * Whether `literal` (a few characters) stands at text[at]. On the hot path
 * instead of startsWith(literal, at), whose call costs more than this loop.
 */
function literalAt(text: string, at: number, literal: string): boolean {
  for (let k = 0; k < literal.length; k++) if (text.charCodeAt(at + k) !== literal.charCodeAt(k)) return false;
  return true;
}

/** The position of the first space in text[from, end), or end. (indexOf of one character is cheap; of several, not.) */
function spaceOrEnd(text: string, from: number, end: number): number {
  const i = text.indexOf(' ', from);
  return i === -1 || i > end ? end : i;
}
