import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { ParseError } from '../../src/errors.js';
import { ChainGraph, resolveChainDirections } from '../../src/attribution/chain-directions.js';
import { findTable, parseIptablesSave, type SaveRule } from '../../src/sources/iptables/model.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');

type Row = [chain: string, packets: bigint, bytes: bigint, source: string | undefined, destination: string | undefined, jump: string | undefined, mark?: number, mask?: number];
const FULL = 0xffffffff;
const row = (r: SaveRule): Row => {
  const out: Row = [r.chain, BigInt(r.packets), BigInt(r.bytes), r.source, r.destination, r.goto ? `goto ${r.jump}` : r.jump];
  if (r.mark !== undefined) out.push(r.mark, r.markMask);
  return out;
};

// The rule table of test/fixtures/README.md for the IPv4 users rule set.
const V4_USERS: Row[] = [
  ['PREROUTING', 3n, 252n, '192.0.2.7/32', '10.8.0.2/32', 'MARK', 101, FULL],
  ['PREROUTING', 2n, 256n, '192.0.2.8/32', '10.8.0.2/32', 'MARK', 102, FULL],
  ['PREROUTING', 26n, 6264n, undefined, undefined, 'MM_RX'],
  ['PREROUTING', 2n, 856n, undefined, '10.8.0.4/32', 'goto MM_GOTO'],
  ['PREROUTING', 24n, 5408n, undefined, undefined, 'MM_BOTH'],
  ['PREROUTING', 24n, 5408n, undefined, undefined, 'MM_L1'],
  ['PREROUTING', 24n, 5408n, undefined, undefined, 'CONNMARK'],
  ['POSTROUTING', 3n, 252n, '10.8.0.2/32', '192.0.2.7/32', 'MARK', 101, FULL],
  ['POSTROUTING', 2n, 256n, '10.8.0.2/32', '192.0.2.8/32', 'MARK', 102, FULL],
  ['POSTROUTING', 26n, 6264n, undefined, undefined, 'MM_TX'],
  ['POSTROUTING', 26n, 6264n, undefined, undefined, 'MM_BOTH'],
  ['POSTROUTING', 2n, 856n, '10.8.0.4/32', undefined, 'MARK', 104, FULL],
  ['POSTROUTING', 0n, 0n, undefined, undefined, 'TCPMSS'],
  ['MM_BOTH', 6n, 1168n, undefined, '192.0.2.8/32', 'MARK', 150, FULL],
  ['MM_GOTO', 2n, 856n, '192.0.2.7/32', '10.8.0.4/32', 'MARK', 104, FULL],
  ['MM_L1', 1n, 528n, undefined, '10.8.0.5/32', 'MM_L2'],
  ['MM_L2', 1n, 528n, '192.0.2.7/32', '10.8.0.5/32', 'MARK', 105, FULL],
  ['MM_ORPHAN', 0n, 0n, '10.8.0.2/32', undefined, 'MARK', 199, FULL],
  ['MM_RX', 4n, 912n, '192.0.2.7/32', '10.8.0.3/32', 'MARK', 103, FULL],
  ['MM_RX', 1n, 328n, '192.0.2.8/32', '10.8.0.3/32', 'MARK', 16, 0xff],
  // `! -s 10.8.0.3/32`: a negated address is no user's address.
  ['MM_TX', 21n, 5024n, undefined, undefined, 'RETURN'],
  ['MM_TX', 4n, 912n, '10.8.0.3/32', '192.0.2.7/32', 'MARK', 103, FULL],
];

const V6_USERS: Row[] = [
  ['PREROUTING', 3n, 312n, 'fd00:9::7/128', 'fd00:8::2/128', 'MARK', 201, FULL],
  ['POSTROUTING', 3n, 312n, 'fd00:8::2/128', 'fd00:9::7/128', 'MARK', 201, FULL],
];

