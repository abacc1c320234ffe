import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildMarkMap } from '../../src/attribution/mark-map.js';
import { Accumulator } from '../../src/totals/accumulator.js';
import { counterDelta } from '../../src/shared/count.js';
import { ParseError } from '../../src/errors.js';
import { exact, t, TestGateway } from '../gateway.js';
import { random } from './random.js';

const drain = <T>(steps: Generator<void, T>): T => {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
};
import type { MarkMap, SeriesOwner } from '../../src/attribution/mark-map.js';

const USERS = {
  users: [
    { user_code: 'alice', user_intra_ip: '10.8.0.2' },
    { user_code: 'bob', user_intra_ip: '10.8.0.3' },
  ],
  marks: [
    { mark_id: 101, sips: ['10.8.0.2'], dips: ['192.0.2.7'] },
    { mark_id: 103, sips: ['10.8.0.3'], dips: ['192.0.2.7'] },
  ],
};

/** A mangle dump (as iptables-save -c prints it) with the given rule lines. */
const dump = (...rules: string[]) => `*mangle
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
${rules.join('\n')}
COMMIT
`;
const aliceTx = (p: number | bigint, b: number | bigint) => `[${p}:${b}] -A POSTROUTING -s 10.8.0.2/32 -d 192.0.2.7/32 -j MARK --set-xmark 0x65/0xffffffff`;
const aliceRx = (p: number | bigint, b: number | bigint) => `[${p}:${b}] -A PREROUTING -s 192.0.2.7/32 -d 10.8.0.2/32 -j MARK --set-xmark 0x65/0xffffffff`;

describe('counterDelta', () => {
  test('first reading is the whole counter, a rise is the difference, a fall is a reset', () => {
    assert.equal(counterDelta(undefined, 42), 42);
    assert.equal(counterDelta(40, 42), 2);
    assert.equal(counterDelta(40, 40), 0);
    assert.equal(counterDelta(40, 3), 3);
    // The exact path: beyond 2^53, and back to a number when the difference fits.
    assert.equal(counterDelta(9007199254740993n, 18446744073709551615n), 18437736874454810622n);
    assert.equal(counterDelta(9007199254740993n, 9007199254740995n), 2);
  });
});

