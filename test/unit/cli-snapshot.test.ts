import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const FIXTURES = 'test/fixtures';

/** Runs the real CLI (TypeScript through tsx) and returns its exit code and output. */
async function markmeter(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { env: { ...process.env, MARKMETER_LOG_LEVEL: 'warn' } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let dir: string;
let users: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-cli-'));
  users = join(dir, 'users.json');
  await writeFile(
    users,
    JSON.stringify({
      users: [
        { user_code: 'alice', user_intra_ip: '10.8.0.2' },
        { user_code: 'bob', user_intra_ip: '10.8.0.3' },
        { user_code: 'carol', user_intra_ip: 'fd00:8::2' },
      ],
      marks: [{ mark_id: 101, sips: ['10.8.0.2'] }],
    }),
  );
});
after(() => rm(dir, { recursive: true, force: true }));

describe('markmeter snapshot', () => {
  test('--input/--input6 --format json prints exact per-user totals', async () => {
    const { code, stdout } = await markmeter(
      'snapshot',
      '--input', `${FIXTURES}/legacy-v4-users.iptables-save`,
      '--input6', `${FIXTURES}/legacy-v6-users.iptables-save`,
      '--users', users,
      '--format', 'json',
    );
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(stdout), {
      users: [
        { user_code: 'alice', user_intra_ip: '10.8.0.2', rx_packets: 5, tx_packets: 5, rx_bytes: 508, tx_bytes: 508 },
        { user_code: 'bob', user_intra_ip: '10.8.0.3', rx_packets: 5, tx_packets: 4, rx_bytes: 1240, tx_bytes: 912 },
        { user_code: 'carol', user_intra_ip: 'fd00:8::2', rx_packets: 3, tx_packets: 3, rx_bytes: 312, tx_bytes: 312 },
      ],
      // dave (10.8.0.4) is not in this document; 10.8.0.5 is nobody's.
      unattributed: { rx_packets: 3, tx_packets: 2, rx_bytes: 1384, tx_bytes: 856 },
    });
  });

  test('counters above 2^53 are printed exactly', async () => {
    const { code, stdout } = await markmeter('snapshot', '--input', `${FIXTURES}/nft-v4-huge-counters.iptables-save`, '--users', users, '--format', 'json');
    assert.equal(code, 0);
    // JSON.parse would round these: check the digits. alice's two upload rules
    // (2^53+1 and 2^53-1 packets; u64 max and 2^53-1 bytes) sum past u64: still exact.
    assert.match(stdout, /"user_code":"alice","user_intra_ip":"10.8.0.2","rx_packets":9007199254740992,"tx_packets":18014398509481984,"rx_bytes":9007199254740992,"tx_bytes":18455751272964292606\b/);
    assert.match(stdout, /"user_code":"bob",.*"tx_packets":18446744073709551615,"rx_bytes":0,"tx_bytes":18446744073709551615\b/);
  });

  test('the table format has a row per user and the unattributed row', async () => {
    const { code, stdout } = await markmeter('snapshot', '--input', `${FIXTURES}/nft-v4-users.iptables-save`, '--users', users);
    assert.equal(code, 0);
    const lines = stdout.trim().split('\n');
    assert.match(lines[0]!, /^USER_CODE\s+USER_INTRA_IP\s+RX_PACKETS\s+TX_PACKETS\s+RX_BYTES\s+TX_BYTES$/);
    assert.match(lines[1]!, /^alice\s+10\.8\.0\.2\s+5\s+5\s+508\s+508$/);
    assert.match(lines.at(-1)!, /^\(unattributed\)\s+-\s+3\s+2\s+1384\s+856$/);
  });

  test('a broken users document: exit 1, one message naming the file and field', async () => {
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{"users":[{"user_code":"x","user_intra_ip":"10.8.0"}]}');
    const { code, stdout, stderr } = await markmeter('snapshot', '--input', `${FIXTURES}/nft-v4-users.iptables-save`, '--users', bad);
    assert.equal(code, 1);
    assert.equal(stdout, '');
    assert.match(stderr, /users document .*bad\.json: users\[0\]\.user_intra_ip: must be an IPv4 or IPv6 address, got "10\.8\.0"/);
  });

  test('a users document past users.maxBytes (here a device that never ends): exit 1 naming the setting', async () => {
    const env = process.env.MARKMETER_USERS_MAX_BYTES;
    process.env.MARKMETER_USERS_MAX_BYTES = '4096';
    try {
      const { code, stdout, stderr } = await markmeter('snapshot', '--input', `${FIXTURES}/nft-v4-users.iptables-save`, '--users', '/dev/zero');
      assert.equal(code, 1);
      assert.equal(stdout, '');
      assert.match(stderr, /^markmeter: users document \/dev\/zero: .*users\.maxBytes \(4096 bytes\)/);
    } finally {
      if (env === undefined) delete process.env.MARKMETER_USERS_MAX_BYTES;
      else process.env.MARKMETER_USERS_MAX_BYTES = env;
    }
  });

  test('a dump that is not iptables-save output: exit 1 naming the line', async () => {
    const garbage = join(dir, 'garbage.txt');
    await writeFile(garbage, '<html>502 Bad Gateway</html>\n');
    const { code, stderr } = await markmeter('snapshot', '--input', garbage, '--users', users);
    assert.equal(code, 1);
    assert.match(stderr, /not an iptables-save line \(line 1/);
  });

  test('bad usage exits 2 with help; --help exits 0', async () => {
    assert.equal((await markmeter('snapshot', '--format', 'xml')).code, 2);
    assert.equal((await markmeter('snapshot', '--bogus')).code, 2);
    assert.equal((await markmeter('frobnicate')).code, 2);
    const help = await markmeter('snapshot', '--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--input6 FILE/);
    const runHelp = await markmeter('run', '--help');
    assert.equal(runHelp.code, 0);
    assert.match(runHelp.stdout, /users\.removedGraceMs/);
  });

  test('a settings file with a misspelt key: exit 1 naming the key', async () => {
    const settings = join(dir, 'settings.json');
    await writeFile(settings, '{"colect": {"intervalMs": 1}}');
    const { code, stderr } = await markmeter('snapshot', '--config', settings, '--input', `${FIXTURES}/nft-v4-empty.iptables-save`);
    assert.equal(code, 1);
    assert.match(stderr, /colect/);
  });
});

/** The built CLI with stdout a pipe that this test closes: at once, or after the first chunk. */
function withClosedStdout(args: string[], env: Record<string, string>, when: 'at once' | 'after the first chunk'): { child: ChildProcess; stderr: () => string } {
  const child = spawn(process.execPath, ['dist/cli.js', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  if (when === 'at once') child.stdout!.destroy();
  else child.stdout!.once('data', () => child.stdout!.destroy());
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return { child, stderr: () => stderr };
}

describe('a closed stdout (markmeter ... | head -1)', () => {
  test('snapshot stops writing and exits 0, quietly', async () => {
    // 20,000 users make a table of about 1.4 MB: written in many pieces, most after stdout is gone.
    const many = join(dir, 'many-users.json');
    await writeFile(many, JSON.stringify({ users: Array.from({ length: 20000 }, (_, i) => ({ user_code: `u${i}`, user_intra_ip: `10.9.${i >> 8}.${i & 255}` })) }));
    const { child, stderr } = withClosedStdout(['snapshot', '--input', `${FIXTURES}/nft-v4-users.iptables-save`, '--users', many], { MARKMETER_LOG_LEVEL: 'error' }, 'after the first chunk');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.equal(stderr(), '', 'no EPIPE, no stack trace');
  });

  test('run keeps running (its stdout log lines are not worth dying for) and SIGTERM still exits 0', async (t) => {
    const { child, stderr } = withClosedStdout(
      ['run'],
      {
        MARKMETER_USERS_FILE: users,
        MARKMETER_IPTABLES_SAVE: resolve('test/bin/fake-iptables-save'),
        MARKMETER_IPV6: 'false',
        FAKE_SAVE_OUTPUT: `${FIXTURES}/nft-v4-users.iptables-save`,
        MARKMETER_COLLECT_INTERVAL_MS: '100',
        MARKMETER_HEALTH_LISTEN: '',
        MARKMETER_INTERFACES: '',
        MARKMETER_LOG_LEVEL: 'info',
        OTEL_METRIC_EXPORT_INTERVAL: '300',
        OTEL_METRIC_EXPORT_TIMEOUT: '300',
        // Nothing listens there: pushes fail and are logged (on stderr).
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
      },
      'at once',
    );
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    // An info line, for the closed stdout.
    process.kill(child.pid!, 'SIGHUP');
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(child.exitCode, null, `still running after several readings; stderr: ${stderr()}`);
    process.kill(child.pid!, 'SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.doesNotMatch(stderr(), /EPIPE|Unhandled/);
    // Info lines moved to stderr once stdout was gone.
    assert.match(stderr(), /"level":"info","msg":"SIGHUP received/);
  });
});
