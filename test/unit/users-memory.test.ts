/**
 * What the agent keeps of a users document once it is mapped: its users, not
 * the document's text, and one owner object per user however often it syncs.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { buildMarkMap } from '../../src/attribution/mark-map.js';
import { Accumulator } from '../../src/totals/accumulator.js';
import { parseUsersDocument } from '../../src/users/document.js';
import { ConfigManager } from '../../src/users/manager.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const heapUsed = () => {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
};

/** `users` users whose codes and addresses are long enough (13 characters or more) for V8 to slice them out of the text. */
function documentOf(users: number, code = (i: number) => `customer-${String(i).padStart(8, '0')}`): string {
  const entries: string[] = [];
  const marks: string[] = [];
  for (let i = 0; i < users; i++) {
    const ip = `10.100.${100 + (i >> 7)}.${100 + (i & 127)}`;
    entries.push(JSON.stringify({ user_code: code(i), user_intra_ip: ip, user_name: `Customer number ${i}` }));
    marks.push(`{"mark_id":${i + 1},"sips":["${ip}"],"dips":["192.168.100.100"]}`);
  }
  // Ignored padding: a document far larger than what is kept of it.
  return `{"users":[${entries.join(',')}],"marks":[${marks.join(',')}],"note":"${'x'.repeat(16_000_000)}"}`;
}

/** A source of one document of 100 users and 200,000 pool entries, until dropped (made here: no frame of the test holds the text). */
function poolSource() {
  const users = Array.from({ length: 100 }, (_, i) => `{"user_code":"u${i}","user_intra_ip":"10.8.${i >> 8}.${i & 255}"}`);
  const marks = Array.from({ length: 200_000 }, (_, i) => `{"mark_id":${i},"sips":["10.9.${(i >> 8) & 255}.${i & 255}"],"dips":["192.0.2.${i % 200}"]}`);
  let text: string | undefined = `{"users":[${users.join(',')}],"marks":[${marks.join(',')}]}`;
  return { name: 'mem', read: async () => text!, watch: () => () => {}, drop: () => (text = undefined) };
}

describe('what a users sync keeps', () => {
  test("the users taken from a document do not hold the document's text", () => {
    const before = heapUsed();
    let text: string | undefined = documentOf(2000);
    const map = buildMarkMap(parseUsersDocument(text, 's'));
    const accumulator = new Accumulator();
    accumulator.setUsers(map, 0);
    text = undefined;
    const kept = heapUsed() - before;
    assert.equal(map.users.length, 2000);
    assert.ok(kept < 4_000_000, `${(kept / 1e6).toFixed(1)} MB kept for 2,000 users (the text was 16 MB)`);
  });

  test('a user found again in the next document keeps one owner object: the mapping and its series share it', () => {
    const accumulator = new Accumulator();
    const first = buildMarkMap(parseUsersDocument(documentOf(50), 's'));
    accumulator.setUsers(first, 0);
    // The same users but the first renamed: a new series for it, the old owners for the others.
    const next = buildMarkMap(parseUsersDocument(documentOf(50, (i) => (i === 0 ? 'renamed' : `customer-${String(i).padStart(8, '0')}`)), 's'));
    accumulator.setUsers(next, 1);
    const series = new Map([...accumulator.users()].map((s) => [s.user, s]));
    assert.equal(series.size, 51, 'the renamed user is a new series; the old one stays (removed)');
    for (let i = 1; i < 50; i++) assert.equal(next.users[i], first.users[i], `users[${i}] is the owner object of its series`);
    assert.ok(series.has(next.users[0]!) && next.users[0]!.user_code === 'renamed');
    assert.equal(series.get(first.users[0]!)!.removedAt, 1);
    for (const owner of next.users) assert.equal(series.get(owner)!.removedAt, undefined);
  });

  test('the users manager keeps neither the text nor the pool entries of the document it synced', async () => {
    // A kept pool is megabytes.
    const before = heapUsed();
    const source = poolSource();
    const manager = new ConfigManager(source);
    let synced = 0;
    manager.on('sync', () => synced++);
    await manager.reload();
    assert.equal(synced, 1);
    source.drop();
    // The manager holds the scan's mapping weakly (for the next scan), and a WeakRef keeps its target until the job that made it ends.
    await new Promise((resolve) => setImmediate(resolve));
    const kept = heapUsed() - before;
    assert.deepEqual([manager.current()!.users.length, manager.current()!.marks.length], [100, 200_000]);
    assert.ok(kept < 2_000_000, `${(kept / 1e6).toFixed(1)} MB kept`);
  });
});
