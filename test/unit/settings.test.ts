import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SettingsError } from '../../src/errors.js';
import { describeSettings, loadSettings } from '../../src/settings.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-settings-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('loadSettings', () => {
  test('defaults match the documented settings table', () => {
    const s = loadSettings({ env: {} });
    assert.equal(s.users.file, '');
    assert.equal(s.collect.intervalMs, 5000);
    assert.equal(s.export.intervalMs, 15000);
    assert.equal(s.iptables.ipv6, true);
    assert.equal(s.users.removedGraceMs, 300000);
    assert.deepEqual(s.attribution, { rxChains: ['PREROUTING'], txChains: ['POSTROUTING'], breakdown: 'user' });
  });

  test('the shipped config/default.json and config/agent.yaml validate', () => {
    assert.equal(loadSettings({ file: 'config/default.json', env: {} }).users.file, 'config/users.example.json');
    assert.equal(loadSettings({ file: 'config/agent.yaml', env: {} }).users.file, '/etc/markmeter/users.json');
  });

  test('env vars are coerced and win over the file', async () => {
    const file = join(dir, 'a.yaml');
    await writeFile(file, 'collect:\n  intervalMs: 2000\niptables:\n  ipv6: true\n');
    const s = loadSettings({
      file,
      env: { MARKMETER_COLLECT_INTERVAL_MS: '750', MARKMETER_IPV6: 'false', OTEL_METRIC_EXPORT_INTERVAL: '1000', MARKMETER_INTERFACES: 'wg0, wg1' },
    });
    assert.equal(s.collect.intervalMs, 750);
    assert.equal(s.iptables.ipv6, false);
    assert.equal(s.export.intervalMs, 1000);
    assert.deepEqual(s.interfaces.names, ['wg0', 'wg1']);
  });

  test('export.protocol: protobuf by default; the signal-specific OTLP variable wins over the general one', () => {
    assert.equal(loadSettings({ env: {} }).export.protocol, 'http/protobuf');
    assert.equal(loadSettings({ env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' } }).export.protocol, 'http/json');
    assert.equal(
      loadSettings({ env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/protobuf' } }).export.protocol,
      'http/protobuf',
    );
    assert.throws(() => loadSettings({ env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' } }), /export\.protocol/);
  });

  const bad: [string, string, string, RegExp][] = [
    ['a misspelt key', 'b.json', '{"collect": {"intervalMS": 1000}}', /collect\.intervalMS.*not declared/],
    ['a string where a number belongs', 'c.json', '{"collect": {"intervalMs": "soon"}}', /collect\.intervalMs: must be a positive integer/],
    ['zero interval', 'd.yaml', 'export:\n  intervalMs: 0\n', /export\.intervalMs: must be a positive integer/],
    ['a bad interface name', 'e.json', '{"interfaces": {"names": ["../../etc"]}}', /interfaces\.names/],
    ['bad YAML', 'f.yaml', 'collect: [\n', /f\.yaml/],
    ['a bad log level', 'g.json', '{"log": {"level": "loud"}}', /log\.level/],
  ];
  for (const [name, fileName, text, message] of bad) {
    test(`rejects ${name} with one error naming the key`, async () => {
      const file = join(dir, fileName);
      await writeFile(file, text);
      assert.throws(
        () => loadSettings({ file, env: {} }),
        (error: unknown) => error instanceof SettingsError && message.test(error.message) && error.message.includes(file),
      );
    });
  }

  test('a missing settings file is an error', () => {
    assert.throws(() => loadSettings({ file: join(dir, 'nope.json'), env: {} }), /does not exist/);
  });

  test('a wrong-typed env var is an error naming the key', () => {
    assert.throws(() => loadSettings({ env: { MARKMETER_COLLECT_INTERVAL_MS: 'abc' } }), /collect\.intervalMs/);
  });

  test('users.url and users.file are one or the other; users.url must be http(s)', () => {
    assert.equal(loadSettings({ env: { MARKMETER_USERS_URL: 'https://cm.example/users.json' } }).users.url, 'https://cm.example/users.json');
    assert.throws(() => loadSettings({ env: { MARKMETER_USERS_URL: 'http://127.0.0.1:1/u', MARKMETER_USERS_FILE: '/x.json' } }), /set one/);
    assert.throws(() => loadSettings({ env: { MARKMETER_USERS_URL: 'ftp://127.0.0.1/u' } }), /http:\/\/ or https:\/\//);
  });

  test('every setting is documented with a doc string and an env var', () => {
    const rows = describeSettings();
    assert.ok(rows.length >= 14);
    for (const row of rows) {
      assert.ok(row.doc.length > 10, `${row.key} has a doc`);
      assert.ok(row.env.length > 0, `${row.key} has an env var`);
    }
  });
});
