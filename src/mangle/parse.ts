/**
 * Pure parser of `iptables-save -c` / `ip6tables-save -c` output (both the
 * nf_tables and the legacy backend print the same format). No I/O here.
 *
 * Every line is classified once: `#` comment, `*table`, `:CHAIN POLICY [p:b]`,
 * `[p:b] -A CHAIN ...`, `COMMIT`. Anything else is a ParseError naming the line,
 * so garbage never becomes counters.
 */
import { ParseError } from '../errors.js';

/** A u64 kernel counter, kept exact. */
export type Count = bigint;

export interface SaveChain {
  name: string;
  /** `ACCEPT`/`DROP` for builtin chains, null for user-defined ones (printed as `-`). */
  policy: string | null;
}

export interface SaveRule {
  table: string;
  chain: string;
  packets: Count;
  bytes: Count;
  /** The rule as printed after `-A CHAIN ` (without counters): stable identity of the rule. */
  spec: string;
  /** `-s` address as printed (e.g. `10.8.0.2/32`); absent when missing or negated. */
  source?: string;
  /** `-d` address as printed; absent when missing or negated. */
  destination?: string;
  /** `-j` or `-g` target. */
  jump?: string;
  /** True when the target was given with `-g` (goto). */
  goto: boolean;
  /** The mark value set by `-j MARK --set-xmark V/M` or `--set-mark V[/M]`. */
  mark?: number;
  markMask?: number;
  /** 1-based line number in the dump. */
  line: number;
}

export interface SaveTable {
  name: string;
  chains: Map<string, SaveChain>;
  rules: SaveRule[];
}

const COUNTER_RE = /^\[(\d+):(\d+)\]$/;
const U64_MAX = (1n << 64n) - 1n;

/** Parses a whole dump into its tables, in the order they appear. */
export function parseIptablesSave(text: string): SaveTable[] {
  const tables: SaveTable[] = [];
  let current: SaveTable | undefined;
  let lineNo = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    lineNo += 1;
    const raw = text.charCodeAt(end - 1) === 13 ? text.slice(start, end - 1) : text.slice(start, end);
    start = end + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;

    const first = line.charCodeAt(0);
    if (first === 42 /* * */) {
      if (current) throw new ParseError(`table *${current.name} was not closed by COMMIT before a new table`, lineNo, raw);
      const name = line.slice(1);
      if (!/^[a-z_]+$/.test(name)) throw new ParseError('bad table name', lineNo, raw);
      current = { name, chains: new Map(), rules: [] };
    } else if (line === 'COMMIT') {
      if (!current) throw new ParseError('COMMIT outside a table', lineNo, raw);
      tables.push(current);
      current = undefined;
    } else if (first === 58 /* : */) {
      if (!current) throw new ParseError('chain declared outside a table', lineNo, raw);
      const chain = parseChainLine(line, lineNo, raw);
      current.chains.set(chain.name, chain);
    } else if (first === 91 /* [ */) {
      if (!current) throw new ParseError('rule outside a table', lineNo, raw);
      current.rules.push(parseRuleLine(current, line, lineNo, raw));
    } else if (line.startsWith('-A ')) {
      throw new ParseError('rule has no [packets:bytes] counters: run the save command with -c', lineNo, raw);
    } else {
      throw new ParseError('not an iptables-save line', lineNo, raw);
    }
  }
  if (current) {
    throw new ParseError(`dump ended inside table *${current.name} without COMMIT (truncated output?)`, lineNo, '');
  }
  return tables;
}

/** The named table of a dump, or an empty one when the dump does not list it. */
export function findTable(tables: SaveTable[], name: string): SaveTable {
  return tables.find((t) => t.name === name) ?? { name, chains: new Map(), rules: [] };
}

function parseChainLine(line: string, lineNo: number, raw: string): SaveChain {
  // `:NAME POLICY [p:b]`; the counter part is optional in some versions.
  const parts = line.slice(1).split(' ');
  const name = parts[0];
  const policy = parts[1];
  if (!name || !policy) throw new ParseError('bad chain declaration', lineNo, raw);
  return { name, policy: policy === '-' ? null : policy };
}

