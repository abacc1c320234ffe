import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { ConfigManager } from '../../src/users/manager.js';
import { FileUsersSource } from '../../src/users/file-source.js';
import { usersSource } from '../../src/users/from-settings.js';
import { parseUsersDocument, type UsersSnapshot } from '../../src/users/document.js';
import { UsersDocumentError, UsersSourceError } from '../../src/errors.js';
import { loadSettings } from '../../src/settings.js';

const doc = (...codes: string[]) =>
  JSON.stringify({ users: codes.map((code, i) => ({ user_code: code, user_intra_ip: `10.8.0.${i + 2}` })) });

let dir: string;
let file: string;
let manager: ConfigManager;
const events: (UsersSnapshot | UsersDocumentError)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-cm-'));
  file = join(dir, 'users.json');
  events.length = 0;
});

afterEach(async () => {
  manager?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function startManager(pollMs = 200): Promise<void> {
  manager = new ConfigManager(new FileUsersSource(file, pollMs), 20);
  manager.on('sync', (s) => events.push(s));
  manager.on('error', (e) => events.push(e));
  await manager.start();
}

/** The next 'sync' or 'error' (events.once would reject on 'error', so listen by hand). */
function nextEvent(timeoutMs = 3000): Promise<UsersSnapshot | UsersDocumentError> {
  return new Promise((resolve, reject) => {
    const done = (event: UsersSnapshot | UsersDocumentError) => {
      clearTimeout(timer);
      manager.off('sync', done);
      manager.off('error', done);
      resolve(event);
    };
    const timer = setTimeout(() => {
      manager.off('sync', done);
      manager.off('error', done);
      reject(new Error(`no sync or error within ${timeoutMs} ms`));
    }, timeoutMs);
    manager.on('sync', done);
    manager.on('error', done);
  });
}

const codes = (s: Pick<UsersSnapshot, 'users'> | undefined) => s?.users.map((u) => u.user_code);

describe('ConfigManager with a file source', () => {
  test('start loads the document and emits sync', async () => {
    await writeFile(file, doc('alice'));
    await startManager();
    assert.equal(events.length, 1);
    assert.deepEqual(codes(events[0] as UsersSnapshot), ['alice']);
    assert.deepEqual(codes(manager.current()), ['alice']);
  });

  test('an in-place rewrite is picked up within about a second', async () => {
    await writeFile(file, doc('alice'));
    await startManager();
    const started = Date.now();
    await writeFile(file, doc('alice', 'bob'));
    const event = await nextEvent();
    assert.deepEqual(codes(event as UsersSnapshot), ['alice', 'bob']);
    assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
  });

  test('an atomic replace (write temp + rename) is picked up', async () => {
    await writeFile(file, doc('alice'));
    await startManager();
    const temp = join(dir, '.users.json.tmp');
    await writeFile(temp, doc('carol'));
    await rename(temp, file);
    const event = await nextEvent();
    assert.deepEqual(codes(event as UsersSnapshot), ['carol']);
  });

  test('a document in a folder that does not exist yet is picked up when it appears (stat poll, no fs.watch)', async () => {
    file = join(dir, 'later', 'users.json');
    await startManager(100);
    assert.ok(events[0] instanceof Error, 'missing at start: an error');
    await mkdir(join(dir, 'later'));
    await writeFile(file, doc('frank'));
    assert.deepEqual(codes((await nextEvent()) as UsersSnapshot), ['frank']);
  });

  test('rewriting the same content emits nothing', async () => {
    await writeFile(file, doc('alice'));
    await startManager();
    await writeFile(file, doc('alice'));
    await sleep(700);
    assert.equal(events.length, 1);
  });

  const broken: [string, string, RegExp][] = [
    ['bad JSON', '{"users": [', /not valid JSON/],
    ['a wrong type', '{"users": [{"user_code": 5, "user_intra_ip": "10.8.0.2"}]}', /users\[0\]\.user_code/],
    ['a bad IP', '{"users": [{"user_code": "x", "user_intra_ip": "10.8.0.256"}]}', /users\[0\]\.user_intra_ip/],
    [
      'a duplicate user_intra_ip',
      '{"users": [{"user_code": "x", "user_intra_ip": "10.8.0.2"}, {"user_code": "y", "user_intra_ip": "10.8.0.2"}]}',
      /users\[1\]\.user_intra_ip/,
    ],
    ['a bad mark', '{"users": [], "marks": [{"mark_id": "0xZZ"}]}', /marks\[0\]\.mark_id/],
  ];
  for (const [name, text, field] of broken) {
    test(`a document with ${name} emits one error naming file and field; the last good mapping stays`, async () => {
      await writeFile(file, doc('alice'));
      await startManager();
      await writeFile(file, text);
      const event = await nextEvent();
      assert.ok(event instanceof Error, 'an error, not a sync');
      assert.ok(event.message.includes(file));
      assert.match(event.message, field);
      assert.deepEqual(codes(manager.current()), ['alice']);
      // The same broken content is not reported again on every poll.
      await sleep(500);
      assert.equal(events.length, 2);
      // Fixing the file syncs again.
      await writeFile(file, doc('dave'));
      assert.deepEqual(codes((await nextEvent()) as UsersSnapshot), ['dave']);
    });
  }

  test('a missing file is one error; the mapping stays; the file appearing syncs', async () => {
    await writeFile(file, doc('alice'));
    await startManager();
    await rm(file);
    const event = await nextEvent();
    // Its own error: nothing was validated, so it says nothing of a rejected document.
    assert.ok(event instanceof UsersSourceError);
    assert.equal(event.code, 'users_source');
    assert.match(event.message, /cannot be read \(ENOENT\)/);
    assert.doesNotMatch(event.message, /rejected/);
    assert.deepEqual(codes(manager.current()), ['alice']);
    await sleep(500);
    assert.equal(events.length, 2, 'one error per outage');
    await writeFile(file, doc('erin'));
    assert.deepEqual(codes((await nextEvent()) as UsersSnapshot), ['erin']);
  });

  test("a file the agent's user cannot read (EACCES) says that the image runs as node (uid 1000) and the file must be readable by it", async () => {
    await writeFile(file, doc('alice'));
    await chmod(dir, 0o755);
    await chmod(file, 0o600);
    // Read by a real process of uid 1000, the image's node user (root reads any file, so it drops to that uid).
    const asImageUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=1000', '--regid=1000', '--clear-groups'] : [];
    if (!asImageUser.length) await chmod(file, 0o000);
    const script = `import('./src/users/file-source.ts').then(({ FileUsersSource }) => new FileUsersSource(${JSON.stringify(file)}).read()).then(() => console.log('read'), (e) => console.log(e.message))`;
    const [program, ...args] = [...asImageUser, process.execPath, '--import', 'tsx', '-e', script];
    const { stdout } = await promisify(execFile)(program!, args, { env: { ...process.env, TSX_DISABLE_CACHE: '1' } });
    assert.match(
      stdout,
      /^cannot be read \(EACCES\): markmeter runs as uid (\d+) here \(the image runs as the node user, uid 1000\), and the file must be readable by that uid and its folders searchable: e\.g\. chmod a\+r the file, or chown \1 it$/m,
    );
  });

  test('a bad document at start is an error and no mapping', async () => {
    await writeFile(file, '{"users": 1}');
    await startManager();
    assert.equal(manager.current(), undefined);
    assert.ok(events[0] instanceof Error);
  });

  test('a document nested 10,000 deep is one error (no crash) and the last good mapping stays', async () => {
    await writeFile(file, doc('alice'));
    await startManager();
    await writeFile(file, `{"users":[{"user_code":${'['.repeat(10_000)}${']'.repeat(10_000)},"user_intra_ip":"10.8.0.2"}]}`);
    const [error] = (await once(manager, 'error')) as [UsersDocumentError];
    assert.ok(error instanceof UsersDocumentError);
    assert.equal(error.field, 'users[0].user_code');
    assert.deepEqual(codes(manager.current()), ['alice']);
  });

  test('an unexpected error while validating is an error event, not a rejection, and the mapping stays', async () => {
    await writeFile(file, doc('alice'));
    const unexpected = new RangeError('Maximum call stack size exceeded');
    // The validator with a bug for one document: whatever it throws must not escape the manager.
    const parse = (text: string, source: string) => {
      if (text.includes('bob')) throw unexpected;
      return parseUsersDocument(text, source);
    };
    manager = new ConfigManager(new FileUsersSource(file, 200), 20, parse);
    manager.on('error', (e) => events.push(e));
    await manager.start();
    await writeFile(file, doc('alice', 'bob'));
    await assert.doesNotReject(manager.reload());
    const error = events.at(-1);
    assert.ok(error instanceof UsersDocumentError, `an error event, got ${String(error)}`);
    assert.equal(error.cause, unexpected);
    assert.match(error.message, /RangeError: Maximum call stack size exceeded/);
    assert.deepEqual(codes(manager.current()), ['alice']);
  });

  test('a file past users.maxBytes (set by MARKMETER_USERS_MAX_BYTES) is refused unread; the mapping stays', async () => {
    await writeFile(file, doc('alice'));
    const settings = loadSettings({ env: { MARKMETER_USERS_FILE: file, MARKMETER_USERS_MAX_BYTES: '1048576' } });
    assert.equal(settings.users.maxBytes, 1048576);
    manager = new ConfigManager(usersSource(settings.users)!, 20);
    manager.on('error', (e) => events.push(e));
    await manager.start();
    // A valid document, 8 MiB long (padded with spaces): too big all the same.
    await writeFile(file, `${doc('bob')}${' '.repeat(8 * 1024 * 1024)}`);
    await manager.reload();
    const error = events.at(-1);
    assert.ok(error instanceof UsersSourceError, `an error event, got ${String(error)}`);
    assert.match(error.message, /is 8388\d{3} bytes, more than users\.maxBytes \(1048576 bytes\)/);
    assert.deepEqual(codes(manager.current()), ['alice']);
  });

  test('a file whose size says nothing (a character device) is read only up to users.maxBytes', { timeout: 10_000 }, async () => {
    await assert.rejects(new FileUsersSource('/dev/zero', 1000, 1024 * 1024).read(), /more than users\.maxBytes \(1048576 bytes\)/);
  });

  test('a file of exactly users.maxBytes is read whole; one byte less is refused', async () => {
    const text = doc('zoë', 'bob');
    await writeFile(file, text);
    const size = Buffer.byteLength(text);
    assert.equal(await new FileUsersSource(file, 1000, size).read(), text);
    await assert.rejects(new FileUsersSource(file, 1000, size - 1).read(), new RegExp(`is ${size} bytes, more than users\\.maxBytes \\(${size - 1} bytes\\)`));
  });

  test('users.maxBytes defaults to 32 MiB and is at most 256 MiB (V8 holds no string past about 512 MiB)', () => {
    assert.equal(loadSettings({ env: {} }).users.maxBytes, 32 * 1024 * 1024);
    assert.equal(loadSettings({ env: { MARKMETER_USERS_MAX_BYTES: String(256 * 1024 * 1024) } }).users.maxBytes, 256 * 1024 * 1024);
    assert.throws(() => loadSettings({ env: { MARKMETER_USERS_MAX_BYTES: '1073741824' } }), /users\.maxBytes is at most 268435456 \(256 MiB\), got 1073741824/);
  });
});