const cases: [fixture: string, expected: Row[]][] = [
  ['nft-v4-users.iptables-save', V4_USERS],
  ['legacy-v4-users.iptables-save', V4_USERS],
  ['set-mark-legacy-syntax.iptables-save', V4_USERS],
  ['nft-v4-full-save.iptables-save', V4_USERS],
  ['nft-v6-users.iptables-save', V6_USERS],
  ['legacy-v6-users.iptables-save', V6_USERS],
  ['nft-v4-empty.iptables-save', []],
  [
    'nft-v4-huge-counters.iptables-save',
    [
      ['PREROUTING', 9007199254740992n, 9007199254740992n, '192.0.2.7/32', '10.8.0.2/32', 'MARK', 101, FULL],
      ['POSTROUTING', 9007199254740993n, 18446744073709551615n, '10.8.0.2/32', '192.0.2.7/32', 'MARK', 101, FULL],
      ['POSTROUTING', 9007199254740991n, 9007199254740991n, '10.8.0.2/32', '192.0.2.8/32', 'MARK', 102, FULL],
      ['POSTROUTING', 18446744073709551615n, 18446744073709551615n, '10.8.0.3/32', '192.0.2.7/32', 'MARK', 103, FULL],
    ],
  ],
];

describe('parseIptablesSave on real captures', () => {
  for (const [name, expected] of cases) {
    test(`${name}: every mangle rule, exact`, () => {
      const mangle = findTable(parseIptablesSave(fixture(name)), 'mangle');
      assert.deepEqual(mangle.rules.map(row), expected);
      assert.ok(mangle.rules.every((r) => r.table === 'mangle'));
    });
  }

  test('a quoted comment with escaped quotes is one token and does not confuse the options', () => {
    const mangle = findTable(parseIptablesSave(fixture('nft-v4-users.iptables-save')), 'mangle');
    const carol = mangle.rules.find((r) => r.spec.includes('comment'))!;
    assert.equal(carol.spec, '-s 10.8.0.4/32 -m comment --comment "user carol: \\"quoted\\" text" -j MARK --set-xmark 0x68/0xffffffff');
    assert.equal(carol.line, 26);
  });

  test('user chains have no policy; builtin chains have theirs (both backends)', () => {
    for (const name of ['nft-v4-users.iptables-save', 'legacy-v4-users.iptables-save']) {
      const mangle = findTable(parseIptablesSave(fixture(name)), 'mangle');
      assert.equal(mangle.chains.get('PREROUTING')?.policy, 'ACCEPT');
      assert.equal(mangle.chains.get('MM_RX')?.policy, null);
      assert.equal(mangle.chains.size, 12);
    }
  });

  test('a full iptables-save lists every table; mangle is picked out of them', () => {
    const tables = parseIptablesSave(fixture('nft-v4-full-save.iptables-save'));
    assert.deepEqual(
      tables.map((t) => t.name),
      ['mangle', 'filter', 'nat'],
    );
  });

  test('chain directions follow -j and -g through several levels; ambiguous and unreached chains are named', () => {
    const mangle = findTable(parseIptablesSave(fixture('nft-v4-users.iptables-save')), 'mangle');
    const d = resolveChainDirections(ChainGraph.of(mangle), { rx: ['PREROUTING'], tx: ['POSTROUTING'] });
    assert.deepEqual(Object.fromEntries(d.byChain), {
      PREROUTING: 'rx',
      POSTROUTING: 'tx',
      MM_GOTO: 'rx',
      MM_L1: 'rx',
      MM_L2: 'rx',
      MM_RX: 'rx',
      MM_TX: 'tx',
    });
    assert.deepEqual(d.ambiguous, ['MM_BOTH']);
    assert.deepEqual(d.unreached, ['INPUT', 'FORWARD', 'OUTPUT', 'MM_ORPHAN']);
  });

  test('a jump cycle terminates', () => {
    const text = `*mangle
:PREROUTING ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
[0:0] -A PREROUTING -j A
[0:0] -A A -j B
[0:0] -A B -j A
COMMIT
`;
    const d = resolveChainDirections(ChainGraph.of(findTable(parseIptablesSave(text), 'mangle')), { rx: ['PREROUTING'], tx: ['POSTROUTING'] });
    assert.deepEqual([...d.byChain.keys()].sort(), ['A', 'B', 'PREROUTING']);
  });
});

test("a rule's chain is read whole, also right after a chain whose name begins it or is begun by it", () => {
  const text = [
    '*mangle',
    ':MM - [0:0]',
    ':MM_RX - [0:0]',
    ':PREROUTING ACCEPT [0:0]',
    '[1:10] -A MM -j MARK --set-xmark 0x1/0xffffffff',
    '[2:20] -A MM_RX -j MARK --set-xmark 0x2/0xffffffff',
    '[3:30] -A MM -j MARK --set-xmark 0x3/0xffffffff',
    '[4:40] -A MM',
    '[5:50] -A MM_RX',
    '[6:60] -A PREROUTING -j MM_RX',
    'COMMIT',
    '',
  ].join('\n');
  const rules = findTable(parseIptablesSave(text), 'mangle')!.rules;
  assert.deepEqual(
    rules.map((r) => `${r.chain} ${r.packets}`),
    ['MM 1', 'MM_RX 2', 'MM 3', 'MM 4', 'MM_RX 5', 'PREROUTING 6'],
  );
  assert.throws(() => parseIptablesSave(text.replace('[3:30] -A MM ', '[3:30] -A MM_ ')), /chain MM_ that the table does not declare/);
});