function parseRuleLine(table: SaveTable, line: string, lineNo: number, raw: string): SaveRule {
  const close = line.indexOf('] ');
  const counters = close === -1 ? null : COUNTER_RE.exec(line.slice(0, close + 1));
  if (!counters) throw new ParseError('bad [packets:bytes] counters', lineNo, raw);
  const rest = line.slice(close + 2);
  if (!rest.startsWith('-A ')) throw new ParseError('expected -A after the counters', lineNo, raw);
  const chainEnd = rest.indexOf(' ', 3);
  const chain = chainEnd === -1 ? rest.slice(3) : rest.slice(3, chainEnd);
  if (!table.chains.has(chain)) throw new ParseError(`rule for chain ${chain} that the table does not declare`, lineNo, raw);

  const rule: SaveRule = {
    table: table.name,
    chain,
    packets: toCount(counters[1]!, lineNo, raw),
    bytes: toCount(counters[2]!, lineNo, raw),
    spec: chainEnd === -1 ? '' : rest.slice(chainEnd + 1),
    goto: false,
    line: lineNo,
  };
  readOptions(rule, tokenize(rule.spec, lineNo, raw), lineNo, raw);
  return rule;
}

function toCount(digits: string, lineNo: number, raw: string): Count {
  const value = BigInt(digits);
  if (value > U64_MAX) throw new ParseError('counter larger than 2^64-1', lineNo, raw);
  return value;
}

/** Fills the fields markmeter needs from the rule's options. */
function readOptions(rule: SaveRule, tokens: string[], lineNo: number, raw: string): void {
  let negate = false;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token === '!') {
      negate = true;
      continue;
    }
    const value = tokens[i + 1];
    switch (token) {
      case '-s':
        if (!negate) rule.source = value;
        i++;
        break;
      case '-d':
        if (!negate) rule.destination = value;
        i++;
        break;
      case '-j':
      case '-g':
        rule.jump = value;
        rule.goto = token === '-g';
        i++;
        break;
      case '--set-xmark':
      case '--set-mark':
        if (rule.jump === 'MARK') {
          if (value === undefined) throw new ParseError(`${token} without a value`, lineNo, raw);
          const [mark, mask] = parseMarkValue(value, lineNo, raw);
          rule.mark = mark;
          rule.markMask = mask;
        }
        i++;
        break;
      default:
        break;
    }
    negate = false;
  }
}

/** `0x65/0xffffffff`, `0x65` or `101` -> [mark, mask]. */
function parseMarkValue(text: string, lineNo: number, raw: string): [number, number] {
  const slash = text.indexOf('/');
  const mark = parseU32(slash === -1 ? text : text.slice(0, slash));
  const mask = slash === -1 ? 0xffffffff : parseU32(text.slice(slash + 1));
  if (mark === undefined || mask === undefined) throw new ParseError(`bad mark value ${text}`, lineNo, raw);
  return [mark, mask];
}

export function parseU32(text: string): number | undefined {
  if (!/^(0x[0-9a-fA-F]{1,8}|\d{1,10})$/.test(text)) return undefined;
  const value = Number(text);
  return value <= 0xffffffff ? value : undefined;
}

/** Splits rule options on spaces, honouring iptables' double quotes and backslash escapes. */
function tokenize(spec: string, lineNo: number, raw: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  const n = spec.length;
  while (i < n) {
    while (i < n && spec.charCodeAt(i) === 32) i++;
    if (i >= n) break;
    if (spec.charCodeAt(i) === 34 /* " */) {
      let value = '';
      i++;
      while (i < n && spec.charCodeAt(i) !== 34) {
        if (spec.charCodeAt(i) === 92 /* \ */ && i + 1 < n) i++;
        value += spec[i];
        i++;
      }
      if (i >= n) throw new ParseError('unterminated quoted string', lineNo, raw);
      i++;
      tokens.push(value);
    } else {
      const end = spec.indexOf(' ', i);
      const stop = end === -1 ? n : end;
      tokens.push(spec.slice(i, stop));
      i = stop;
    }
  }
  return tokens;
}
