import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Accumulator, counterDelta } from '../../src/attribution/accumulator.js';
import type { RuleReading } from '../../src/attribution/attribute.js';
import { userKey } from '../../src/attribution/mark-map.js';
import { exact } from '../totals.js';

const alice = { user_code: 'alice', user_intra_ip: '10.8.0.2' };
const bob = { user_code: 'bob', user_intra_ip: '10.8.0.3' };

/** A rule told apart from the others by its -s (all share one chain and mark: the hardest case). */
function reading(rule: string, user: typeof alice | null, direction: 'rx' | 'tx', packets: bigint, bytes: bigint): RuleReading {
  return { chain: 'MM', mark: 1, source: rule, destination: undefined, user: user ? userKey(user) : null, direction, packets, bytes };
}

function totalsOf(acc: Accumulator, user: typeof alice) {
  const entry = [...acc.users()].find((s) => userKey(s.user) === userKey(user));
  assert.ok(entry, `${user.user_code} is exported`);
  return exact(entry.totals);
}

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

describe('Accumulator', () => {
  test('seeds a rule with its full counter and adds deltas after', () => {
    const acc = new Accumulator();
    acc.setUsers([alice], 0);
    acc.apply('ipv4', [reading('r1', alice, 'rx', 10n, 1000n)]);
    assert.deepEqual(totalsOf(acc, alice), { rxPackets: 10n, txPackets: 0n, rxBytes: 1000n, txBytes: 0n });
    acc.apply('ipv4', [reading('r1', alice, 'rx', 15n, 1500n)]);
    assert.deepEqual(totalsOf(acc, alice), { rxPackets: 15n, txPackets: 0n, rxBytes: 1500n, txBytes: 0n });
  });

  test('a counter that went down (iptables -Z) is a reset: its new value is the delta', () => {
    const acc = new Accumulator();
    acc.setUsers([alice], 0);
    acc.apply('ipv4', [reading('r1', alice, 'tx', 100n, 8400n)]);
    acc.apply('ipv4', [reading('r1', alice, 'tx', 0n, 0n)]);
    acc.apply('ipv4', [reading('r1', alice, 'tx', 4n, 336n)]);
    assert.equal(totalsOf(acc, alice).txPackets, 104n);
    assert.equal(totalsOf(acc, alice).txBytes, 8736n);
  });

  test('a reset of only the bytes still counts the packets as reset', () => {
    const acc = new Accumulator();
    acc.setUsers([alice], 0);
    acc.apply('ipv4', [reading('r1', alice, 'tx', 10n, 1000n)]);
    acc.apply('ipv4', [reading('r1', alice, 'tx', 12n, 50n)]);
    assert.equal(totalsOf(acc, alice).txPackets, 22n);
    assert.equal(totalsOf(acc, alice).txBytes, 1050n);
  });

  test('a rule that disappears keeps its contribution; when added again it counts from zero', () => {
    const acc = new Accumulator();
    acc.setUsers([alice], 0);
    acc.apply('ipv4', [reading('r1', alice, 'rx', 7n, 700n), reading('r2', alice, 'rx', 3n, 300n)]);
    acc.apply('ipv4', [reading('r2', alice, 'rx', 5n, 500n)]);
    assert.equal(totalsOf(acc, alice).rxPackets, 12n);
    // r1 deleted and added again: the kernel counter restarted; 2 is new traffic.
    acc.apply('ipv4', [reading('r1', alice, 'rx', 2n, 200n), reading('r2', alice, 'rx', 5n, 500n)]);
    assert.equal(totalsOf(acc, alice).rxPackets, 14n);
    assert.equal(totalsOf(acc, alice).rxBytes, 1400n);
  });

  test('identical rules are told apart by their order; one of them disappearing forgets only it', () => {
    const acc = new Accumulator();
    acc.setUsers([alice], 0);
    acc.apply('ipv4', [reading('same', alice, 'rx', 1n, 10n), reading('same', alice, 'rx', 2n, 20n), reading('other', alice, 'rx', 4n, 40n)]);
    acc.apply('ipv4', [reading('same', alice, 'rx', 3n, 30n), reading('same', alice, 'rx', 5n, 50n), reading('other', alice, 'rx', 4n, 40n)]);
    assert.equal(totalsOf(acc, alice).rxPackets, 12n);
    acc.apply('ipv4', [reading('same', alice, 'rx', 3n, 30n), reading('other', alice, 'rx', 6n, 60n)]);
    acc.apply('ipv4', [reading('same', alice, 'rx', 4n, 40n), reading('other', alice, 'rx', 6n, 60n)]);
    assert.equal(totalsOf(acc, alice).rxPackets, 15n);
  });

  test('a mark moved to a rule with other addresses is a new rule: its whole counter counts', () => {
    const acc = new Accumulator();
    acc.setUsers([alice], 0);
    const rule = (source: string, packets: bigint): RuleReading => ({ ...reading(source, alice, 'tx', packets, packets), chain: 'POSTROUTING', mark: 101 });
    acc.apply('ipv4', [rule('10.8.0.2/32', 100n)]);
    acc.apply('ipv4', [rule('10.8.0.9/32', 150n)]);
    assert.equal(totalsOf(acc, alice).txPackets, 250n);
  });

  test('sources are independent: an IPv6 reading does not forget IPv4 rules', () => {
    const acc = new Accumulator();
    acc.setUsers([alice], 0);
    acc.apply('ipv4', [reading('r1', alice, 'rx', 7n, 700n)]);
    acc.apply('ipv6', [reading('r1', alice, 'rx', 1n, 100n)]);
    acc.apply('ipv4', [reading('r1', alice, 'rx', 8n, 800n)]);
    assert.equal(totalsOf(acc, alice).rxPackets, 9n);
  });

  test('a user with several rules is summed; traffic nobody owns is unattributed per direction', () => {
    const acc = new Accumulator();
    acc.setUsers([alice, bob], 0);
    acc.apply('ipv4', [
      reading('a1', alice, 'tx', 1n, 10n),
      reading('a2', alice, 'tx', 2n, 20n),
      reading('b1', bob, 'rx', 4n, 40n),
      reading('x1', null, 'rx', 8n, 80n),
      reading('x2', null, 'tx', 16n, 160n),
    ]);
    assert.deepEqual(totalsOf(acc, alice), { rxPackets: 0n, txPackets: 3n, rxBytes: 0n, txBytes: 30n });
    assert.deepEqual(totalsOf(acc, bob), { rxPackets: 4n, txPackets: 0n, rxBytes: 40n, txBytes: 0n });
    assert.deepEqual(exact(acc.unattributed), { rxPackets: 8n, txPackets: 16n, rxBytes: 80n, txBytes: 160n });
  });

  test('counters beyond 2^53 stay exact', () => {
    const acc = new Accumulator();
    acc.setUsers([alice], 0);
    acc.apply('ipv4', [reading('r1', alice, 'rx', 9007199254740993n, 18446744073709551615n)]);
    acc.apply('ipv4', [reading('r1', alice, 'rx', 9007199254740995n, 18446744073709551615n)]);
    assert.equal(totalsOf(acc, alice).rxPackets, 9007199254740995n);
    assert.equal(totalsOf(acc, alice).rxBytes, 18446744073709551615n);
  });

  test('a removed user keeps its series for the grace period, then is dropped; a returning user keeps its total', () => {
    const acc = new Accumulator();
    acc.setUsers([alice, bob], 1000);
    acc.apply('ipv4', [reading('a', alice, 'rx', 5n, 50n), reading('b', bob, 'rx', 6n, 60n)]);
    acc.setUsers([alice], 2000);
    assert.deepEqual(acc.expireRemoved(2000 + 299_999, 300_000), []);
    assert.equal(totalsOf(acc, bob).rxPackets, 6n);
    // While removed, a rule still naming bob does not add to his frozen total.
    acc.apply('ipv4', [reading('a', alice, 'rx', 5n, 50n), reading('b', bob, 'rx', 9n, 90n)]);
    assert.equal(totalsOf(acc, bob).rxPackets, 6n);
    assert.equal(BigInt(acc.unattributed.rxPackets), 3n);
    assert.deepEqual(acc.expireRemoved(2000 + 300_000, 300_000), [bob]);
    assert.deepEqual([...acc.users()].map((s) => s.user.user_code), ['alice']);

    acc.setUsers([alice], 3000);
    acc.apply('ipv4', [reading('a', alice, 'rx', 6n, 60n)]);
    acc.setUsers([], 4000);
    acc.setUsers([alice], 5000);
    assert.deepEqual(acc.expireRemoved(10_000_000, 300_000), []);
    assert.equal(totalsOf(acc, alice).rxPackets, 6n);
  });
});
