/**
 * Every command reads through the same path (reading-path.ts): the users
 * source of the settings (file or URL) with limits.maxUsers, the mark map with
 * its breakdown, the sources. Run as the real CLI on a captured dump, with a
 * fake save command for top; and top's pure view functions.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildMarkMap } from '../../src/attribution/mark-map.js';
import { ratesBetween, render, type Screen } from '../../src/cli/top.js';
import { Accumulator } from '../../src/totals/accumulator.js';

const CLI = resolve('dist/cli.js');
const DUMP = resolve('test/fixtures/nft-v4-users.iptables-save');
// The capture's users (test/fixtures/README.md): alice owns marks 101 and 102.
const USERS = {
  users: [
    { user_code: 'alice', user_intra_ip: '10.8.0.2' },
    { user_code: 'bob', user_intra_ip: '10.8.0.3' },
  ],
  marks: [
    { mark_id: 101, sips: ['10.8.0.2'], dips: ['192.0.2.7'] },
    { mark_id: 102, sips: ['10.8.0.2'], dips: ['192.0.2.8'] },
  ],
};

/** Runs the built CLI to its end (or, with `until`, until its stdout matches, then ends it by PID). */
function markmeter(args: string[], env: Record<string, string>, until?: RegExp): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, MARKMETER_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (until?.test(stdout)) child.kill('SIGTERM');
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

const totalsOf = (json: string) => Object.fromEntries((JSON.parse(json) as { users: { user_code: string; tx_packets: number }[] }).users.map((u) => [u.user_code, u.tx_packets]));

