import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { ParseError } from '../../src/errors.js';
import { parseClassStats, parseFilters, type TcClass, type TcFilter } from '../../src/sources/tc/parse.js';

/** A fixture's text; the `#` header lines of hand-written ones become blank lines, so line numbers stay the file's. */
const fixture = (name: string) =>
  readFileSync(new URL(`../fixtures/tc/${name}`, import.meta.url), 'utf8').replace(/^#.*$/gm, '');

type ClassRow = [kind: string, classid: string, parent: string | undefined, leaf: string | undefined, bytes: bigint, packets: bigint, dropped: bigint, overlimits: bigint, requeues: bigint, line: number];
const classRow = (c: TcClass): ClassRow | [string, string, string | undefined, string | undefined, 'no counters', number] => {
  if (!c.counters) return [c.kind, c.classid, c.parent, c.leaf, 'no counters', c.line];
  const { bytes, packets, dropped, overlimits, requeues } = c.counters;
  return [c.kind, c.classid, c.parent, c.leaf, BigInt(bytes), BigInt(packets), BigInt(dropped), BigInt(overlimits), BigInt(requeues), c.line];
};

// The tables of test/fixtures/tc/README.md (bytes = IP packet + 14 B Ethernet header).
const UPLOAD: ReturnType<typeof classRow>[] = [
  ['htb', '1:11', '1:1', '11:', 7578n, 9n, 13n, 6n, 0n, 1],
  ['htb', '1:99', '1:1', undefined, 1084n, 2n, 0n, 0n, 0n, 7],
  ['htb', '1:10', '1:1', undefined, 294n, 3n, 0n, 0n, 0n, 13],
  ['htb', '1:1', undefined, undefined, 10902n, 23n, 0n, 0n, 0n, 19],
  ['htb', '1:13', '1:1', undefined, 324n, 2n, 0n, 0n, 0n, 25],
  ['htb', '1:20', '1:1', undefined, 1268n, 4n, 0n, 0n, 0n, 31],
  ['htb', '1:12', '1:1', '12:', 354n, 3n, 0n, 0n, 0n, 37],
  ['tbf', '12:1', '12:', undefined, 'no counters', 43],
];
const withBob = (rows: typeof UPLOAD, bob: ClassRow, root: ClassRow, other: Partial<Record<string, ClassRow>> = {}) =>
  rows.map((r) => (r[1] === '1:11' ? bob : r[1] === '1:1' ? root : (other[r[1]] ?? r)));

const classCases: [fixture: string, expected: ReturnType<typeof classRow>[]][] = [
  ['upload.class.txt', UPLOAD],
  // The same tc run with -j: Debian 12's tc prints HTB classes as text.
  ['upload-json-flag.class.txt', UPLOAD],
  [
    'upload-burst-backlog.class.txt',
    withBob(UPLOAD, ['htb', '1:11', '1:1', '11:', 2368n, 4n, 13n, 1n, 0n, 1], ['htb', '1:1', undefined, undefined, 5692n, 18n, 0n, 0n, 0n, 19]),
  ],
  [
    'download.class.txt',
    withBob(UPLOAD, ['htb', '1:11', '1:1', '11:', 7578n, 9n, 0n, 0n, 0n, 1], ['htb', '1:1', undefined, undefined, 9818n, 21n, 0n, 0n, 0n, 19], {
      '1:99': ['htb', '1:99', '1:1', undefined, 0n, 0n, 0n, 0n, 0n, 7],
    }),
  ],
  ['empty.class.txt', []],
  [
    'hfsc.class.txt',
    [
      ['hfsc', '1:', undefined, undefined, 0n, 0n, 0n, 0n, 0n, 7],
      ['hfsc', '1:1', '1:', undefined, 0n, 0n, 0n, 0n, 0n, 12],
      ['hfsc', '1:10', '1:1', undefined, 294n, 3n, 0n, 0n, 0n, 17],
      ['hfsc', '1:11', '1:1', '11:', 7578n, 9n, 13n, 0n, 0n, 22],
    ],
  ],
  [
    'huge-counters.class.txt',
    [
      ['htb', '1:10', '1:1', undefined, 2n ** 53n, 2n ** 53n - 1n, 2n ** 32n - 1n, 2n ** 32n - 1n, 0n, 3],
      ['htb', '1:11', '1:1', '11:', 2n ** 64n - 1n, 2n ** 53n + 1n, 13n, 6n, 0n, 9],
      ['htb', '1:1', undefined, undefined, 2n ** 53n + 1n, 2n ** 32n, 0n, 0n, 0n, 15],
    ],
  ],
];

describe('parseClassStats on real captures', () => {
  for (const [name, expected] of classCases) {
    test(`${name}: every class, exact`, () => {
      assert.deepEqual(parseClassStats(fixture(name)).map(classRow), expected);
    });
  }

  test('counters above 2^53 are exact bigints, those below stay numbers', () => {
    const [small, huge] = parseClassStats(fixture('huge-counters.class.txt'));
    assert.equal(small!.counters!.bytes, 9007199254740992n);
    assert.equal(small!.counters!.packets, 9007199254740991);
    assert.equal(huge!.counters!.bytes, 18446744073709551615n);
  });

  test("the root class's counters are the sum of its children's (nothing lost or read twice)", () => {
    for (const name of ['upload.class.txt', 'download.class.txt', 'upload-burst-backlog.class.txt']) {
      const htb = parseClassStats(fixture(name)).filter((c) => c.kind === 'htb');
      const children = htb.filter((c) => c.parent === '1:1');
      const root = htb.find((c) => c.classid === '1:1')!;
      assert.equal(children.reduce((sum, c) => sum + Number(c.counters!.bytes), 0), root.counters!.bytes, name);
      assert.equal(children.reduce((sum, c) => sum + Number(c.counters!.packets), 0), root.counters!.packets, name);
    }
  });
});

type FilterRow = [classifier: string, classid: string, pref: number | undefined, tie: string, detail: string, line: number];
const filterRow = (f: TcFilter): FilterRow => {
  const detail = f.tie === 'address' ? `${f.match} ${f.address}` : f.tie === 'mark' ? `0x${f.mark.toString(16)}/0x${f.mask.toString(16)}` : f.reason;
  return [f.classifier, f.classid, f.pref, f.tie, detail, f.line];
};

const filterCases: [fixture: string, expected: FilterRow[]][] = [
  [
    'upload.filter.txt',
    [
      ['u32', '1:10', 1, 'address', 'src 10.8.0.2', 3],
      ['u32', '1:11', 2, 'address', 'src 10.8.0.3', 7],
      ['u32', '1:12', 3, 'address', 'src fd00:8::2', 11],
      ['u32', '1:13', 4, 'address', 'src fd00:8::3', 18],
      ['u32', '1:20', 5, 'none', 'u32: 2 conditions at offsets 12,16, not one whole host address', 25],
      ['u32', '1:20', 6, 'none', 'u32: a partial mask, not one whole host address', 30],
      ['bpf', '1:99', 9, 'none', 'bpf: not a classifier markmeter reads users from', 33],
    ],
  ],
  [
    'download.filter.txt',
    [
      ['u32', '1:10', 1, 'address', 'dst 10.8.0.2', 3],
      // In bucket 3 of hash table 2:, reached through the link filter (which names no class).
      ['u32', '1:11', 2, 'address', 'dst 10.8.0.3', 7],
      ['u32', '1:12', 3, 'address', 'dst fd00:8::2', 15],
      ['u32', '1:13', 4, 'address', 'dst fd00:8::3', 22],
      ['u32', '1:20', 6, 'none', 'u32: a partial mask, not one whole host address', 29],
    ],
  ],
  [
    'fw.filter.txt',
    [
      ['fw', '1:11', 3, 'mark', '0x65/0xffffffff', 6],
      ['fw', '1:12', 3, 'mark', '0x66/0xffffffff', 7],
      ['fw', '1:13', 4, 'mark', '0x67/0xff', 9],
      ['fw', '1:14', 5, 'mark', '0xc8/0xffffffff', 11],
    ],
  ],
  ['empty.filter.txt', []],
];

describe('parseFilters on real captures', () => {
  for (const [name, expected] of filterCases) {
    test(`${name}: every filter that names a class, and its tie`, () => {
      assert.deepEqual(parseFilters(fixture(name)).map(filterRow), expected);
    });
  }

  test('a filter keeps where it is attached, its protocol and handle', () => {
    const [first] = parseFilters(fixture('download.filter.txt'));
    assert.deepEqual([first!.parent, first!.protocol, first!.handle], ['1:', 'ip', '800::800']);
  });

  const head = 'filter parent 1: protocol ip pref 1 u32 chain 0 fh 800::800 order 2048 key ht 800 bkt 0 *flowid 1:10 not_in_hw \n';
  const untied: [string, string, string][] = [
    ['no key (the kernel dropped a mark match it lacks)', `${head}`, 'u32: no condition (every packet), not one whole host address'],
    ['a host address at nexthdr+', `${head}  match 0a080002/ffffffff at nexthdr+12\n`, 'u32: 1 condition at offsets nexthdr+12, not one whole host address'],
    ['an offset', `${head}  match 0a080002/ffffffff at 12\n    offset 0f00>>6 at 0 \n`, 'u32: matches on offset, not one whole host address'],
    ['a whole word at another offset', `${head}  match 0a080002/ffffffff at 20\n`, 'u32: 1 condition at offsets 20, not one whole host address'],
    ['protocol all', head.replace('protocol ip', 'protocol all') + '  match 0a080002/ffffffff at 12\n', 'u32: protocol all, not one whole host address'],
    ['three of the four IPv6 words', head.replace('protocol ip', 'protocol ipv6') + '  match fd000008/ffffffff at 8\n  match 00000000/ffffffff at 12\n  match 00000002/ffffffff at 20\n', 'u32: 3 conditions at offsets 8,12,20, not one whole host address'],
  ];
  for (const [name, text, reason] of untied) {
    test(`u32 with ${name}: ties the class to no one`, () => {
      assert.deepEqual(parseFilters(text).map((f) => [f.tie, f.tie === 'none' ? f.reason : '']), [['none', reason]]);
    });
  }

  test('an action block after a u32 filter is skipped; IPv6 addresses come out as inet_ntop prints them', () => {
    const text =
      head.replace('protocol ip', 'protocol ipv6').replace('*flowid', 'flowid') +
      '  match 00000000/ffffffff at 24\n  match 00000000/ffffffff at 28\n  match 0000ffff/ffffffff at 32\n  match 0a080002/ffffffff at 36\n' +
      '\taction order 1: mirred (Egress Redirect to device b0) stolen\n\tindex 1 ref 1 bind 1\n\n';
    assert.deepEqual(parseFilters(text).map(filterRow), [['u32', '1:10', 1, 'address', 'dst ::ffff:10.8.0.2', 1]]);
  });
});

describe('the tc parsers reject what tc does not print', () => {
  const htb = 'class htb 1:10 parent 1:1 prio 0 rate 10Mbit ceil 10Mbit burst 1600b cburst 1600b \n';
  const sent = ' Sent 294 bytes 3 pkt (dropped 0, overlimits 0 requeues 0) \n';
  const rest = ' backlog 0b 0p requeues 0\n lended: 3 borrowed: 0 giants: 0\n tokens: 18775 ctokens: 18775\n\n';
  const badClasses: [string, string, RegExp, number][] = [
    ['garbage', 'hello world\n', /a class line was expected/, 1],
    ['garbage inside an HTB class', `${htb}${sent}hello\n${rest}`, /not a stat line/, 3],
    ['a Sent line with a non-number', `${htb} Sent 29x bytes 3 pkt (dropped 0, overlimits 0 requeues 0) \n${rest}`, /Sent line that is not/, 2],
    ['a truncated Sent line', `${htb} Sent 294 bytes 3 pk`, /Sent line that is not/, 2],
    ['a class cut off after its first line', htb, /has no Sent, backlog, lended, tokens line \(run tc with -s/, 1],
    ['a class cut off inside its stats', `${htb}${sent} backlog 0b 0p requeues 0\n`, /has no lended, tokens line \(output cut off/, 1],
    ['class show without -s', `${htb}class htb 1:11 parent 1:1 prio 0 rate 1Kbit ceil 1Kbit burst 2Kb cburst 2Kb \n`, /class 1:10 has no Sent/, 1],
    ['two Sent lines in one class', `${htb}${sent}${sent}${rest}`, /a second Sent line/, 3],
    ['a Sent line without its drops', `${htb} Sent 294 bytes 3 pkt \n${rest}`, /no \(dropped, overlimits, requeues\) part/, 2],
    ['a counter above u64', `${htb} Sent 18446744073709551616 bytes 3 pkt (dropped 0, overlimits 0 requeues 0) \n${rest}`, /larger than 2\^64-1/, 2],
    ['a class line without parent', 'class htb 1:10 prio 0 rate 10Mbit \n', /neither root nor parent/, 1],
    ['a class line with a bad id', 'class htb 1-10 root rate 10Mbit \n', /major:minor/, 1],
    ['a non-indented line after a leaf qdisc class', 'class tbf 12:1 parent 12: \nweird\n', /not a stat line of class 12:1/, 2],
  ];
  for (const [name, text, message, line] of badClasses) {
    test(`class show, ${name}: a ParseError with the line`, () => {
      assert.throws(
        () => parseClassStats(text),
        (error: unknown) => error instanceof ParseError && message.test(error.message) && error.line === line,
      );
    });
  }

  const u32 = 'filter parent 1: protocol ip pref 1 u32 chain 0 fh 800::800 order 2048 key ht 800 bkt 0 *flowid 1:10 not_in_hw \n';
  const badFilters: [string, string, RegExp, number][] = [
    ['garbage', 'hello world\n', /a filter line was expected/, 1],
    ['a match line that is not hex', `${u32}  match 0a08000z/ffffffff at 12\n`, /not a line tc prints for a u32 filter/, 2],
    ['a truncated match line', `${u32}  match 0a080002/ffff`, /not a line tc prints for a u32 filter/, 2],
    ['a match line after a classifier head', 'filter parent 1: protocol ip pref 1 u32 chain 0 \n  match 0a080002/ffffffff at 12\n', /not a line tc prints for a u32 filter/, 2],
    ['a u32 filter with an unknown option', u32.replace('not_in_hw', 'what_is_this'), /unexpected u32 option "what_is_this"/, 1],
    ['a u32 filter with a bad flowid', u32.replace('1:10', '1.10'), /bad u32 flowid/, 1],
    ['an fw handle that is not hex', 'filter parent 1: protocol ip pref 3 fw chain 0 handle 101 classid 1:11 \n', /without "handle 0xMARK/, 1],
    ['an fw filter with an unknown option', 'filter parent 1: protocol ip pref 3 fw chain 0 handle 0x65 classid 1:11 what \n', /unexpected fw option "what"/, 1],
    ['an indented line after an fw filter', 'filter parent 1: protocol ip pref 3 fw chain 0 handle 0x65 classid 1:11 \n  match 0/0 at 0\n', /not a line tc prints for a fw filter/, 2],
    ['a filter line without parent', 'filter protocol ip pref 1 u32 chain 0 \n', /no parent/, 1],
    ['a non-indented line after another classifier', 'filter parent 1: protocol ip pref 9 bpf chain 0 handle 0x1 flowid 1:99 \nweird\n', /not a line tc prints for a bpf filter/, 2],
  ];
  for (const [name, text, message, line] of badFilters) {
    test(`filter show, ${name}: a ParseError with the line`, () => {
      assert.throws(
        () => parseFilters(text),
        (error: unknown) => error instanceof ParseError && message.test(error.message) && error.line === line,
      );
    });
  }

  test('empty output is no classes and no filters (not an error)', () => {
    assert.deepEqual(parseClassStats(''), []);
    assert.deepEqual(parseFilters(''), []);
  });

  test('CRLF line ends are tolerated', () => {
    const text = fixture('upload.class.txt').replace(/\n/g, '\r\n');
    assert.deepEqual(parseClassStats(text).map(classRow), UPLOAD);
  });
});
