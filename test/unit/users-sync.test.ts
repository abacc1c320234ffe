/**
 * A users sync holds no reading back: a large document is read and mapped in
 * slices while readings run, a reading runs with one whole mapping, and the
 * fast reading of the document agrees with the general one on every text.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildMarkMap } from '../../src/attribution/mark-map.js';
import { createLogger } from '../../src/log.js';
import { ReadingPath, type UsersApplied } from '../../src/reading-path.js';
import { loadSettings } from '../../src/settings.js';
import type { CommandRunner } from '../../src/sources/iptables/save-command.js';
import { parseUsersDocumentGenerally, type UsersSnapshot } from '../../src/users/document.js';
import { ENTRIES_PER_STEP, mappingOf, markCount, markEndsBlock, scanUsersDocument, scanUsersDocumentNow, userEndsBlock, type PreviousScan } from '../../src/users/document-scan.js';
import { isDottedQuad, markId } from '../../src/users/fields.js';
import { ConfigManager } from '../../src/users/manager.js';
import { random } from './random.js';
import { until } from './waits.js';

const DUMP = `*mangle
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
[3:252] -A PREROUTING -d 10.8.0.2/32 -j MARK --set-xmark 0x65/0xffffffff
[5:420] -A PREROUTING -d 10.8.0.3/32 -j MARK --set-xmark 0x66/0xffffffff
COMMIT
`;
const alice = { user_code: 'alice', user_intra_ip: '10.8.0.2' };
const bob = { user_code: 'bob', user_intra_ip: '10.8.0.3' };

/** alice, bob and `more` users besides (two marks each), as a gateway's document lists them. */
function largeDocument(more: number): string {
  const users = [JSON.stringify(alice), JSON.stringify(bob)];
  const marks: string[] = [];
  for (let i = 0; i < more; i++) {
    const ip = `10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    users.push(`{"user_code":"u${i}","user_intra_ip":"${ip}"}`);
    marks.push(`{"mark_id":${1000 + 2 * i},"sips":["${ip}"],"dips":["192.0.2.7"]}`, `{"mark_id":${1001 + 2 * i},"sips":["192.0.2.7"],"dips":["${ip}"]}`);
  }
  return `{"users":[\n${users.join(',\n')}\n],"marks":[\n${marks.join(',\n')}\n]}\n`;
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-users-sync-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** A reading path over a users file that starts as `first`, with its sync applied; `during` runs inside each reading. */
async function pathWith(first: object, during: (path: ReadingPath) => Promise<void> | void = () => {}) {
  const file = join(dir, `users-${Math.random()}.json`);
  const write = async (text: string) => {
    await writeFile(`${file}.tmp`, text);
    await rename(`${file}.tmp`, file);
  };
  await write(JSON.stringify(first));
  const settings = loadSettings({ env: { MARKMETER_USERS_FILE: file, MARKMETER_IPV6: 'false', MARKMETER_MAX_USERS: '100000' } });
  let path: ReadingPath | undefined = undefined;
  const runner: CommandRunner = async (_file, _args, _options, onOutput) => {
    await during(path!);
    onOutput(DUMP);
  };
  path = new ReadingPath({ settings, log: createLogger('silent'), remember: true, runner });
  const applied: UsersApplied[] = [];
  const manager = path.watchUsers((a) => applied.push(a))!;
  await manager.reload();
  await until(() => applied.length === 1, 'the first sync');
  const rx = () => Object.fromEntries([...path!.accumulator.users()].filter((s) => s.totals.rxPackets !== 0).map((s) => [s.user.user_code, Number(s.totals.rxPackets)]));
  return { path, manager, applied, write, rx };
}

describe('a users sync holds no reading back', () => {
  test('a reading due while a 50,000-user document is synced runs at once with the mapping in force; the next one has the new mapping', async () => {
    const seen: number[] = [];
    const { path, applied, write, rx } = await pathWith({ users: [alice] }, (p) => void seen.push(p.markMap.users.length));
    await write(largeDocument(50_000));
    // Whatever a timer sees of the mapping while the sync runs: one whole mapping or the other.
    const sizes = new Set<string>();
    const probe = setInterval(() => sizes.add(`${path.markMap.users.length}/${path.markMap.byMark.size}`), 1);
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    try {
      await path.collect();
      // (The runner also answers the backend detection: every call of a reading sees the same mapping.)
      assert.deepEqual([...new Set(seen)], [1], 'the reading ran with the mapping in force (alice alone), not after the sync');
      assert.equal(applied.length, 1, 'the large document was not yet in force when the reading ended');
      await until(() => applied.length === 2, 'the large sync', 20_000);
      await sleep(5);
    } finally {
      loop.disable();
      clearInterval(probe);
    }
    seen.length = 0;
    await path.collect();
    assert.deepEqual([...new Set(seen)], [50_002], 'the next reading has the new mapping');
    assert.deepEqual([...sizes].filter((s) => s !== '1/0' && s !== '50002/100000'), [], 'never a mapping in between');
    // bob's rule had no owner in the first reading (unattributed); his first owner gets its counts.
    assert.deepEqual(rx(), { alice: 3, bob: 5 });
    assert.ok(loop.max / 1e6 < 200, `the event loop was held ${(loop.max / 1e6).toFixed(0)} ms at once`);
  });

  test('a mapping made while a reading runs is put in force after that reading, never during it', async () => {
    let hold: Promise<void> | undefined;
    let inReading = () => {};
    const reading = new Promise<void>((resolve) => (inReading = resolve));
    const { path, manager, applied, write, rx } = await pathWith({ users: [alice] }, () => {
      inReading();
      return hold;
    });
    let release = () => {};
    hold = new Promise((resolve) => (release = resolve));
    const collecting = path.collect();
    await reading;
    await write(JSON.stringify({ users: [alice, bob] }));
    await manager.reload();
    await until(() => manager.current()?.users.length === 2, 'the new document read');
    await sleep(50);
    assert.equal(path.markMap.users.length, 1, 'the running reading keeps its mapping');
    assert.equal(applied.length, 1);
    hold = undefined;
    release();
    await collecting;
    assert.equal(applied.length, 2, 'in force once the reading ended');
    assert.equal(path.markMap.users.length, 2);
    // That reading counted with alice's mapping alone: bob's rule went to unattributed.
    assert.deepEqual(rx(), { alice: 3 });
    assert.equal(Number(path.accumulator.unattributed.rxPackets), 5);
    await path.collect();
    assert.deepEqual(rx(), { alice: 3, bob: 5 }, "bob's rule's first owner gets its counts");
  });
});

describe('the fast reading of the users document agrees with the general one', () => {
  /** What the general reader makes of a text: the snapshot, or the error's message. */
  const general = (text: string) => {
    try {
      return parseUsersDocumentGenerally(text, 's');
    } catch (error) {
      return (error as Error).message;
    }
  };
  /** What a scan of `text` leaves for the next one (see PreviousScan). */
  const leftBy = (text: string): PreviousScan | undefined => {
    const snapshot = scanUsersDocumentNow(text, 's');
    return snapshot && { users: snapshot.users, ...mappingOf(snapshot) };
  };
  /** Whether the fast reading answered itself (with and without what `before` left: the same answer either way); `seriesByMark`: also the mapping with series by mark. */
  const agrees = (text: string, before?: PreviousScan, seriesByMark = true) => {
    const fast = scanUsersDocumentNow(text, 's');
    const again = before && scanUsersDocumentNow(text, 's', before);
    assert.equal(again === undefined, before === undefined || fast === undefined, `answered alike with and without the previous scan, on ${JSON.stringify(text)}`);
    // Undefined: the fast reading leaves this text to the general one.
    for (const scanned of fast ? [fast, again ?? fast] : []) {
      const expected = general(text) as UsersSnapshot;
      // Before anything reads its marks (made on first use): their count, and the mapping by mark made from them.
      assert.equal(markCount(scanned), expected.marks.length, `count of ${JSON.stringify(text)}`);
      if (seriesByMark) {
        const { byIp: ipsByMark, byMark: marksByMark, conflicts: conflictsByMark, users: usersByMark } = buildMarkMap(scanned, 'mark');
        const madeByMark = buildMarkMap(expected, 'mark');
        assert.deepEqual(
          { ipsByMark, marksByMark, conflictsByMark, usersByMark },
          { ipsByMark: madeByMark.byIp, marksByMark: madeByMark.byMark, conflictsByMark: madeByMark.conflicts, usersByMark: madeByMark.users },
          `mapping by mark of ${JSON.stringify(text)}`,
        );
      }
      assert.deepEqual(scanned, expected, `on ${JSON.stringify(text)}`);
      // The mapping the scan made as it read equals the one made from the snapshot alone.
      const { byIp, byMark, conflicts, users } = buildMarkMap(scanned);
      const made = buildMarkMap({ ...scanned });
      assert.deepEqual({ byIp, byMark, conflicts, users }, { byIp: made.byIp, byMark: made.byMark, conflicts: made.conflicts, users: made.users }, `mapping of ${JSON.stringify(text)}`);
    }
    return fast !== undefined;
  };

  test('on the usual forms it answers itself, the same as the general reader', () => {
    const texts = [
      largeDocument(300),
      // Past the sizes at which the scan's table of pool addresses grows; an address escaped, and the same unescaped.
      largeDocument(3000),
      '{"users":[{"user_code":"a","user_intra_ip":"10.8.0.2"}],"marks":[{"mark_id":1,"sips":["10.8.0.\\u0032"]},{"mark_id":2,"dips":["10.8.0.2","10.8.0.\\u0032"]},{"mark_id":3,"sips":["10.8.0.2\\/32"]}]}',
      '{"users":[]}',
      ' \n{ "users" : [ { "user_code" : "a" , "user_intra_ip" : "10.8.0.2" } ] , "marks" : [ ] } \r\n\t',
      '{"version":7,"users":[{"user_code":"alice","user_intra_ip":"10.8.0.2","plan":{"tier":["gold",1.5e3,-0,true,false,null,{}]}},{"user_code":"carol","user_intra_ip":"FD00:8:0::0002"}],"marks":[{"mark_id":101,"sips":["10.8.0.2"],"dips":["192.0.2.7"]},{"mark_id":"0x66","sips":["10.8.0.0/24"]},{"mark_id":" 103 ","dips":[]},{"mark_id":1e2},{"mark_id":-0,"note":"x"}]}',
      '{"users":[{"user_code":"J\\u00f6rg \\"J\\"","user_intra_ip":"10.8.0.2","user_name":"Jörg ✓"},{"user_code":"b","user_intra_ip":"10.8.0.3","user_name":"\\ud83d\\ude00"}]}',
      '{"marks":[{"mark_id":7,"sips":["10.8.0.2","10.8.0.3","fd00::2/128"],"dips":["10.8.0.2"]}],"users":[{"user_intra_ip":"10.8.0.2","user_code":"a"}]}',
      '{"us\\u0065rs":[{"user\\u005fcode":"a","user_intra_ip":"10.8.0.2"}]}',
      // Owners through prefixes and IPv6 forms, a mark of two users, a mark of none.
      '{"users":[{"user_code":"a","user_intra_ip":"10.8.0.2"},{"user_code":"c","user_intra_ip":"fd00::2"}],"marks":[{"mark_id":1,"dips":["10.8.0.2/32"],"sips":["192.0.2.7"]},{"mark_id":2,"sips":["FD00:0::2/128","10.8.0.2"]},{"mark_id":3,"sips":["192.0.2.7"],"dips":["10.8.0.0/24"]},{"mark_id":4,"sips":["fd00::2"],"dips":["fd00::2/128","192.0.2.7"]}]}',
    ];
    for (const text of texts) assert.ok(agrees(text), `answered itself on ${text.slice(0, 80)}`);
    // Each read again after every other: what the last scan left never changes the answer.
    for (const text of texts) for (const other of texts) agrees(text, leftBy(other));
    assert.ok(mappingOf(scanUsersDocumentNow(texts[0]!, 's')!), 'a gateway\'s document is mapped as it is read');
  });

  test('on any text, changed a character at a time, it answers only what the general reader answers', () => {
    const base =
      '{"users":[{"user_code":"a","user_intra_ip":"10.8.0.2","user_name":"A"},{"user_code":"b","user_intra_ip":"fd00::2"}],"marks":[{"mark_id":101,"sips":["10.8.0.2"],"dips":["192.0.2.7/32"]},{"mark_id":"0x66","sips":[],"dips":["10.8.0.0/24","10.8.0.2"]}],"x":[1.5,{"y":null}]}';
    const alphabet = '{}[],:"\\ \n0123456789.-+eExabu/ftrn';
    let state = 12345;
    const random = (n: number) => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return state % n;
    };
    let answered = 0;
    // A changed text read after the base (the usual sync: most entries repeat the last document's) and after the text before it.
    const afterBase = leftBy(base);
    let afterLast: PreviousScan | undefined;
    for (let k = 0; k < 20_000; k++) {
      let text = base;
      for (let edits = 1 + random(3); edits > 0; edits--) {
        const at = random(text.length + 1);
        const kind = random(3);
        const c = alphabet[random(alphabet.length)]!;
        text = kind === 0 ? text.slice(0, at) + text.slice(at + 1) : kind === 1 ? text.slice(0, at) + c + text.slice(at) : text.slice(0, at) + c + text.slice(at + 1);
      }
      if (agrees(text, k % 2 === 0 ? afterBase : afterLast)) answered++;
      afterLast = leftBy(text);
    }
    assert.ok(answered > 1000, `the fast reading answered ${answered} of the changed texts itself`);
  });

  test('on entries inserted, removed, moved or repeated anywhere, read after other texts, it answers only what the general reader answers', () => {
    const rng = random(20261130);
    /** A gateway's document with the odd forms besides: names, IPv6, prefixes, lists, marks of no user, string ids. */
    const ipOf = (i: number) => (i % 97 === 5 ? `fd00::${(i + 1).toString(16)}` : `10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`);
    const userEntry = (i: number, ip = ipOf(i)) => (i % 13 === 0 ? `{"user_code":"u${i}","user_intra_ip":"${ip}","user_name":"User ${i}"}` : `{"user_code":"u${i}","user_intra_ip":"${ip}"}`);
    const baseUsers = Array.from({ length: 1200 }, (_, i) => userEntry(i));
    const baseMarks: string[] = [];
    for (let i = 0; i < 1200; i++) {
      const ip = ipOf(i);
      const sip = i % 29 === 3 ? `${ip}/${ip.includes(':') ? 128 : 32}` : ip;
      baseMarks.push(`{"mark_id":${1000 + 2 * i},"sips":["${sip}"],"dips":["192.0.2.7"]}`);
      baseMarks.push(i % 41 === 7 ? `{"mark_id":"${(1001 + 2 * i).toString()}","sips":["192.0.2.${i % 200}","198.51.100.1"],"dips":["${ip}"]}` : `{"mark_id":${1001 + 2 * i},"sips":["192.0.2.7"],"dips":["${ip}"]}`);
      if (i % 53 === 11) baseMarks.push(`{"mark_id":${900_000 + i},"sips":["198.51.100.${i % 250}"],"dips":["192.0.2.${i % 7}"]}`);
    }
    const documentOf = (users: readonly string[], marks: readonly string[]) => `{"users":[\n${users.join(',\n')}\n],"marks":[\n${marks.join(',\n')}\n]}\n`;
    let fresh = 0;
    /**
     * A user no document had: a new address, or one the pool names (a peer, or in a list of several), or one another user has;
     * or, in place of `replaced`, that user renamed (its code, or its name).
     */
    const newUser = (users: readonly string[], replaced?: string) => {
      fresh++;
      const kind = replaced !== undefined && rng.chance(0.6) ? 12 + rng.int(3) : rng.int(12);
      const ip = kind === 0 ? '192.0.2.7' : kind === 1 ? '198.51.100.1' : kind === 2 ? ipOf(rng.int(1200)) : kind === 5 ? `192.0.2.${rng.int(200)}` : `10.200.${fresh >> 8}.${fresh & 255}`;
      if (kind === 3) return `{"user_code":"v${fresh}","user_intra_ip":"10.200.0"}`;
      if (kind === 4 && users.length > 0) return rng.pick(users);
      if (kind >= 12) {
        const { user_code: code, user_intra_ip: address, user_name: name } = JSON.parse(replaced!) as Record<string, unknown>;
        if (kind === 12) return JSON.stringify({ user_code: code, user_intra_ip: address });
        return JSON.stringify(kind === 13 ? { user_code: `${String(code)}-renamed`, user_intra_ip: address, user_name: name } : { user_code: code, user_intra_ip: address, user_name: `${String(name)}!` });
      }
      return `{"user_code":"v${fresh}","user_intra_ip":"${ip}"}`;
    };
    const newMark = (marks: readonly string[]) => {
      fresh++;
      const kind = rng.int(11);
      if (kind === 0 && marks.length > 0) return rng.pick(marks);
      if (kind === 1) return `{"mark_id":-${fresh}}`;
      const id = kind === 2 ? 1000 + rng.int(3000) : 2_000_000 + fresh;
      const user = ipOf(rng.int(1200));
      const address = kind === 3 ? `10.200.${fresh >> 8}.${fresh & 255}` : kind === 4 ? '192.0.2.7/32' : kind === 5 ? `${user}/${user.includes(':') ? 128 : 32}` : user;
      return `{"mark_id":${id},"sips":["${address}"],"dips":["192.0.2.${rng.int(9)}"]}`;
    };
    /** The indices after which a block of entries begins: -1, and each entry that ends one (see userEndsBlock). */
    const blockEnds = (list: readonly string[]) => {
      const ends = [-1];
      list.forEach((entry, i) => {
        const { user_intra_ip: address, mark_id: id } = JSON.parse(entry) as { user_intra_ip?: string; mark_id?: unknown };
        const mark = markId(id);
        if (address === undefined ? mark !== undefined && markEndsBlock(mark) : userEndsBlock(address)) ends.push(i);
      });
      return ends;
    };
    /** Near the top half the time, anywhere else the rest. */
    const place = (length: number) => (rng.chance(0.5) ? rng.int(Math.min(length, 300) + 1) : rng.int(length + 1));
    const edit = (list: string[], make: (list: readonly string[], replaced?: string) => string) => {
      const at = place(list.length);
      const several = rng.chance(0.3) ? 2 + rng.int(40) : 1;
      const kind = rng.int(7);
      switch (kind) {
        case 0:
        case 1:
          list.splice(at, 0, ...Array.from({ length: several }, () => make(list)));
          break;
        case 2:
          list.splice(at, several);
          break;
        case 3:
        case 4:
        case 5: {
          // A run of entries moved elsewhere, or written twice (an address or a mark_id given twice); half the time whole blocks, moved after a block.
          const whole = rng.chance(0.5);
          const ends = blockEnds(list);
          const from = rng.int(ends.length);
          const [first, end] = whole ? [ends[from]! + 1, ends[Math.min(ends.length - 1, from + 1 + rng.int(4))]! + 1] : [at, at + several * (1 + rng.int(300))];
          const moved = kind === 5 ? list.slice(first, end) : list.splice(first, end - first);
          list.splice(whole ? rng.pick(blockEnds(list)) + 1 : place(list.length), 0, ...moved);
          break;
        }
        default: {
          // An entry changed where it is, or (moved) elsewhere.
          const changed = make(list, list[at]);
          list.splice(at, 1);
          list.splice(rng.chance(0.5) ? at : place(list.length), 0, changed);
        }
      }
    };
    const base = documentOf(baseUsers, baseMarks);
    const afterBase = leftBy(base)!;
    assert.ok(afterBase && agrees(base));
    let previous: PreviousScan | undefined = afterBase;
    let answered = 0;
    for (let k = 0; k < 120; k++) {
      const users = [...baseUsers];
      const marks = [...baseMarks];
      for (let edits = 1 + rng.int(3); edits > 0; edits--) {
        if (rng.chance(0.6)) edit(users, newUser);
        else edit(marks, newMark);
      }
      const text = documentOf(users, marks);
      // After the base's scan, or after the last text's (itself read after the one before: blocks taken at other indices).
      const before = k % 3 === 0 ? afterBase : previous;
      // (The mapping by mark is made from the snapshot alone: the same when the snapshots are.)
      if (agrees(text, before, false)) answered++;
      const scanned = scanUsersDocumentNow(text, 's', before);
      previous = scanned ? { users: scanned.users, ...mappingOf(scanned) } : previous;
    }
    assert.ok(answered > 40, `the fast reading answered ${answered} of the changed texts itself`);
  });

  /** How many times a scan of `text` pauses: a slice of entries read, of blocks taken again, or of a map made. */
  const slices = (text: string, previous?: PreviousScan) => {
    const steps = scanUsersDocument(text, 's', previous);
    let count = 0;
    while (!steps.next().done) count++;
    return count;
  };

  test('after an entry inserted or removed near the top, the blocks past it are taken again at their new indices, not read', () => {
    const large = largeDocument(3000);
    const afterLarge = leftBy(large)!;
    const user = '{"user_code":"u98",';
    const mark = '{"mark_id":1196,';
    const texts = [
      large.replace(user, `{"user_code":"new","user_intra_ip":"10.9.9.9"},\n${user}`),
      large.replace('{"user_code":"u97","user_intra_ip":"10.64.0.97"},\n', ''),
      large.replace(mark, `{"mark_id":7,"sips":["10.9.9.9"]},\n${mark}`),
      large.replace('{"mark_id":1194,"sips":["10.64.0.97"],"dips":["192.0.2.7"]},\n', ''),
    ];
    for (const text of texts) {
      assert.notEqual(text, large);
      // Of the 9,000 entries, a block or two read again (and the maps made again: the users or the marks are at other indices).
      assert.ok(slices(text, afterLarge) <= slices(text) - Math.floor(9000 / ENTRIES_PER_STEP) + 4, `${slices(text, afterLarge)} slices, against ${slices(text)} for a reading`);
      assert.ok(agrees(text, afterLarge));
    }
    // A user inserted whose address the pool named for no user (in a list of several, or as every mark's peer): the marks that name it have two users now, and are read.
    const listed = large.replace('{"mark_id":1196,"sips":["10.64.0.98"],"dips":["192.0.2.7"]}', '{"mark_id":1196,"sips":["10.64.0.98"],"dips":["192.0.2.7","198.51.100.9"]}');
    const afterListed = leftBy(listed)!;
    for (const address of ['198.51.100.9', '192.0.2.7']) {
      const text = listed.replace('{"user_code":"u50",', `{"user_code":"peer","user_intra_ip":"${address}"},\n{"user_code":"u50",`);
      assert.equal(mappingOf(scanUsersDocumentNow(text, 's', afterListed)!), undefined, 'a mark of two users: the mark map maps it, and tells');
      assert.ok(agrees(text, afterListed));
    }
  });

  test('a document read again keeps what it repeats of the last one: its user objects, and its mapping when that is the same', () => {
    const first = largeDocument(300);
    const before = leftBy(first)!;
    const renamed = scanUsersDocumentNow(first.replace('"user_code":"u7"', '"user_code":"u7-renamed"'), 's', before)!;
    assert.equal(renamed.users.filter((user, i) => user !== before.users[i]).length, 1, 'one user object made: the renamed one');
    assert.equal(renamed.users[9]!.user_code, 'u7-renamed');
    assert.equal(mappingOf(renamed)!.byIp, before.byIp, 'the same addresses at the same places: the same byIp');
    assert.equal(mappingOf(renamed)!.byMark, before.byMark, 'the same marks with the same owners: the same byMark');
    // Marks written as the last document wrote them, for users at the same addresses: taken again as a whole, not read in slices.
    const large = largeDocument(3000);
    const afterLarge = leftBy(large)!;
    const renamedLarge = large.replace('"user_code":"u7"', '"user_code":"u7-renamed"');
    assert.ok(slices(renamedLarge, leftBy(large)) <= slices(renamedLarge) - Math.floor(6000 / ENTRIES_PER_STEP), 'the 6,000 marks were not read again');
    // Marks written otherwise in every block are read again, in slices; so are a changed one's block, and (shifted) the blocks after a mark added.
    const repeered = renamedLarge.replaceAll('"192.0.2.7"', '"192.0.2.8"');
    // (Each after the large document's scan alone: a scan that keeps its byMark keeps the marks it read beside it, for the next.)
    assert.ok(slices(repeered, leftBy(large)) >= slices(renamedLarge, leftBy(large)) + Math.floor(6000 / ENTRIES_PER_STEP) - 1, 'marks written otherwise are read');
    const changedMark = renamedLarge.replace('{"mark_id":3000,"sips":["10.64.3.232"],"dips":["192.0.2.7"]}', '{"mark_id":3000,"sips":["10.64.3.233","198.51.100.1"]}');
    const addedMark = renamedLarge.replace('{"mark_id":3000,', '{"mark_id":1,"sips":["198.51.100.1"]},{"mark_id":3000,');
    assert.ok(changedMark !== renamedLarge && addedMark !== renamedLarge);
    for (const text of [repeered, renamedLarge, renamedLarge.replace('"marks":[', '"marks":[ '), changedMark, addedMark]) assert.ok(agrees(text, afterLarge));
    // A mark_id given twice across a changed block and a repeated one is still the general reader's.
    const twiceAcross = large.replace('{"mark_id":1000,"sips"', '{"mark_id":5000,"sips"');
    assert.equal(scanUsersDocumentNow(twiceAcross, 's', afterLarge), undefined);
    assert.match(general(twiceAcross) as string, /mark 5000 is already defined/);
    // Blocks of users written as the last document's are taken again: an address given twice across them is still the general reader's.
    const u2000 = '"user_intra_ip":"10.64.7.208"';
    assert.ok(large.includes(u2000) && large.includes('"user_intra_ip":"10.64.0.7"'));
    for (const text of [large.replace('"user_intra_ip":"10.64.0.7"', u2000), large.replace(u2000, '"user_intra_ip":"10.64.0.7"')]) {
      assert.equal(scanUsersDocumentNow(text, 's', afterLarge), undefined, 'an address given twice');
      assert.match(general(text) as string, /is already the address of users/);
    }
    // Users added first (every block moved), or last (the blocks before taken again).
    const added = '{"user_code":"new","user_intra_ip":"10.9.9.9"}';
    assert.ok(agrees(large.replace('{"users":[\n', `{"users":[\n${added},`), afterLarge));
    assert.ok(agrees(large.replace('\n],"marks"', `,${added}\n],"marks"`), afterLarge));
    // A mark given to another user, and a user's address changed: new maps, right ones (agrees() compares them with maps made from scratch).
    const moved = first.replace('"sips":["10.64.0.5"]', '"sips":["10.64.0.6"]');
    assert.notEqual(mappingOf(scanUsersDocumentNow(moved, 's', before)!)!.byMark, before.byMark);
    assert.ok(agrees(moved, before));
    const readdressed = first.replace('"user_intra_ip":"10.64.0.5"', '"user_intra_ip":"10.65.0.5"');
    const again = scanUsersDocumentNow(readdressed, 's', before)!;
    assert.notEqual(mappingOf(again)!.byIp, before.byIp);
    assert.equal(mappingOf(again)!.byIp.get('10.65.0.5'), 7);
    assert.ok(agrees(readdressed, before));
    // Past what repeats the last document: an address or a mark_id given twice is still the general reader's error.
    const twice = (text: string) => assert.equal(scanUsersDocumentNow(text, 's', before), undefined, text.slice(-120));
    twice(first.replace('\n],"marks"', ',\n{"user_code":"again","user_intra_ip":"10.8.0.2"}\n],"marks"'));
    twice(first.replace('\n]}', ',\n{"mark_id":1000}\n]}'));
    assert.ok(agrees(first.replace('\n]}', ',\n{"mark_id":99,"sips":["10.8.0.3"]}\n]}'), before));
  });

  test("a gateway's document mapped by user makes no pool entries, and counts them the same", async () => {
    const text = largeDocument(3000);
    const scanned = scanUsersDocumentNow(text, 's')!;
    const unmade = () => Object.getOwnPropertyDescriptor(scanned, 'marks')!.get !== undefined;
    const map = buildMarkMap(scanned);
    assert.equal(markCount(scanned), 6000);
    assert.equal(map.byMark.size, 6000);
    assert.ok(unmade(), 'the mapping by user and the count read no MarkEntry');
    // The users manager's count of the last document, and what reads it: the same, still without entries.
    const synced: UsersSnapshot[] = [];
    const manager = new ConfigManager({ name: 'mem', read: async () => text, watch: () => () => {} });
    manager.on('sync', (snapshot) => synced.push(snapshot));
    await manager.reload();
    buildMarkMap(synced[0]!);
    assert.equal(manager.current()!.marks.length, 6000);
    assert.equal(Object.getOwnPropertyDescriptor(synced[0]!, 'marks')!.get !== undefined, true, "the manager's sync made no MarkEntry");
    // Read, they are the general reader's; set, a plain array like any snapshot's.
    assert.deepEqual(scanned.marks, parseUsersDocumentGenerally(text, 's').marks);
    assert.ok(!unmade());
    assert.equal(scanned.marks, scanned.marks, 'made once');
    const other = scanUsersDocumentNow(text, 's')!;
    other.marks = [];
    assert.deepEqual([other.marks, markCount(other)], [[], 0]);
  });

  test('the users manager hashes the bytes of a source that has them, and decodes only a changed document', async () => {
    let bytes = Buffer.from(largeDocument(3));
    let decoded = 0;
    const source = {
      name: 'bytes',
      readBytes: async () => bytes,
      read: async () => assert.fail('read() while readBytes() is there'),
      watch: () => () => {},
    };
    const manager = new ConfigManager(source);
    const synced: UsersSnapshot[] = [];
    manager.on('sync', (snapshot) => synced.push(snapshot));
    manager.on('error', (error) => assert.fail(error));
    const toString = bytes.toString.bind(bytes);
    bytes.toString = ((...args: Parameters<Buffer['toString']>) => (decoded++, toString(...args))) as Buffer['toString'];
    await manager.reload();
    await manager.reload();
    assert.deepEqual([synced.length, decoded], [1, 1], 'the same bytes again: no sync, not decoded');
    assert.deepEqual(synced[0], parseUsersDocumentGenerally(largeDocument(3), 'bytes'));
    bytes = Buffer.from(largeDocument(4));
    await manager.reload();
    assert.deepEqual(synced.map((s) => s.users.length), [5, 6]);
  });

  test('a dotted quad is what node takes for an IPv4 address, and nothing else', () => {
    const forms = ['0.0.0.0', '255.255.255.255', '10.8.0.2', '1.2.3.4', '01.2.3.4', '1.2.3.04', '1.2.3.256', '1.2.3', '1.2.3.4.5', ' 1.2.3.4', '1.2.3.4 ', '1..3.4', '1.2.3.', '١.2.3.4', '1.2.3.4/32', '00.0.0.0', '999.1.1.1', '::1', '1e1.2.3.4'];
    for (const form of forms) assert.equal(isDottedQuad(form), isIP(form) === 4, form);
    for (let i = 0; i < 20_000; i++) {
      const form = [0, 1, 2, 3].map((k) => String((i * 7919 + k * 104729) % 300).padStart(1 + ((i >> k) % 2), '0')).join('.');
      assert.equal(isDottedQuad(form), isIP(form) === 4, form);
    }
  });
});
