import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SettingsError } from '../../src/errors.js';
import { redactUrl } from '../../src/shared/redact.js';
import { loadSettings } from '../../src/settings.js';

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

test('a users.url that does not parse is a settings error that shows no credentials', () => {
  for (const url of ['http://user:secret@[::1/', 'ftp://user:secret@host/']) {
    assert.throws(
      () => loadSettings({ env: { MARKMETER_USERS_URL: url } }),
      (error: Error) => error instanceof SettingsError && /users\.url must be an http:\/\/ or https:\/\/ URL, got "\w+:\/\/\*\*\*@/.test(error.message) && !error.message.includes('secret'),
    );
  }
});
