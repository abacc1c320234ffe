import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
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

  test('the shipped config/agent.yaml validates', () => {
    assert.equal(loadSettings({ file: 'config/agent.yaml', env: {} }).users.file, '/etc/markmeter/users.json');
  });

  test('config/default.json holds every setting at its default and nothing else (so --config config/default.json changes nothing)', () => {
    const shipped = JSON.parse(readFileSync('config/default.json', 'utf8')) as unknown;
    assert.deepEqual(shipped, loadSettings({ env: {} }));
  });

  test("the README's settings table lists every setting with its env var and default", () => {
    const readme = readFileSync('README.md', 'utf8');
    const rows = new Map(
      [...readme.matchAll(/^\| `([\w.]+)` \| `(\w+)`[^|]*\| `([^`]*)`/gm)].map(([, key, env, shown]) => [key, { env, shown }] as const),
    );
    for (const row of describeSettings()) {
      const documented = rows.get(row.key);
      assert.ok(documented, `${row.key} is in the table`);
      assert.equal(documented.env, row.env, `${row.key}'s env var`);
      // Strings are shown bare except the empty one; numbers, booleans and lists as JSON.
      const expected = typeof row.default === 'string' && row.default !== '' ? row.default : JSON.stringify(row.default);
      assert.equal(documented.shown, expected, `${row.key}'s default`);
    }
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

  test('export.maxRequestBytes: 4 MiB by default, at least 64 KiB', () => {
    assert.equal(loadSettings({ env: {} }).export.maxRequestBytes, 4 * 1024 * 1024);
    assert.equal(loadSettings({ env: { MARKMETER_EXPORT_MAX_REQUEST_BYTES: '65536' } }).export.maxRequestBytes, 65536);
    assert.throws(
      () => loadSettings({ env: { MARKMETER_EXPORT_MAX_REQUEST_BYTES: '65535' } }),
      (error: unknown) => error instanceof SettingsError && /export\.maxRequestBytes is at least 65536 \(64 KiB\), got 65535/.test(error.message),
    );
    assert.throws(() => loadSettings({ env: { MARKMETER_EXPORT_MAX_REQUEST_BYTES: '4MB' } }), /export\.maxRequestBytes/);
  });

  test('users.url and users.file are one or the other; users.url must be http(s)', () => {
    assert.equal(loadSettings({ env: { MARKMETER_USERS_URL: 'https://cm.example/users.json' } }).users.url, 'https://cm.example/users.json');
    assert.throws(() => loadSettings({ env: { MARKMETER_USERS_URL: 'http://127.0.0.1:1/u', MARKMETER_USERS_FILE: '/x.json' } }), /set one/);
    assert.throws(() => loadSettings({ env: { MARKMETER_USERS_URL: 'ftp://127.0.0.1/u' } }), /http:\/\/ or https:\/\//);
  });

  test('a misspelt key is named with the closest known key', async () => {
    const cases: [string, RegExp][] = [
      ['{"users": {"flie": "/x.json"}}', /'users\.flie' not declared in the schema \(did you mean users\.file\?\)/],
      ['{"collect": {"intervalMS": 1000}}', /'collect\.intervalMS' not declared in the schema \(did you mean collect\.intervalMs\?\)/],
      ['{"colect": {"intervalMs": 1000}}', /'colect\.intervalMs' not declared in the schema \(did you mean collect\.intervalMs\?\)/],
      ['{"export": {"prometheus": {"prot": 9464}}}', /did you mean export\.prometheus\.port\?/],
    ];
    for (const [text, message] of cases) {
      const file = join(dir, 'typo.json');
      await writeFile(file, text);
      assert.throws(() => loadSettings({ file, env: {} }), (error: unknown) => error instanceof SettingsError && message.test(error.message), text);
    }
    // Nothing close: no guess.
    await writeFile(join(dir, 'far.json'), '{"zzzzzz": 1}');
    assert.throws(
      () => loadSettings({ file: join(dir, 'far.json'), env: {} }),
      (error: unknown) => error instanceof SettingsError && /'zzzzzz' not declared in the schema;/.test(error.message) && !/did you mean/.test(error.message),
    );
  });

  describe('the OTLP endpoint variables', () => {
    const bad: [string, string, RegExp][] = [
      ['OTEL_EXPORTER_OTLP_ENDPOINT', 'localhost:4318', /^settings: OTEL_EXPORTER_OTLP_ENDPOINT must be an http:\/\/ or https:\/\/ URL, the collector's base such as http:\/\/localhost:4318 \(\/v1\/metrics is added\), got "localhost:4318"/],
      ['OTEL_EXPORTER_OTLP_ENDPOINT', 'otel-collector', /OTEL_EXPORTER_OTLP_ENDPOINT must be an http:\/\/ or https:\/\/ URL.*got "otel-collector"/],
      ['OTEL_EXPORTER_OTLP_ENDPOINT', 'grpc://c:4317', /OTEL_EXPORTER_OTLP_ENDPOINT must be an http:\/\/ or https:\/\/ URL/],
      ['OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', 'localhost:4318/v1/metrics', /^settings: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT must be an http:\/\/ or https:\/\/ URL, the full metrics URL such as http:\/\/localhost:4318\/v1\/metrics \(used as it is\), got "localhost:4318\/v1\/metrics"/],
      ['OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', 'http://', /OTEL_EXPORTER_OTLP_METRICS_ENDPOINT must be/],
    ];
    for (const [variable, value, message] of bad) {
      test(`${variable}=${value} is a settings error naming the variable and the expected form`, () => {
        assert.throws(() => loadSettings({ env: { [variable]: value } }), (error: unknown) => error instanceof SettingsError && message.test(error.message));
      });
    }

    test('good forms pass; unset or empty means the default; credentials are not repeated', () => {
      for (const env of [
        {},
        { OTEL_EXPORTER_OTLP_ENDPOINT: '' },
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector:4318' },
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'https://collector.example/otlp/' },
        { OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://[::1]:4318/v1/metrics' },
      ]) {
        assert.doesNotThrow(() => loadSettings({ env }), JSON.stringify(env));
      }
      assert.throws(
        () => loadSettings({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://otlp:secret@c:4318' } }),
        (error: unknown) => error instanceof SettingsError && /got "ftp:\/\/\*\*\*@c:4318"/.test(error.message) && !/secret/.test(error.message),
      );
    });

    test('run with OTEL_EXPORTER_OTLP_ENDPOINT=localhost:4318 stops at start with that error, no stack trace', async () => {
      const child = promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'run'], {
        env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318', MARKMETER_HEALTH_LISTEN: '' },
        // Before the fix the agent started and kept running.
        timeout: 10_000,
        killSignal: 'SIGKILL',
      });
      const failed = await child.then(
        () => assert.fail('run started'),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
      assert.equal(failed.code, 1);
      assert.match(failed.stderr, /^markmeter: settings: OTEL_EXPORTER_OTLP_ENDPOINT must be an http:\/\/ or https:\/\/ URL/);
      assert.doesNotMatch(failed.stderr, /\n\s+at /, 'no stack trace');
    });
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