let dir: string;
let usersFile: string;
let server: Server;
let url: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-path-'));
  usersFile = join(dir, 'users.json');
  await writeFile(usersFile, JSON.stringify(USERS));
  server = createServer((_request, response) => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(USERS)));
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/users.json`;
});
after(async () => {
  server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('snapshot reads through the common path', () => {
  test('with only users.url set, the users come over HTTP', async () => {
    const { code, stdout, stderr } = await markmeter(['snapshot', '--input', DUMP, '--format', 'json'], { MARKMETER_USERS_URL: url });
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, /no users document/);
    assert.deepEqual(totalsOf(stdout), { alice: 5, bob: 4 });
  });

  test('without a users document, users are known by the addresses their rules carry', async () => {
    const { code, stdout, stderr } = await markmeter(['snapshot', '--input', DUMP, '--format', 'json'], {});
    assert.equal(code, 0, stderr);
    const users = (JSON.parse(stdout) as { users: { user_code: string; user_intra_ip: string; rx_packets: number; tx_packets: number }[] }).users;
    assert.deepEqual(
      users.map((u) => [u.user_code, u.user_intra_ip, u.rx_packets, u.tx_packets]),
      [
        ['10.8.0.2', '10.8.0.2', 5, 5],
        ['10.8.0.3', '10.8.0.3', 5, 4],
        ['10.8.0.4', '10.8.0.4', 2, 2],
        ['10.8.0.5', '10.8.0.5', 1, 0],
      ],
    );
  });

  test('a display name is printed with its user (JSON user_name, and in the table)', async () => {
    const named = join(dir, 'named.json');
    await writeFile(named, JSON.stringify({ ...USERS, users: [{ ...USERS.users[0], user_name: 'Alice Liddell' }, USERS.users[1]] }));
    const json = await markmeter(['snapshot', '--input', DUMP, '--users', named, '--format', 'json'], {});
    assert.match(json.stdout, /\{"user_code":"alice","user_intra_ip":"10\.8\.0\.2","user_name":"Alice Liddell","rx_packets":5,/);
    const table = await markmeter(['snapshot', '--input', DUMP, '--users', named], {});
    assert.match(table.stdout, /^alice \(Alice Liddell\) +10\.8\.0\.2 +5 +5 /m);
  });

  test('limits.maxUsers: users beyond it are not printed and their traffic is unattributed', async () => {
    const { code, stdout, stderr } = await markmeter(['snapshot', '--input', DUMP, '--users', usersFile, '--format', 'json'], { MARKMETER_MAX_USERS: '1' });
    assert.equal(code, 0, stderr);
    assert.deepEqual(totalsOf(stdout), { alice: 5 });
    assert.match(stderr, /more than limits\.maxUsers \(1\)/);
    assert.ok((JSON.parse(stdout) as { unattributed: { tx_packets: number } }).unattributed.tx_packets >= 4, 'bob\'s upload is unattributed');
  });
});

describe('top reads through the common path', () => {
  const top = (env: Record<string, string>) =>
    markmeter(['top', '--users', usersFile, '--interval', '0.2'], { MARKMETER_IPTABLES_SAVE: resolve('test/bin/fake-iptables-save'), FAKE_SAVE_OUTPUT: DUMP, MARKMETER_IPV6: 'false', ...env }, /\n\n[^]*\n\n/);

  test('limits.maxUsers: one user shown', async () => {
    const { stdout } = await top({ MARKMETER_MAX_USERS: '1' });
    const first = stdout.split('\n\n')[0]!;
    assert.match(first, /users 1 /);
    assert.match(first, /^alice /m);
    assert.doesNotMatch(first, /^bob /m);
  });

  test('breakdown by mark: a row per mark of a user', async () => {
    const { stdout } = await top({ MARKMETER_BREAKDOWN: 'mark' });
    const first = stdout.split('\n\n')[0]!;
    assert.match(first, /^alice #101 192\.0\.2/m);
    assert.match(first, /^alice #102 192\.0\.2/m);
    assert.match(first, /^bob #- /m);
  });
});

describe('top view (pure)', () => {
  test('rates pair every series with itself: a user with two marks has two rows with their own rates', () => {
    const map = buildMarkMap({ source: 't', users: USERS.users, marks: USERS.marks }, 'mark');
    const accumulator = new Accumulator();
    accumulator.setUsers(map, 0);
    const add = accumulator.sinkFor(map);
    const before = new Map([...accumulator.users()].map((s) => [s, { ...s.totals }]));
    const mark = (id: string) => map.users.findIndex((u) => u.mark_id === id);
    add(mark('101'), 'tx', 10, 1000);
    add(mark('102'), 'tx', 5, 500);
    const rates = ratesBetween(before, [...accumulator.users()].map((series) => ({ series, totals: series.totals })), 1);
    const tx = Object.fromEntries(rates.map((r) => [r.label, r.txPps]));
    assert.equal(tx['alice #101 192.0.2.7'], 10);
    assert.equal(tx['alice #102 192.0.2.8'], 5);
    const screen: Screen = { rates, unattributedPps: 0, interfacePps: [], problem: '', sort: 'tx', filter: '', editing: false, width: 200, height: Infinity };
    const lines = render(screen);
    assert.match(lines[3]!, /^alice #101 192\.0\.2\.7 +10\.8\.0\.2 +0\.0 +10 /);
    assert.match(lines[4]!, /^alice #102 192\.0\.2\.8 +10\.8\.0\.2 +0\.0 +5\.0 /);
    assert.equal(render({ ...screen, filter: 'bob' }).length, 4, 'the filter keeps bob\'s row only');
    assert.doesNotMatch(lines[2]!, /DROP/, 'no drops column without the TC source');
  });

  test('with the TC source, a drops column: the shaper\'s drops per second', () => {
    const map = buildMarkMap({ source: 't', users: USERS.users, marks: [] });
    const accumulator = new Accumulator();
    accumulator.setUsers(map, 0);
    const [alice, bob] = [...accumulator.users()];
    const zero = { rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 };
    const before = new Map([[alice!, { ...zero, dropped: 0 }], [bob!, { ...zero, dropped: 10 }]]);
    const rates = ratesBetween(before, [{ series: alice!, totals: { ...zero, dropped: 0 } }, { series: bob!, totals: { ...zero, dropped: 30 } }], 2);
    const lines = render({ rates, unattributedPps: 0, interfacePps: [], problem: '', sort: 'user', filter: '', editing: false, width: 200, height: Infinity });
    assert.match(lines[2]!, /TX bit\/s +DROP\/s$/);
    assert.match(lines[4]!, /^bob .* 10$/);
  });

  test('a filter that matches no row says so under the header, instead of an empty table', () => {
    const map = buildMarkMap({ source: 't', users: USERS.users, marks: [] });
    const accumulator = new Accumulator();
    accumulator.setUsers(map, 0);
    const rates = ratesBetween(new Map(), [...accumulator.users()].map((series) => ({ series, totals: series.totals })), 1);
    const screen: Screen = { rates, unattributedPps: 0, interfacePps: [], problem: '', sort: 'total', filter: 'carol', editing: false, width: 200, height: Infinity };
    const lines = render(screen);
    assert.equal(lines.length, 4);
    assert.equal(lines[3], 'filter "carol" matches none of the 2 rows (user code, name or IP): / then Esc clears it');
    assert.equal(render({ ...screen, filter: 'bob' }).length, 4, 'a filter that matches shows the row, no note');
    assert.match(render({ ...screen, filter: 'bob' })[3]!, /^bob /);
    assert.equal(render({ ...screen, filter: 'carol', editing: true })[3], 'filter "carol" matches none of the 2 rows (user code, name or IP): Esc clears it');
  });
});