describe('parseIptablesSave rejects what iptables-save does not print', () => {
  const header = '*mangle\n:PREROUTING ACCEPT [0:0]\n';
  const bad: [string, string, RegExp, number][] = [
    ['a stray line', `${header}hello world\nCOMMIT\n`, /not an iptables-save line/, 3],
    ['a rule without counters (no -c)', `${header}-A PREROUTING -j ACCEPT\nCOMMIT\n`, /run the save command with -c/, 3],
    ['broken counters', `${header}[1:x] -A PREROUTING -j ACCEPT\nCOMMIT\n`, /bad \[packets:bytes\]/, 3],
    ['a counter above u64', `${header}[18446744073709551616:0] -A PREROUTING -j ACCEPT\nCOMMIT\n`, /larger than 2\^64-1/, 3],
    ['a rule for an undeclared chain', `${header}[0:0] -A NOPE -j ACCEPT\nCOMMIT\n`, /chain NOPE/, 3],
    ['a truncated dump', `${header}[0:0] -A PREROUTING -j ACCEPT\n`, /without COMMIT/, 3],
    ['a rule outside a table', '[0:0] -A PREROUTING -j ACCEPT\n', /outside a table/, 1],
    ['a bad mark', `${header}[0:0] -A PREROUTING -j MARK --set-xmark 0xZZ/0xff\nCOMMIT\n`, /bad mark value/, 3],
    ['a target without a value', `${header}[0:0] -A PREROUTING -s 10.0.0.1/32 -j\nCOMMIT\n`, /-j without a value/, 3],
    ['an unterminated quote', `${header}[0:0] -A PREROUTING -m comment --comment "open -j ACCEPT\nCOMMIT\n`, /unterminated/, 3],
    ['a nested table', `${header}*filter\nCOMMIT\n`, /not closed by COMMIT/, 3],
  ];
  for (const [name, text, message, line] of bad) {
    test(`${name}: a ParseError with the line`, () => {
      assert.throws(
        () => parseIptablesSave(text),
        (error: unknown) => error instanceof ParseError && message.test(error.message) && error.line === line,
      );
    });
  }

  test('empty output is no tables (an empty table, not an error)', () => {
    assert.deepEqual(parseIptablesSave(''), []);
    assert.equal(findTable([], 'mangle').rules.length, 0);
  });

  test('targets and marks in each form: the first -j/-g outside quotes, a partial mask, the old syntax', () => {
    const rules = findTable(
      parseIptablesSave(
        `${header}:MM - [0:0]\n` +
          '[1:2] -A PREROUTING -m comment --comment "not -j ACCEPT here" -j MARK --set-xmark 0x5/0xff\n' +
          '[1:2] -A PREROUTING ! -s 10.0.0.1/32 -d 10.0.0.2/32 -g MM\n' +
          '[1:2] -A PREROUTING -j MARK --set-mark 0x10\n' +
          '[1:2] -A PREROUTING -p tcp -j LOG --log-prefix "x -j MARK --set-xmark 0x1/0x1"\n' +
          'COMMIT\n',
      ),
      'mangle',
    ).rules;
    assert.deepEqual(
      rules.map((r) => [r.jump, r.goto, r.mark, r.markMask, r.source, r.destination]),
      [
        ['MARK', false, 5, 0xff, undefined, undefined],
        ['MM', true, undefined, undefined, undefined, '10.0.0.2/32'],
        ['MARK', false, 0x10, 0xffffffff, undefined, undefined],
        ['LOG', false, undefined, undefined, undefined, undefined],
      ],
    );
  });

  test('CRLF line ends are tolerated', () => {
    const tables = parseIptablesSave('*mangle\r\n:PREROUTING ACCEPT [0:0]\r\n[1:2] -A PREROUTING -j MARK --set-mark 7\r\nCOMMIT\r\n');
    assert.equal(tables[0]!.rules[0]!.mark, 7);
  });
});
