/**
 * Pure parser of `tc -s class show dev X` text (iproute2 6.1; Debian 12's tc prints classes as
 * text even with -j). No I/O here.
 *
 * Each class is a block: a `class KIND ID (root|parent ID) [leaf H:] OPTIONS` line, its stat
 * lines, then a blank line. HTB and HFSC classes (the shaping classes) are read strictly: every
 * stat line must be one tc prints for them, and a block without its Sent line, or with one twice,
 * is a ParseError naming the line. A classful leaf qdisc's classes show up in the same output
 * (`class tbf 12:1 parent 12:` here; fq_codel's and sfq's per-flow classes elsewhere): they are
 * returned with their kind, their generic Sent line read when they print one, and their own
 * indented stat lines skipped, since nothing is counted from them. Any other line is a
 * ParseError, so garbage never becomes counters.
 */
import { ParseError } from '../../errors.js';
import { parseDigits, type Count } from '../../shared/count.js';

/** The counters of a class's ` Sent B bytes P pkt (dropped D, overlimits O requeues R)` line, exact. */
export interface TcClassCounters {
  /** Bytes the class sent (u64), as the qdisc counts them: link-layer header included (14 B per packet on Ethernet). */
  bytes: Count;
  /** Packets the class sent. */
  packets: Count;
  /** Packets dropped, the leaf qdisc's drops included. A u32 in the kernel: wraps at 2^32. */
  dropped: Count;
  /** Times the class was over its limit. A u32 in the kernel: wraps at 2^32. */
  overlimits: Count;
  /** A u32 in the kernel. */
  requeues: Count;
}

/** One class of `tc -s class show`. */
export interface TcClass {
  /** The qdisc kind that owns the class: `htb`, `hfsc`, or a leaf qdisc's kind (`tbf`, `fq_codel`...). */
  kind: string;
  /** `major:minor` in hex, as tc prints it (`1:10`; `1:` for HFSC's root class): the text a filter's flowid/classid uses. */
  classid: string;
  /** The parent's id as printed (`1:1`, or a leaf qdisc's handle like `12:`); undefined for `root`. */
  parent: string | undefined;
  /**
   * The handle of the class's leaf qdisc (`11:`) when it has one with a handle. An HTB class
   * whose leaf is the default pfifo prints none, so a class with no children is a leaf class
   * whether or not this is set.
   */
  leaf: string | undefined;
  /** Always set for htb and hfsc; undefined for a leaf qdisc's class that prints no Sent line (tbf). */
  counters: TcClassCounters | undefined;
  /** 1-based line number of the `class` line. */
  line: number;
}

/** Kinds read strictly: the stat lines each prints after the generic ones, by a short name. */
const SHAPERS: Record<string, [name: string, pattern: RegExp][]> = {
  htb: [
    ['lended', /^ lended: \d+ borrowed: \d+ giants: \d+ ?$/],
    ['tokens', /^ tokens: -?\d+ ctokens: -?\d+ ?$/],
  ],
  hfsc: [['period', /^ period \d+ (?:work \d+ bytes )?(?:rtwork \d+ bytes )?level \d+ ?$/]],
};

const SENT = /^ Sent (\d+) bytes (\d+) pkt(?: \(dropped (\d+), overlimits (\d+) requeues (\d+)\))? ?$/;
/** Offloaded classes split Sent into these two lines (counted already in Sent). */
const SENT_SPLIT = /^ Sent (?:software|hardware) \d+ bytes \d+ pkt ?$/;
/** The queue line, after the rate estimator's figures when the class has one. */
const BACKLOG = /^ (?:rate [0-9.]+[KMGT]?bit \d+pps )?backlog [0-9.]+[KMG]?b \d+p requeues \d+ ?$/;
const ID = /^[0-9a-f]{1,4}:[0-9a-f]{0,4}$/;
const U64_MAX = (1n << 64n) - 1n;

interface OpenClass {
  cls: TcClass;
  /** The class line, for errors about the block. */
  text: string;
  /** Stat lines seen, by name: each may appear once. */
  seen: Set<string>;
}

/**
 * Parses `tc -s class show dev X` output into its classes, in the order tc printed them.
 * Empty output (a device with no classes) is an empty list. Throws ParseError (with the line
 * number and text) for anything tc does not print, and for an HTB or HFSC class whose stats
 * are missing or cut off (run tc with -s).
 */
