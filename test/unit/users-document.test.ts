import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parseUsersDocument } from '../../src/users/document.js';
import { UsersDocumentError } from '../../src/errors.js';

const SOURCE = '/etc/markmeter/users.json';

describe('parseUsersDocument', () => {
  test('user_name: a display name kept when present; anything but a non-empty string is rejected naming the field', () => {
    const snapshot = parseUsersDocument(JSON.stringify({ users: [{ user_code: 'alice', user_intra_ip: '10.8.0.2', user_name: 'Alice Liddell' }, { user_code: 'bob', user_intra_ip: '10.8.0.3' }] }), 'u.json');
    assert.deepEqual(snapshot.users, [
      { user_code: 'alice', user_intra_ip: '10.8.0.2', user_name: 'Alice Liddell' },
      { user_code: 'bob', user_intra_ip: '10.8.0.3' },
    ]);
    for (const bad of [7, '', '  ', null, ['x']]) {
      assert.throws(
        () => parseUsersDocument(JSON.stringify({ users: [{ user_code: 'a', user_intra_ip: '10.8.0.2', user_name: bad }] }), 'u.json'),
        /users\[0\]\.user_name: must be a non-empty string when present/,
      );
    }
  });

  test('accepts the documented example, ignores extra fields, canonicalises addresses', () => {
    const snapshot = parseUsersDocument(
      JSON.stringify({
        version: 7,
        users: [
          { user_code: 'alice', user_intra_ip: '10.8.0.2', plan: 'gold' },
          { user_code: 'carol', user_intra_ip: 'FD00:8:0::0002' },
        ],
        marks: [
          { mark_id: 101, sips: ['10.8.0.2'], dips: ['192.0.2.7'] },
          { mark_id: '0x66', sips: ['10.8.0.0/24'] },
          { mark_id: ' 103 ', dips: [] },
        ],
      }),
      SOURCE,
    );
    assert.deepEqual(snapshot.users, [
      { user_code: 'alice', user_intra_ip: '10.8.0.2' },
      { user_code: 'carol', user_intra_ip: 'fd00:8::2' },
    ]);
    assert.deepEqual(
      snapshot.marks.map((m) => m.mark_id),
      [101, 0x66, 103],
    );
    assert.deepEqual(snapshot.marks[1]!.dips, []);
  });

  test('marks are optional', () => {
    assert.deepEqual(parseUsersDocument('{"users":[]}', SOURCE).marks, []);
  });

  const bad: [string, string, string | undefined, RegExp][] = [
    ['not JSON', '{"users": [', undefined, /not valid JSON/],
    ['an array', '[]', undefined, /JSON object/],
    ['users missing', '{}', 'users', /must be an array/],
    ['a user that is a string', '{"users":["alice"]}', 'users[0]', /must be an object/],
    ['user_code missing', '{"users":[{"user_intra_ip":"10.8.0.2"}]}', 'users[0].user_code', /non-empty string/],
    ['user_code a number', '{"users":[{"user_code":7,"user_intra_ip":"10.8.0.2"}]}', 'users[0].user_code', /got 7/],
    ['a bad IPv4', '{"users":[{"user_code":"a","user_intra_ip":"10.8.0.300"}]}', 'users[0].user_intra_ip', /"10.8.0.300"/],
    ['a prefix as user ip', '{"users":[{"user_code":"a","user_intra_ip":"10.8.0.2/32"}]}', 'users[0].user_intra_ip', /IPv4 or IPv6/],
    [
      'a duplicate user_intra_ip (IPv6 written two ways)',
      '{"users":[{"user_code":"a","user_intra_ip":"fd00::2"},{"user_code":"b","user_intra_ip":"fd00:0::2"}]}',
      'users[1].user_intra_ip',
      /already the address of users\[0\]/,
    ],
    ['marks not an array', '{"users":[],"marks":{}}', 'marks', /array/],
    ['mark_id negative', '{"users":[],"marks":[{"mark_id":-1}]}', 'marks[0].mark_id', /0 to 4294967295/],
    ['mark_id too large', '{"users":[],"marks":[{"mark_id":4294967296}]}', 'marks[0].mark_id', /4294967296/],
    ['mark_id a float', '{"users":[],"marks":[{"mark_id":1.5}]}', 'marks[0].mark_id', /1.5/],
    ['mark_id a word', '{"users":[],"marks":[{"mark_id":"abc"}]}', 'marks[0].mark_id', /"abc"/],
    ['duplicate mark_id (0x65 and 101)', '{"users":[],"marks":[{"mark_id":101},{"mark_id":"0x65"}]}', 'marks[1].mark_id', /already defined/],
    ['sips not an array', '{"users":[],"marks":[{"mark_id":1,"sips":"10.8.0.2"}]}', 'marks[0].sips', /array/],
    ['a bad dip', '{"users":[],"marks":[{"mark_id":1,"dips":["192.0.2.7","nope"]}]}', 'marks[0].dips[1]', /"nope"/],
    ['a prefix too long', '{"users":[],"marks":[{"mark_id":1,"dips":["192.0.2.0/33"]}]}', 'marks[0].dips[0]', /192.0.2.0\/33/],
  ];
  for (const [name, text, field, message] of bad) {
    test(`rejects ${name}, naming the source and field`, () => {
      assert.throws(
        () => parseUsersDocument(text, SOURCE),
        (error: unknown) => {
          assert.ok(error instanceof UsersDocumentError);
          assert.equal(error.source, SOURCE);
          assert.equal(error.field, field);
          assert.match(error.message, message);
          assert.ok(error.message.includes(SOURCE));
          if (field) assert.ok(error.message.includes(field));
          assert.match(error.message, /last good mapping stays/);
          return true;
        },
      );
    });
  }

  // A hostile document: values nested far deeper than any recursive walk survives.
  const deep = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
  const hostile: [string, string, string][] = [
    ['a user_code nested 10,000 arrays deep', `{"users":[{"user_code":${deep(10_000)},"user_intra_ip":"10.8.0.2"}]}`, 'users[0].user_code'],
    ['a user_intra_ip nested 1,000,000 arrays deep', `{"users":[{"user_code":"a","user_intra_ip":${deep(1_000_000)}}]}`, 'users[0].user_intra_ip'],
    ['a mark_id of 100,000 nested objects', `{"users":[],"marks":[{"mark_id":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}]}`, 'marks[0].mark_id'],
    ['sips of 100,000 keys', `{"users":[],"marks":[{"mark_id":1,"sips":{${Array.from({ length: 100_000 }, (_, i) => `"k${i}":${i}`).join(',')}}}]}`, 'marks[0].sips'],
    ['a user_code of a million digits', `{"users":[{"user_code":${'9'.repeat(1_000_000)},"user_intra_ip":"10.8.0.2"}]}`, 'users[0].user_code'],
  ];
  for (const [name, text, field] of hostile) {
    test(`rejects ${name} with the usual error and a short preview of the value`, () => {
      assert.throws(
        () => parseUsersDocument(text, SOURCE),
        (error: unknown) => {
          assert.ok(error instanceof UsersDocumentError, `a UsersDocumentError, got ${String(error)}`);
          assert.equal(error.field, field);
          assert.ok(error.message.length < 400, `a short message, got ${error.message.length} characters`);
          return true;
        },
      );
    });
  }

  test('a preview shows the start of the value and where it was cut', () => {
    assert.throws(() => parseUsersDocument(`{"users":[{"user_code":${deep(10_000)},"user_intra_ip":"10.8.0.2"}]}`, SOURCE), /got \[\[\[\[\[.*…/);
    assert.throws(() => parseUsersDocument(`{"users":[{"user_code":"a","user_intra_ip":"${'x'.repeat(100_000)}"}]}`, SOURCE), /got "xxxxx.*…/);
    assert.throws(() => parseUsersDocument('{"users":[],"marks":[{"mark_id":{"a":[1,true,null]}}]}', SOURCE), /got \{"a":\[1,true,null\]\}(?!…)/);
  });

  test('the CLI rejects a 10,000-deep document with one line on stderr (run `npm run build` first)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'markmeter-deep-'));
    try {
      const file = join(dir, 'deep.json');
      await writeFile(file, `{"users":[{"user_code":${deep(10_000)},"user_intra_ip":"10.8.0.2"}]}`);
      const args = ['dist/cli.js', 'snapshot', '--users', file, '--input', 'test/fixtures/nft-v4-users.iptables-save'];
      const result = await promisify(execFile)(process.execPath, args).then(
        () => ({ code: 0, stdout: '', stderr: '' }),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
      assert.equal(result.code, 1);
      assert.equal(result.stdout, '');
      assert.match(result.stderr, /^markmeter: users document .*deep\.json: users\[0\]\.user_code: must be a non-empty string, got \[\[\[.*\n$/);
      assert.equal(result.stderr.split('\n').length, 2, `one line, got ${result.stderr.slice(0, 500)}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