describe('monotonic totals from per-rule deltas', () => {
  test('a rule first seen counts whole (a restart loses nothing); then only its increase', async () => {
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(aliceTx(10, 1000), aliceRx(3, 300)) });
    assert.deepEqual(gw.totals('alice'), t(3n, 10n, 300n, 1000n));
    await gw.read({ ipv4: dump(aliceTx(15, 1500), aliceRx(3, 300)) });
    assert.deepEqual(gw.totals('alice'), t(3n, 15n, 300n, 1500n));
  });

  test('a counter that went down (iptables -Z) is a reset: its new value is the delta', async () => {
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(aliceTx(100, 8400)) });
    await gw.read({ ipv4: dump(aliceTx(0, 0)) });
    await gw.read({ ipv4: dump(aliceTx(4, 336)) });
    assert.deepEqual(gw.totals('alice'), t(0n, 104n, 0n, 8736n));
  });

  test('a reset of only the bytes still counts the packets as reset', async () => {
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(aliceTx(10, 1000)) });
    await gw.read({ ipv4: dump(aliceTx(12, 50)) });
    assert.deepEqual(gw.totals('alice'), t(0n, 22n, 0n, 1050n));
  });

  test('a rule that disappears keeps its contribution; added again it counts from zero', async () => {
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(aliceTx(7, 700), aliceRx(3, 300)) });
    await gw.read({ ipv4: dump(aliceRx(5, 500)) });
    assert.deepEqual(gw.totals('alice'), t(5n, 7n, 500n, 700n));
    // Deleted and added again: the kernel counter restarted, so 2 is new traffic.
    await gw.read({ ipv4: dump(aliceTx(2, 200), aliceRx(5, 500)) });
    assert.deepEqual(gw.totals('alice'), t(5n, 9n, 500n, 900n));
  });

  test('identical rules are told apart by their order; one disappearing forgets only it', async () => {
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(aliceTx(1, 10), aliceTx(2, 20)) });
    await gw.read({ ipv4: dump(aliceTx(3, 30), aliceTx(5, 50)) });
    assert.equal(gw.totals('alice').txPackets, 8n);
    await gw.read({ ipv4: dump(aliceTx(3, 30)) });
    await gw.read({ ipv4: dump(aliceTx(4, 40)) });
    assert.equal(gw.totals('alice').txPackets, 9n);
  });

  // Each rule is first tried against the rule at its place in the last reading;
  // these check that the guess never pairs a rule with another one.
  test('a rule inserted ahead or removed shifts the others: each still pairs with itself', async () => {
    const gw = new TestGateway(USERS);
    const bobTx = (p: number) => `[${p}:${p}] -A POSTROUTING -s 10.8.0.3/32 -d 192.0.2.7/32 -j MARK --set-xmark 0x67/0xffffffff`;
    await gw.read({ ipv4: dump(aliceTx(10, 10), bobTx(100)) });
    await gw.read({ ipv4: dump(aliceRx(1, 1), aliceTx(11, 11), bobTx(105)) });
    await gw.read({ ipv4: dump(aliceTx(13, 13), bobTx(106)) });
    assert.deepEqual(gw.totals('alice'), t(1n, 13n, 1n, 13n));
    assert.deepEqual(gw.totals('bob'), t(0n, 106n, 0n, 106n));
  });

  test('identical rules shifted by an insertion still pair in order (no false reset)', async () => {
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(aliceTx(100, 100), aliceTx(5, 5)) });
    // At place 1 is now the first of the identical rules, where the second was.
    await gw.read({ ipv4: dump(aliceRx(0, 0), aliceTx(110, 110), aliceTx(6, 6)) });
    assert.equal(gw.totals('alice').txPackets, 116n);
  });

  test('a failed reading that saw other rules does not disturb the next one', async () => {
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(aliceTx(10, 10), aliceRx(20, 20)) });
    const [failed] = await gw.read({ ipv4: dump(aliceRx(21, 21), aliceTx(99, 99), aliceTx(1, 1)).replace('COMMIT\n', '') });
    assert.ok(failed && !failed.ok);
    await gw.read({ ipv4: dump(aliceTx(12, 12), aliceRx(22, 22)) });
    await gw.read({ ipv4: dump(aliceTx(13, 13), aliceRx(23, 23)) });
    assert.deepEqual(gw.totals('alice'), t(23n, 13n, 23n, 13n));
  });

  test('a counter crossing 2^53 and reset back below stays exact', async () => {
    const gw = new TestGateway(USERS);
    const below = 2n ** 53n - 2n;
    await gw.read({ ipv4: dump(aliceTx(below, 1)) });
    await gw.read({ ipv4: dump(aliceTx(below + 5n, 2)) });
    await gw.read({ ipv4: dump(aliceTx(3, 3)) });
    await gw.read({ ipv4: dump(aliceTx(4, 4)) });
    assert.deepEqual(gw.totals('alice'), t(0n, below + 5n + 4n, 0n, 6n));
  });

  test('a mark that gains an owner in a sync counts for that owner from the next reading', async () => {
    const unowned = { users: USERS.users, marks: [USERS.marks[0]!] };
    const gw = new TestGateway(unowned);
    const bobTx = (p: number) => `[${p}:${p}] -A POSTROUTING -s 10.8.0.3/32 -d 192.0.2.7/32 -j MARK --set-xmark 0x67/0xffffffff`;
    await gw.read({ ipv4: dump(bobTx(5)) });
    // Not in the pool: its addresses decide (bob). Then the pool gives mark 0x67 to nobody.
    gw.sync({ users: USERS.users, marks: [USERS.marks[0]!, { mark_id: 103, sips: ['192.0.2.50'], dips: ['192.0.2.7'] }] }, 1);
    await gw.read({ ipv4: dump(bobTx(8)) });
    assert.equal(gw.totals('bob').txPackets, 5n);
    assert.equal(gw.unattributed().txPackets, 3n);
  });

  test("a rule's counts from before it had any owner go to its first owner (and stay in unattributed, where they were counted)", async () => {
    const daveTx = (p: number) => `[${p}:${p * 100}] -A POSTROUTING -s 10.8.0.4/32 -d 192.0.2.7/32 -j MARK --set-xmark 0x68/0xffffffff`;
    const dave = { user_code: 'dave', user_intra_ip: '10.8.0.4' };
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(daveTx(5)) });
    await gw.read({ ipv4: dump(daveTx(6)) });
    assert.equal(gw.unattributed().txPackets, 6n);
    gw.sync({ ...USERS, users: [...USERS.users, dave] }, 1);
    // Idle since: the first reading with an owner still gives it the rule's counts so far.
    await gw.read({ ipv4: dump(daveTx(6)) });
    assert.deepEqual(gw.totals('dave'), t(0n, 6n, 0n, 600n));
    await gw.read({ ipv4: dump(daveTx(9)) });
    assert.deepEqual(gw.totals('dave'), t(0n, 9n, 0n, 900n));
    assert.equal(gw.unattributed().txPackets, 6n);
  });

  test('a rule that moves from one owner to another carries only what it counts after the move', async () => {
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(aliceTx(10, 1000)) });
    gw.sync({ users: USERS.users, marks: [{ mark_id: 101, sips: ['10.8.0.3'], dips: ['192.0.2.7'] }] }, 1);
    await gw.read({ ipv4: dump(aliceTx(12, 1200)) });
    assert.deepEqual(gw.totals('alice'), t(0n, 10n, 0n, 1000n));
    assert.deepEqual(gw.totals('bob'), t(0n, 2n, 0n, 200n));
  });

  test('a failed reading in which a rule first had an owner credits nothing: the next good one does', async () => {
    const daveTx = (p: number) => `[${p}:${p}] -A POSTROUTING -s 10.8.0.4/32 -j MARK --set-xmark 0x68/0xffffffff`;
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(daveTx(4)) });
    gw.sync({ users: [...USERS.users, { user_code: 'dave', user_intra_ip: '10.8.0.4' }] }, 1);
    const [failed] = await gw.read({ ipv4: dump(daveTx(5)).replace('COMMIT\n', '') });
    assert.ok(failed && !failed.ok);
    await gw.read({ ipv4: dump(daveTx(5)) });
    assert.equal(gw.totals('dave').txPackets, 5n);
  });

  test('a mark moved to a rule with other addresses is a new rule: its whole counter counts', async () => {
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(aliceTx(100, 100)) });
    await gw.read({ ipv4: dump(aliceTx(150, 150).replace('192.0.2.7/32', '192.0.2.9/32')) });
    assert.equal(gw.totals('alice').txPackets, 250n);
  });

  test('a reading that fails half-way changes nothing; the next one counts from the last good counters', async () => {
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(aliceTx(10, 1000)) });
    const [failed] = await gw.read({ ipv4: dump(aliceTx(20, 2000)).replace('COMMIT\n', '') });
    assert.ok(failed && !failed.ok && failed.error instanceof ParseError);
    assert.equal(gw.totals('alice').txPackets, 10n);
    await gw.read({ ipv4: dump(aliceTx(25, 2500)) });
    assert.deepEqual(gw.totals('alice'), t(0n, 25n, 0n, 2500n));
  });

  test('sources are independent: an IPv6 reading does not forget IPv4 rules', async () => {
    const gw = new TestGateway(USERS, ['ipv4', 'ipv6']);
    await gw.read({ ipv4: dump(aliceTx(7, 700)), ipv6: dump() });
    await gw.read({ ipv4: dump(aliceTx(8, 800)), ipv6: dump() });
    assert.equal(gw.totals('alice').txPackets, 8n);
  });

  test('one user with several marks is summed; traffic nobody owns is unattributed per direction', async () => {
    const gw = new TestGateway({ ...USERS, marks: [...USERS.marks, { mark_id: 102, sips: ['10.8.0.2'], dips: ['192.0.2.8'] }] });
    await gw.read({
      ipv4: dump(
        aliceTx(1, 10),
        '[2:20] -A POSTROUTING -s 10.8.0.2/32 -d 192.0.2.8/32 -j MARK --set-xmark 0x66/0xffffffff',
        '[4:40] -A PREROUTING -s 192.0.2.7/32 -d 10.8.0.3/32 -j MARK --set-xmark 0x67/0xffffffff',
        '[8:80] -A PREROUTING -d 10.8.0.99/32 -j MARK --set-xmark 0x3e7/0xffffffff',
        '[16:160] -A POSTROUTING -s 10.8.0.99/32 -j MARK --set-xmark 0x3e7/0xffffffff',
      ),
    });
    assert.deepEqual(gw.totals('alice'), t(0n, 3n, 0n, 30n));
    assert.deepEqual(gw.totals('bob'), t(4n, 0n, 40n, 0n));
    assert.deepEqual(gw.unattributed(), t(8n, 16n, 80n, 160n));
  });

  test('counters beyond 2^53 stay exact, also summed past 2^64', async () => {
    const gw = new TestGateway(USERS);
    await gw.read({ ipv4: dump(aliceTx(9007199254740993n, 18446744073709551615n), aliceTx(1, 1)) });
    await gw.read({ ipv4: dump(aliceTx(9007199254740995n, 18446744073709551615n), aliceTx(2, 2)) });
    assert.deepEqual(gw.totals('alice'), t(0n, 9007199254740997n, 0n, 18446744073709551617n));
  });
});