export function parseClassStats(text: string): TcClass[] {
  const classes: TcClass[] = [];
  let open: OpenClass | undefined;
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') {
      if (open) finish(open);
      open = undefined;
      return;
    }
    if (line.startsWith('class ')) {
      if (open) finish(open);
      open = { cls: classLine(line, lineNo), text: line, seen: new Set() };
      classes.push(open.cls);
      return;
    }
    if (!open) throw new ParseError('not a line of tc -s class show: a class line was expected', lineNo, line);
    statLine(open, line, lineNo);
  });
  if (open) finish(open);
  return classes;
}

function classLine(line: string, lineNo: number): TcClass {
  const words = line.trimEnd().split(' ');
  const fail = (why: string): never => {
    throw new ParseError(`bad class line: ${why}`, lineNo, line);
  };
  const kind = words[1] ?? '';
  if (!/^[a-z][a-z0-9_]*$/.test(kind)) fail('no qdisc kind');
  const classid = words[2] ?? '';
  if (!ID.test(classid)) fail('no major:minor class id');
  let i = 3;
  if (words[i] === 'dev') i += 2;
  let parent: string | undefined;
  if (words[i] === 'root') i += 1;
  else if (words[i] === 'parent' && ID.test(words[i + 1] ?? '')) {
    parent = words[i + 1];
    i += 2;
  } else fail('neither root nor parent ID');
  let leaf: string | undefined;
  if (words[i] === 'leaf') {
    leaf = words[i + 1];
    if (leaf === undefined || !/^[0-9a-f]{1,4}:$/.test(leaf)) fail('bad leaf qdisc handle');
  }
  return { kind, classid, parent, leaf, counters: undefined, line: lineNo };
}

function statLine(open: OpenClass, line: string, lineNo: number): void {
  const once = (name: string) => {
    if (open.seen.has(name)) throw new ParseError(`a second ${name} line for class ${open.cls.classid}: not one class's stats`, lineNo, line);
    open.seen.add(name);
  };
  const sent = SENT.exec(line);
  if (sent) {
    once('Sent');
    const [, bytes, packets, dropped, overlimits, requeues] = sent;
    if (dropped === undefined && open.cls.kind in SHAPERS) {
      throw new ParseError(`class ${open.cls.classid}: the Sent line has no (dropped, overlimits, requeues) part`, lineNo, line);
    }
    const count = (digits: string | undefined) => (digits === undefined ? 0 : u64(digits, line, lineNo));
    open.cls.counters = { bytes: count(bytes), packets: count(packets), dropped: count(dropped), overlimits: count(overlimits), requeues: count(requeues) };
    return;
  }
  if (SENT_SPLIT.test(line)) return;
  if (BACKLOG.test(line)) return once('backlog');
  const own = SHAPERS[open.cls.kind];
  if (own === undefined) {
    // A leaf qdisc's class: its own stat lines are indented; nothing is counted from them.
    if (line.startsWith(' ') || line.startsWith('\t')) return;
    throw new ParseError(`not a stat line of class ${open.cls.classid}`, lineNo, line);
  }
  for (const [name, pattern] of own) if (pattern.test(line)) return once(name);
  if (line.startsWith(' Sent ')) throw new ParseError(`class ${open.cls.classid}: a Sent line that is not "Sent N bytes N pkt (dropped N, overlimits N requeues N)"`, lineNo, line);
  throw new ParseError(`not a stat line tc prints for a ${open.cls.kind} class`, lineNo, line);
}

/** An HTB or HFSC class must have had its Sent line and every stat line of its kind: else the output was cut or -s was missing. */
function finish(open: OpenClass): void {
  const own = SHAPERS[open.cls.kind];
  if (own === undefined) return;
  const missing = ['Sent', 'backlog', ...own.map(([name]) => name)].filter((name) => !open.seen.has(name));
  if (missing.length) {
    const hint = missing.includes('Sent') ? ' (run tc with -s, or the output was cut off)' : ' (output cut off?)';
    throw new ParseError(`${open.cls.kind} class ${open.cls.classid} has no ${missing.join(', ')} line${hint}`, open.cls.line, open.text);
  }
}

function u64(digits: string, line: string, lineNo: number): Count {
  if (digits.length > 20 || (digits.length === 20 && BigInt(digits) > U64_MAX)) {
    throw new ParseError('a counter larger than 2^64-1', lineNo, line);
  }
  return parseDigits(digits, 0, digits.length);
}
