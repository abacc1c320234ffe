/**
 * Pure parser of `tc filter show dev X` text (iproute2 6.1): for each filter that sends packets
 * to a class, how it ties that class to a user. No I/O here.
 *
 * Every filter line starts `filter [dev D] (parent ID|root|ingress|egress) [protocol P] [pref N]
 * KIND [chain N]`; a line with nothing after that heads a classifier instance and names no class.
 * - u32 (f_u32.c): `fh H order N key ht H bkt B [*]flowid ID [link H] [flags]`, then its keys as
 *   `  match VVVVVVVV/MMMMMMMM at [nexthdr+]OFF`, in network byte order. A filter whose only
 *   condition is one whole host address (IPv4: the 32-bit word at 12 = source, 16 = destination;
 *   IPv6: the four words at 8-20 = source, 24-36 = destination) ties its class to that address.
 *   Any other u32 filter (a partial mask, other offsets, more conditions, none) ties it to no one.
 * - fw (f_fw.c 6.1): `handle 0xMARK[/0xMASK] classid ID`: the mark (and mask) the class is for.
 * - other classifiers (bpf, flow, basic, matchall, flower...): the class named by their
 *   flowid/classid, tied to no one; their own further lines are skipped.
 * Filters that name no class (u32 hash tables and links, action-only filters) are not returned.
 * A line of a u32 or fw filter that is not what tc prints is a ParseError naming the line.
 */
import { ParseError } from '../../errors.js';
import { canonicalIp } from '../../shared/address.js';

interface TcFilterBase {
  /** The classifier as tc prints it: `u32`, `fw`, `bpf`... */
  classifier: string;
  /** The class the filter sends packets to, as tc prints it (`1:10`), the same text as TcClass.classid. */
  classid: string;
  /** Where the filter is attached: `1:` (the root qdisc), `1:1` (a class), `root`, `ingress`, `egress`. */
  parent: string;
  /** The protocol as tc prints it (`ip`, `ipv6`, `all`...); undefined when tc prints none. */
  protocol: string | undefined;
  pref: number | undefined;
  /** The filter's handle as printed (u32 `800::800`, fw `0x65`, bpf `0x1`); undefined when tc prints none. */
  handle: string | undefined;
  /** 1-based line number of the filter's `filter` line. */
  line: number;
}

/** A u32 filter whose one condition is a whole host address: the class is that address's. */
export interface TcAddressFilter extends TcFilterBase {
  tie: 'address';
  /** Which address of the packet it matches. */
  match: 'src' | 'dst';
  /** Canonical text: IPv4 dotted, IPv6 as inet_ntop prints it. */
  address: string;
}

/** An fw filter: the class is for packets whose mark, masked, equals `mark`. */
export interface TcMarkFilter extends TcFilterBase {
  tie: 'mark';
  mark: number;
  /** 0xffffffff when tc prints no mask. */
  mask: number;
}

/** A filter that sends packets to a class but ties it to no single user: the class's counts are unattributed. */
export interface TcUntiedFilter extends TcFilterBase {
  tie: 'none';
  /** Why, for `check` (e.g. `u32: 1 condition, not a whole host address`). */
  reason: string;
}

export type TcFilter = TcAddressFilter | TcMarkFilter | TcUntiedFilter;

/** One u32 key line. */
interface U32Key {
  value: number;
  mask: number;
  offset: number;
  /** `at nexthdr+N`: relative to the next header, not the IP header. */
  nexthdr: boolean;
}

/** A u32 or fw filter being read: its key lines and extra conditions follow its filter line. */
interface OpenFilter {
  base: TcFilterBase;
  classifier: 'u32' | 'fw' | 'other';
  /** u32 and fw: undefined when the filter names no class (not returned). */
  classid: string | undefined;
  keys: U32Key[];
  /** u32 conditions other than keys (offset, hash, mark, input dev): no single address then. */
  extra: string[];
  mark?: number;
  mask?: number;
  /** Inside an action (or police) block: its tab-indented lines follow. */
  inAction: boolean;
}

const ID = /^[0-9a-f]{1,4}:[0-9a-f]{0,4}$/;
const U32_KEY = /^ {2}match ([0-9a-f]{8})\/([0-9a-f]{8}) at (nexthdr\+)?(-?\d+)(?: \(success \d+ \) ?)?$/;
const U32_FLAGS = new Set(['skip_hw', 'skip_sw', 'in_hw', 'not_in_hw']);
const FULL = 0xffffffff;

/**
 * Parses `tc filter show dev X` output into the filters that send packets to a class, in the
 * order tc printed them. Empty output (no filters) is an empty list. Throws ParseError (with
 * the line number and text) for a line that is not what tc prints.
 */
