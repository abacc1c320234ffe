import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redactUrl } from '../../src/redact.js';

test('redactUrl hides the userinfo of a URL and keeps the rest', () => {
  const cases: [string, string][] = [
    ['http://user:secret@127.0.0.1:8080/users?x=1', 'http://***@127.0.0.1:8080/users?x=1'],
    ['https://secret@host/', 'https://***@host/'],
    ['ftp://user:se@cr@et@host/p', 'ftp://***@host/p'],
    ['http://user:secret@[::1', 'http://***@[::1'],
    ['http://host/path@not-userinfo', 'http://host/path@not-userinfo'],
    ['http://127.0.0.1:9/v1/metrics', 'http://127.0.0.1:9/v1/metrics'],
    ['/etc/markmeter/users.json', '/etc/markmeter/users.json'],
  ];
  for (const [input, shown] of cases) assert.equal(redactUrl(input), shown, input);
});
