import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseUsersDocument } from '../../src/config-manager/users-document.js';
import { UsersDocumentError } from '../../src/errors.js';

const SOURCE = '/etc/markmeter/users.json';

describe('parseUsersDocument', () => {
  test('accepts the DESIGN.md example, ignores extra fields, canonicalises addresses', () => {
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
});