export function parseFilters(text: string): TcFilter[] {
  const filters: TcFilter[] = [];
  let open: OpenFilter | undefined;
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.startsWith('filter ')) {
      if (open) filters.push(...close(open));
      open = filterLine(line, lineNo);
      return;
    }
    if (line.trim() === '') return;
    if (!open) throw new ParseError('not a line of tc filter show: a filter line was expected', lineNo, line);
    continuation(open, line, lineNo);
  });
  if (open) filters.push(...close(open));
  return filters;
}

function filterLine(line: string, lineNo: number): OpenFilter | undefined {
  const words = line.trimEnd().split(' ');
  const fail = (why: string): never => {
    throw new ParseError(`bad filter line: ${why}`, lineNo, line);
  };
  let i = 1;
  if (words[i] === 'dev') i += 2;
  let parent = words[i];
  if (parent === 'parent') {
    parent = words[i + 1];
    if (parent === undefined || !ID.test(parent)) fail('bad parent ID');
    i += 2;
  } else if (parent === 'root' || parent === 'ingress' || parent === 'egress') i += 1;
  else fail('no parent');
  let protocol: string | undefined;
  if (words[i] === 'protocol') {
    protocol = words[i + 1];
    i += 2;
  }
  let pref: number | undefined;
  if (words[i] === 'pref') {
    const digits = words[i + 1] ?? '';
    if (!/^\d{1,5}$/.test(digits)) fail('bad pref');
    pref = Number(digits);
    i += 2;
  }
  const classifier = words[i] ?? '';
  if (!/^[a-z][a-z0-9_]*$/.test(classifier)) fail('no classifier kind');
  i += 1;
  if (words[i] === 'chain') {
    if (!/^\d+$/.test(words[i + 1] ?? '')) fail('bad chain');
    i += 2;
  }
  const options = words.slice(i);
  const base: TcFilterBase = { classifier, classid: '', parent: parent!, protocol, pref, handle: undefined, line: lineNo };
  const open: OpenFilter = { base, classifier: 'other', classid: undefined, keys: [], extra: [], inAction: false };
  // The line that heads a classifier instance: no options, no class.
  if (options.length === 0) return classifier === 'u32' || classifier === 'fw' ? { ...open, classifier } : open;
  if (classifier === 'u32') return u32Line(open, options, fail);
  if (classifier === 'fw') return fwLine(open, options, fail);
  // Another classifier: the class its flowid/classid names, if any.
  const at = options.findIndex((w, k) => (w === 'flowid' || w === 'classid') && ID.test(options[k + 1] ?? ''));
  if (at !== -1) open.classid = options[at + 1];
  const handle = options.indexOf('handle');
  if (handle !== -1) base.handle = options[handle + 1];
  return open;
}

function u32Line(open: OpenFilter, words: string[], fail: (why: string) => never): OpenFilter {
  open.classifier = 'u32';
  if (words[0] !== 'fh' || words[1] === undefined) fail('u32 options without fh');
  open.base.handle = words[1];
  let i = 2;
  // A hash table: `fh 2: ht divisor 256`.
  if (words[i] === 'ht' && words[i + 1] === 'divisor' && /^\d+$/.test(words[i + 2] ?? '') && words.length === i + 3) return open;
  if (words[i] === 'order') {
    if (!/^\d+$/.test(words[i + 1] ?? '')) fail('bad u32 order');
    i += 2;
  }
  if (words[i] !== 'key' || words[i + 1] !== 'ht' || !/^[0-9a-f]+$/.test(words[i + 2] ?? '') || words[i + 3] !== 'bkt' || !/^[0-9a-f]+$/.test(words[i + 4] ?? '')) {
    fail('u32 filter without "key ht H bkt B"');
  }
  i += 5;
  if (words[i] === '*flowid' || words[i] === 'flowid') {
    if (!ID.test(words[i + 1] ?? '')) fail('bad u32 flowid');
    open.classid = words[i + 1];
    i += 2;
  } else if (words[i] === 'terminal' && words[i + 1] === 'flowid') i += 2;
  if (words[i] === 'link') {
    if (!/^[0-9a-f:]+$/.test(words[i + 1] ?? '')) fail('bad u32 link');
    open.extra.push(`link ${words[i + 1]}`);
    i += 2;
  }
  while (i < words.length && U32_FLAGS.has(words[i]!)) i += 1;
  // `(rule hit N success N)` with -s on kernels that count per key.
  if (words[i] === '(rule' && words[i + 1] === 'hit' && /^\d+$/.test(words[i + 2] ?? '') && words[i + 3] === 'success' && /^\d+\)$/.test(words[i + 4] ?? '')) i += 5;
  if (i !== words.length) fail(`unexpected u32 option "${words[i]}"`);
  return open;
}

