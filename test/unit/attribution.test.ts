import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { Accumulator } from '../../src/attribution/accumulator.js';
import { attributeRules } from '../../src/attribution/attribute.js';
import { buildMarkMap } from '../../src/attribution/mark-map.js';
import { parseUsersDocument } from '../../src/config-manager/users-document.js';
import { resolveChainDirections } from '../../src/mangle/chains.js';
import { findTable, parseIptablesSave } from '../../src/mangle/parse.js';
import { exact } from '../totals.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');
const ROOTS = { rx: ['PREROUTING'], tx: ['POSTROUTING'] };

// alice owns marks 101 and 102 through the pool, bob owns 0x67; marks 104
// (10.8.0.4, dave) and 16 (bob's masked mark) are not in the pool and fall back
// to the rules' addresses; 10.8.0.5 (mark 105) is nobody's.
const USERS = parseUsersDocument(
  JSON.stringify({
    users: [
      { user_code: 'alice', user_intra_ip: '10.8.0.2' },
      { user_code: 'bob', user_intra_ip: '10.8.0.3' },
      { user_code: 'dave', user_intra_ip: '10.8.0.4' },
      { user_code: 'carol', user_intra_ip: 'fd00:8::2' },
    ],
    marks: [
      { mark_id: 101, sips: ['10.8.0.2'], dips: ['192.0.2.7'] },
      { mark_id: 102, sips: ['10.8.0.2'], dips: ['192.0.2.8'] },
      { mark_id: '0x67', sips: ['192.0.2.7'], dips: ['10.8.0.3'] },
      { mark_id: 201, sips: ['fd00:8::2'], dips: ['fd00:9::7'] },
    ],
  }),
  'users.json',
);

function totalsFor(fixtures: [string, string][]) {
  const map = buildMarkMap(USERS);
  const acc = new Accumulator();
  acc.setUsers(USERS.users, 0);
  const skipped: string[] = [];
  for (const [source, name] of fixtures) {
    const table = findTable(parseIptablesSave(fixture(name)), 'mangle');
    const result = attributeRules(table, resolveChainDirections(table, ROOTS), map);
    acc.apply(source, result.readings);
    skipped.push(...result.skipped.map((s) => `${source} ${s.chain} ${s.reason} ${s.rules}`));
  }
  const users = Object.fromEntries([...acc.users()].map((s) => [s.user.user_code, exact(s.totals)]));
  return { users, unattributed: exact(acc.unattributed), skipped };
}

const t = (rxPackets: bigint, txPackets: bigint, rxBytes: bigint, txBytes: bigint) => ({ rxPackets, txPackets, rxBytes, txBytes });

describe('attribution of real captures', () => {
  for (const backend of ['nft', 'legacy']) {
    test(`${backend}: per-user totals equal the pings of test/fixtures/README.md`, () => {
      const { users, unattributed, skipped } = totalsFor([
        ['ipv4', `${backend}-v4-users.iptables-save`],
        ['ipv6', `${backend}-v6-users.iptables-save`],
      ]);
      assert.deepEqual(users, {
        // runs a (3 x 84 B) and b (2 x 128 B), one user with two marks
        alice: t(5n, 5n, 508n, 508n),
        // run c (4 x 228 B) in custom chains, plus run d's reply (328 B) through the masked mark
        bob: t(5n, 4n, 1240n, 912n),
        // run e (2 x 428 B): mark not in the pool, by the rules' own addresses, the reply via -g
        dave: t(2n, 2n, 856n, 856n),
        // ping -6 -c 3 -s 56: 104 B packets
        carol: t(3n, 3n, 312n, 312n),
      });
      // run f's reply (528 B, two jumps deep) is to 10.8.0.5: nobody's.
      assert.deepEqual(unattributed, t(1n, 0n, 528n, 0n));
      assert.deepEqual(skipped, ['ipv4 MM_BOTH ambiguous 1', 'ipv4 MM_ORPHAN unreached 1']);
    });
  }

  test('the old --set-mark syntax attributes the same as --set-xmark', () => {
    assert.deepEqual(totalsFor([['ipv4', 'set-mark-legacy-syntax.iptables-save']]), totalsFor([['ipv4', 'nft-v4-users.iptables-save']]));
  });

  test('a mark in the pool that no user owns is unattributed, not guessed from the addresses', () => {
    const snapshot = { ...USERS, marks: [...USERS.marks, { mark_id: 104, sips: ['10.8.0.99'], dips: [] }] };
    const table = findTable(parseIptablesSave(fixture('nft-v4-users.iptables-save')), 'mangle');
    const result = attributeRules(table, resolveChainDirections(table, ROOTS), buildMarkMap(snapshot));
    const mark104 = result.readings.filter((r) => r.mark === 104);
    assert.equal(mark104.length, 2);
    assert.ok(mark104.every((r) => r.user === null));
  });

  test('a pool entry naming two users is reported as a conflict and counted for the first', () => {
    const map = buildMarkMap({
      source: 'x',
      users: USERS.users,
      marks: [{ mark_id: 7, sips: ['10.8.0.3'], dips: ['10.8.0.2/32'] }],
    });
    assert.deepEqual(map.conflicts, [{ mark_id: 7, users: ['bob', 'alice'] }]);
    assert.equal(map.byMark.get(7), '10.8.0.3 bob');
  });

  test('identical rules in one chain both count, told apart by their order', () => {
    const text = `*mangle
:PREROUTING ACCEPT [0:0]
[1:100] -A PREROUTING -d 10.8.0.2/32 -j MARK --set-mark 101
[2:200] -A PREROUTING -d 10.8.0.2/32 -j MARK --set-mark 101
COMMIT
`;
    const map = buildMarkMap(USERS);
    const acc = new Accumulator();
    acc.setUsers(USERS.users, 0);
    const read = (dump: string) => {
      const table = findTable(parseIptablesSave(dump), 'mangle');
      acc.apply('ipv4', attributeRules(table, resolveChainDirections(table, ROOTS), map).readings);
    };
    read(text);
    read(text.replace('[2:200]', '[5:500]'));
    const alice = [...acc.users()].find((s) => s.user.user_code === 'alice')!;
    assert.deepEqual(exact(alice.totals), t(6n, 0n, 600n, 0n));
  });

});