describe('without a users document, users are known by address', () => {
  const rule = (chain: string, p: number, spec: string) => `[${p}:${p * 100}] -A ${chain} ${spec} -j MARK --set-xmark 0x65/0xffffffff`;
  test('the source on upload, the destination on download; a prefix is nobody; owners persist over readings', async () => {
    const gw = new TestGateway(null);
    const read = (n: number) =>
      gw.read({
        ipv4: dump(
          rule('POSTROUTING', n, '-s 10.8.0.2/32 -d 192.0.2.7/32'),
          rule('PREROUTING', 2 * n, '-s 192.0.2.7/32 -d 10.8.0.2/32'),
          rule('PREROUTING', 3 * n, '-s 192.0.2.7/32 -d 10.8.0.0/24'),
          rule('POSTROUTING', 5 * n, '-d 192.0.2.7/32'),
        ),
      });
    await read(1);
    await read(4);
    // The far side (192.0.2.7) is on the other side of every rule: never a user.
    assert.deepEqual(gw.all(), { '10.8.0.2': t(8n, 4n, 800n, 400n) });
    assert.deepEqual([...gw.accumulator.users()].map((s) => s.user), [{ user_code: '10.8.0.2', user_intra_ip: '10.8.0.2' }]);
    assert.deepEqual(gw.unattributed(), t(12n, 20n, 1200n, 2000n));
  });

  test('IPv6 in ip6tables-save form; at most limits.maxUsers owners, the rest unattributed', async () => {
    const gw = new TestGateway(null, ['ipv6'], 'user', 2);
    await gw.read({
      ipv6: dump(
        rule('POSTROUTING', 1, '-s fd00:8::2/128'),
        rule('POSTROUTING', 2, '-s ::ffff:10.0.0.1/128'),
        rule('POSTROUTING', 3, '-s fd00:8::3/128'),
      ),
    });
    assert.deepEqual(Object.keys(gw.all()).sort(), ['::ffff:10.0.0.1', 'fd00:8::2']);
    assert.equal(gw.unattributed().txPackets, 3n);
  });
});