/** `handle 0x65[/0xff] classid 1:11 [input dev D]`: f_fw.c's fw_print_opt in iproute2 6.1. */
function fwLine(open: OpenFilter, words: string[], fail: (why: string) => never): OpenFilter {
  open.classifier = 'fw';
  const handle = /^0x([0-9a-f]{1,8})(?:\/0x([0-9a-f]{1,8}))?$/.exec(words[1] ?? '');
  if (words[0] !== 'handle' || !handle) fail('fw filter without "handle 0xMARK[/0xMASK]"');
  open.base.handle = words[1];
  open.mark = parseInt(handle![1]!, 16);
  open.mask = handle![2] === undefined ? FULL : parseInt(handle![2], 16);
  let i = 2;
  if (words[i] === 'classid') {
    if (!ID.test(words[i + 1] ?? '')) fail('bad fw classid');
    open.classid = words[i + 1];
    i += 2;
  }
  if (words[i] === 'input' && words[i + 1] === 'dev' && words[i + 2] !== undefined) i += 3;
  if (i !== words.length) fail(`unexpected fw option "${words[i]}"`);
  return open;
}

/** A line after a filter line: u32 keys and conditions, action and police blocks. */
function continuation(open: OpenFilter, line: string, lineNo: number): void {
  // Actions print tab-indented (`\taction order 1: mirred ...`), police blocks start ` police`.
  if (line.startsWith('\t') || (open.inAction && line.startsWith(' '))) return;
  if (line.startsWith(' police ')) {
    open.inAction = true;
    open.extra.push('police or action');
    return;
  }
  // Another classifier's own lines are indented; nothing is read from them.
  if (open.classifier === 'other' && (line.startsWith(' ') || line.startsWith('\t'))) return;
  if (open.classifier === 'u32' && open.base.handle !== undefined) {
    const key = U32_KEY.exec(line);
    if (key) {
      open.keys.push({ value: parseInt(key[1]!, 16), mask: parseInt(key[2]!, 16), offset: Number(key[4]), nexthdr: key[3] !== undefined });
      return;
    }
    if (/^ {4}offset .+$/.test(line)) return void open.extra.push('offset');
    if (/^ {4}hash mask [0-9a-f]{8} at -?\d+ ?$/.test(line)) return void open.extra.push('hash');
    if (/^ {2}mark 0x[0-9a-f]+ 0x[0-9a-f]+ \(success \d+\)$/.test(line)) return void open.extra.push('mark');
    if (/^ {2}input dev \S+$/.test(line)) return void open.extra.push('input dev');
  }
  throw new ParseError(`not a line tc prints for a ${open.base.classifier} filter`, lineNo, line);
}

/** The filter as returned: none when it names no class. */
function close(open: OpenFilter): TcFilter[] {
  if (open.classid === undefined) return [];
  const base = { ...open.base, classid: open.classid };
  if (open.classifier === 'fw') return [{ ...base, tie: 'mark', mark: open.mark!, mask: open.mask! }];
  if (open.classifier === 'other') return [{ ...base, tie: 'none', reason: `${base.classifier}: not a classifier markmeter reads users from` }];
  const host = open.extra.length === 0 ? u32Host(open.keys, base.protocol) : undefined;
  if (host) return [{ ...base, tie: 'address', ...host }];
  return [{ ...base, tie: 'none', reason: `u32: ${u32Untied(open, base.protocol)}, not one whole host address` }];
}

/** Why a u32 filter ties its class to no single address, in a few words. */
function u32Untied(open: OpenFilter, protocol: string | undefined): string {
  if (open.extra.length) return `matches on ${open.extra.join(', ')}`;
  if (open.keys.length === 0) return 'no condition (every packet)';
  if (protocol !== 'ip' && protocol !== 'ipv6') return `protocol ${protocol ?? 'unset'}`;
  if (open.keys.some((k) => k.mask !== FULL)) return 'a partial mask';
  return `${open.keys.length} condition${open.keys.length === 1 ? '' : 's'} at offsets ${open.keys.map((k) => (k.nexthdr ? `nexthdr+${k.offset}` : k.offset)).join(',')}`;
}

/** The single host address a u32 filter's keys are, or undefined. */
function u32Host(keys: U32Key[], protocol: string | undefined): { match: 'src' | 'dst'; address: string } | undefined {
  if (keys.some((k) => k.nexthdr || k.mask !== FULL)) return undefined;
  if (protocol === 'ip' && keys.length === 1) {
    const [key] = keys;
    const match = key!.offset === 12 ? 'src' : key!.offset === 16 ? 'dst' : undefined;
    if (match === undefined) return undefined;
    const v = key!.value;
    return { match, address: `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}` };
  }
  if (protocol === 'ipv6' && keys.length === 4) {
    const sorted = [...keys].sort((a, b) => a.offset - b.offset);
    const first = sorted[0]!.offset;
    if ((first !== 8 && first !== 24) || sorted.some((k, n) => k.offset !== first + 4 * n)) return undefined;
    const groups = sorted.flatMap((k) => [(k.value >>> 16).toString(16), (k.value & 0xffff).toString(16)]);
    const address = canonicalIp(groups.join(':'));
    return address === undefined ? undefined : { match: first === 8 ? 'src' : 'dst', address };
  }
  return undefined;
}
