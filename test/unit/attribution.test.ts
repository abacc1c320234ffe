import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildMarkMap } from '../../src/attribution/mark-map.js';
import { parseUsersDocument } from '../../src/users/document.js';
import { exact, readFixtures, t, TestGateway } from '../gateway.js';

const FIXTURES = 'test/fixtures';

// alice owns marks 101 and 102 through the pool, bob owns 0x67; marks 104
// (10.8.0.4, dave) and 16 (bob's masked mark) are not in the pool and fall back
// to the rules' addresses; 10.8.0.5 (mark 105) is nobody's.
const USERS = {
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
};

describe('attribution of real captures', () => {
  for (const backend of ['nft', 'legacy']) {
    test(`${backend}: per-user totals equal the pings of test/fixtures/README.md`, async () => {
      const { gateway, reports } = await readFixtures(USERS, [
        ['ipv4', `${FIXTURES}/${backend}-v4-users.iptables-save`],
        ['ipv6', `${FIXTURES}/${backend}-v6-users.iptables-save`],
      ]);
      assert.deepEqual(gateway.all(), {
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
      assert.deepEqual(gateway.unattributed(), t(1n, 0n, 528n, 0n));
      const [v4, v6] = reports;
      assert.ok(v4?.ok && v6?.ok);
      assert.deepEqual(v4.skipped, [
        { chain: 'MM_BOTH', reason: 'ambiguous', rules: 1 },
        { chain: 'MM_ORPHAN', reason: 'unreached', rules: 1 },
      ]);
      assert.equal(v4.rules, 22);
      assert.equal(v4.markRules, 12);
      assert.equal(v6.markRules, 2);
    });
  }

  test('the old --set-mark syntax and a full iptables-save (all tables) attribute the same as --set-xmark', async () => {
    const reference = (await readFixtures(USERS, [['ipv4', `${FIXTURES}/nft-v4-users.iptables-save`]])).gateway;
    for (const name of ['set-mark-legacy-syntax', 'nft-v4-full-save']) {
      const { gateway } = await readFixtures(USERS, [['ipv4', `${FIXTURES}/${name}.iptables-save`]]);
      assert.deepEqual(gateway.all(), reference.all(), name);
      assert.deepEqual(gateway.unattributed(), reference.unattributed(), name);
    }
  });

  test('a mark in the pool that no user owns is unattributed, not guessed from the addresses', async () => {
    const users = { ...USERS, marks: [...USERS.marks, { mark_id: 104, sips: ['10.8.0.99'] }] };
    const { gateway } = await readFixtures(users, [['ipv4', `${FIXTURES}/nft-v4-users.iptables-save`]]);
    assert.deepEqual(gateway.totals('dave'), t(0n, 0n, 0n, 0n));
    assert.deepEqual(gateway.unattributed(), t(3n, 2n, 1384n, 856n));
  });

  test('a pool entry naming two users is reported as a conflict and counted for the first', () => {
    const map = buildMarkMap(parseUsersDocument(JSON.stringify({ users: USERS.users, marks: [{ mark_id: 7, sips: ['10.8.0.3'], dips: ['10.8.0.2/32'] }] }), 'x'));
    assert.deepEqual(map.conflicts, [{ mark_id: 7, users: ['bob', 'alice'] }]);
    assert.equal(map.users[map.byMark.get(7)!]!.user_code, 'bob');
  });

  test('without the pool, a rule whose -s and -d are both users counts for the source on upload and the destination on download', async () => {
    const gw = new TestGateway({ users: USERS.users });
    await gw.read({
      ipv4: `*mangle
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
[1:100] -A POSTROUTING -s 10.8.0.2/32 -d 10.8.0.3/32 -j MARK --set-xmark 0x1/0xffffffff
[2:200] -A PREROUTING -s 10.8.0.2/32 -d 10.8.0.3/32 -j MARK --set-xmark 0x2/0xffffffff
[4:400] -A PREROUTING -d 10.8.0.0/24 -j MARK --set-xmark 0x3/0xffffffff
COMMIT
`,
    });
    assert.deepEqual(gw.totals('alice'), t(0n, 1n, 0n, 100n));
    assert.deepEqual(gw.totals('bob'), t(2n, 0n, 200n, 0n));
    // A prefix is no single user.
    assert.deepEqual(gw.unattributed(), t(4n, 0n, 400n, 0n));
  });

  test('breakdown by mark: a user with two marks has two series (with mark_id and peer_ip) whose sum is the user\'s total', async () => {
    const fixtures: [string, string][] = [
      ['ipv4', `${FIXTURES}/nft-v4-users.iptables-save`],
      ['ipv6', `${FIXTURES}/nft-v6-users.iptables-save`],
    ];
    const byUser = (await readFixtures(USERS, fixtures)).gateway;
    const byMark = (await readFixtures(USERS, fixtures, 'mark')).gateway;
    const alice = [...byMark.accumulator.users()].filter((s) => s.user.user_code === 'alice');
    assert.deepEqual(
      alice.map((s) => [s.user.mark_id, s.user.peer_ip]),
      [
        ['', ''],
        ['101', '192.0.2.7'],
        ['102', '192.0.2.8'],
      ],
    );
    const sum = alice.map((s) => exact(s.totals)).reduce((a, b) => t(a.rxPackets + b.rxPackets, a.txPackets + b.txPackets, a.rxBytes + b.rxBytes, a.txBytes + b.txBytes));
    assert.deepEqual(sum, byUser.totals('alice'));
    assert.deepEqual(exact(alice[1]!.totals), t(3n, 3n, 252n, 252n));
    // Every user's series add up to the user's total, and nothing moves to or from unattributed.
    for (const code of ['bob', 'dave', 'carol']) {
      const series = [...byMark.accumulator.users()].filter((s) => s.user.user_code === code).map((s) => exact(s.totals));
      const total = series.reduce((a, b) => t(a.rxPackets + b.rxPackets, a.txPackets + b.txPackets, a.rxBytes + b.rxBytes, a.txBytes + b.txBytes));
      assert.deepEqual(total, byUser.totals(code), code);
    }
    assert.deepEqual(byMark.unattributed(), byUser.unattributed());
  });
});