describe('Accumulator users', () => {
  const alice = USERS.users[0]!;
  const bob = USERS.users[1]!;
  const mapOf = (...users: (typeof alice)[]) => buildMarkMap({ source: 't', users, marks: [] });
  const of = (acc: Accumulator, code: string) => exact([...acc.users()].find((s) => s.user.user_code === code)!.totals);

  test('a removed user keeps its series for the grace period, then is dropped; a returning user keeps its total', () => {
    const acc = new Accumulator();
    const both = mapOf(alice, bob);
    acc.setUsers(both, 1000);
    acc.sinkFor(both)(0, 'rx', 5, 50);
    acc.sinkFor(both)(1, 'rx', 6, 60);
    acc.setUsers(mapOf(alice), 2000);
    assert.deepEqual(acc.expireRemoved(2000 + 299_999, 300_000), []);
    assert.equal(of(acc, 'bob').rxPackets, 6n);
    // A reading begun under the old mapping: its traffic for bob goes to unattributed; his total is frozen.
    acc.sinkFor(both)(1, 'rx', 3, 30);
    assert.equal(of(acc, 'bob').rxPackets, 6n);
    assert.equal(BigInt(acc.unattributed.rxPackets), 3n);
    assert.deepEqual(acc.expireRemoved(2000 + 300_000, 300_000), [bob]);
    assert.deepEqual([...acc.users()].map((s) => s.user.user_code), ['alice']);

    acc.setUsers(mapOf(), 4000);
    acc.setUsers(mapOf(alice), 5000);
    assert.deepEqual(acc.expireRemoved(10_000_000, 300_000), []);
    assert.equal(of(acc, 'alice').rxPackets, 5n);
  });

  test('owners line up with the mapping by index: a user moved to another place keeps its series', () => {
    const acc = new Accumulator();
    const first = mapOf(alice, bob);
    acc.setUsers(first, 0);
    acc.sinkFor(first)(1, 'tx', 2, 20);
    const swapped = mapOf(bob, alice);
    acc.setUsers(swapped, 1);
    acc.sinkFor(swapped)(0, 'tx', 3, 30);
    // A reading that began under the first mapping still adds to the right series.
    acc.sinkFor(first)(0, 'tx', 4, 40);
    assert.equal(of(acc, 'bob').txPackets, 5n);
    assert.equal(of(acc, 'alice').txPackets, 4n);
  });

  test('a sync that moves, removes and renames users at once: removed exactly those no longer listed', () => {
    const acc = new Accumulator();
    const carol = { user_code: 'carol', user_intra_ip: '10.8.0.4' };
    acc.setUsers(mapOf(alice, bob, carol), 0);
    // bob moves to alice's place, alice is gone, carol is renamed (a new series): alice and the old carol are removed.
    const renamed = { ...carol, user_code: 'carol2' };
    acc.setUsers(mapOf(bob, renamed), 1);
    const removed = Object.fromEntries([...acc.users()].map((s) => [s.user.user_code, s.removedAt]));
    assert.deepEqual(removed, { alice: 1, bob: undefined, carol: 1, carol2: undefined });
    acc.setUsers(mapOf(alice, bob, renamed), 2);
    assert.deepEqual(Object.fromEntries([...acc.users()].map((s) => [s.user.user_code, s.removedAt])), { alice: undefined, bob: undefined, carol: 1, carol2: undefined });
  });

  test('series that share an address (renamed users, a user\'s marks) come, go and expire as a model keyed by all attributes says, with their series looked up ahead or not', () => {
    // Owners of two addresses that differ in one attribute or another: every pair is two series.
    const pool: SeriesOwner[] = [];
    for (const ip of ['10.8.0.2', '10.8.0.3'])
      for (const code of ['a', 'b'])
        for (const [name, mark, peer] of [[undefined, undefined, undefined], ['n', undefined, undefined], [undefined, '1', '192.0.2.7'], [undefined, '2', '192.0.2.7'], [undefined, '2', '192.0.2.8']])
          pool.push({ user_code: code, user_intra_ip: ip, ...(name && { user_name: name }), ...(mark && { mark_id: mark, peer_ip: peer }) });
    const key = (o: SeriesOwner) => JSON.stringify([o.user_intra_ip, o.user_code, o.user_name ?? null, o.mark_id ?? null, o.peer_ip ?? null]);
    let id = 1000;
    for (let seed = 1; seed <= 30; seed++) {
      const rnd = random(seed);
      const acc = new Accumulator();
      const model = new Map<string, { packets: number; removedAt?: number }>();
      // Copies: an owner of a new document is a new object with the same attributes.
      const mapping = () => {
        const users = pool.filter(() => rnd.chance(0.4)).map((o) => ({ ...o }));
        const byIp = new Map<string, number>();
        users.forEach((u, i) => byIp.has(u.user_intra_ip) || byIp.set(u.user_intra_ip, i));
        return { id: id++, users, byMark: new Map(), byIp, conflicts: [] } as unknown as MarkMap;
      };
      const adopted = (map: MarkMap, now: number) => {
        const listed = new Set(map.users.map(key));
        for (const [k, entry] of model) if (!listed.has(k) && entry.removedAt === undefined) entry.removedAt = now;
        for (const k of listed) model.set(k, { packets: model.get(k)?.packets ?? 0 });
      };
      for (let now = 1; now <= 40; now++) {
        const map = mapping();
        const way = rnd.int(3);
        if (way === 0) acc.setUsers(map, now);
        else {
          // Looked up ahead; for the third way another update comes first, so that what was found is stale.
          const lookUp = drain(acc.lookUpSteps(map));
          if (way === 2) {
            const other = mapping();
            acc.setUsers(other, now);
            adopted(other, now);
          }
          acc.setUsers(map, now, lookUp);
        }
        adopted(map, now);
        const sink = acc.sinkFor(map);
        map.users.forEach((u, i) => {
          const packets = rnd.int(5);
          sink(i, 'rx', packets, packets);
          model.get(key(u))!.packets += packets;
        });
        const grace = rnd.int(4);
        const expired = acc.expireRemoved(now, grace).map(key).sort();
        const gone = [...model].filter(([, e]) => e.removedAt !== undefined && now - e.removedAt >= grace).map(([k]) => k).sort();
        gone.forEach((k) => model.delete(k));
        assert.deepEqual(expired, gone, `seed ${seed}, step ${now}: expired`);
        const seen = [...acc.users()].map((s) => [key(s.user), Number(s.totals.rxPackets), s.removedAt] as const).sort();
        const want = [...model].map(([k, e]) => [k, e.packets, e.removedAt] as const).sort();
        assert.deepEqual(seen, want, `seed ${seed}, step ${now}: series`);
      }
    }
  });

  test('a look-up of 5,000 owners runs in steps and finds each moved owner\'s series', () => {
    const acc = new Accumulator();
    const users = Array.from({ length: 5000 }, (_, i) => ({ user_code: `u${i}`, user_intra_ip: `10.9.${i >> 8}.${i & 255}` }));
    const first = buildMarkMap({ source: 't', users, marks: [] });
    acc.setUsers(first, 0);
    const sink = acc.sinkFor(first);
    users.forEach((_, i) => sink(i, 'tx', i, i));
    // One owner inserted at the top: every other at the next index, as new objects.
    const moved = buildMarkMap({ source: 't', users: [{ user_code: 'new', user_intra_ip: '10.10.0.1' }, ...users.map((u) => ({ ...u }))], marks: [] });
    const steps = acc.lookUpSteps(moved);
    let yields = 0;
    let step = steps.next();
    for (; !step.done; step = steps.next()) yields += 1;
    assert.ok(yields >= 2, `${yields} pauses for 5,001 owners`);
    acc.setUsers(moved, 1, step.value);
    const after = acc.sinkFor(moved);
    moved.users.forEach((_, i) => after(i, 'tx', 1, 1));
    for (const series of acc.users()) {
      const n = series.user.user_code === 'new' ? 0 : Number(series.user.user_code.slice(1));
      assert.equal(Number(series.totals.txPackets), n + 1, series.user.user_code);
      assert.equal(series.removedAt, undefined);
    }
  });
});
