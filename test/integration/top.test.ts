/**
 * `markmeter top` in a real pseudo-terminal (tmux) inside a namespace lab
 * with real traffic at two rates: the busiest user is first with a non-zero
 * rate, a filter narrows the view, q exits 0 and leaves the alternate screen;
 * without a terminal it prints plain tables.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Lab } from '../../src/demo/netns.js';
import { requireLab } from '../lab/gate.js';

const CLI = resolve('dist/cli.js');
const run = promisify(execFile);

describe('markmeter top', { concurrency: false }, () => {
  let lab: Lab | undefined;
  let dir: string;
  let users: string;
  const socket = `markmeter-test-${process.pid}`;
  const tmux = (...args: string[]) => run('tmux', ['-L', socket, ...args]).then((r) => r.stdout);

  before(async () => {
    if (!(await requireLab({ name: 'markmeter top tests' }))) return;
    try {
      await run('tmux', ['-V']);
    } catch {
      if (process.env.CI) throw new Error('tmux is not installed (apt-get install tmux)');
      return;
    }
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
    dir = await mkdtemp(join(tmpdir(), 'markmeter-top-'));
    users = join(dir, 'users.json');
    await writeFile(users, JSON.stringify({ users: [{ user_code: 'alice', user_intra_ip: '10.8.0.2' }, { user_code: 'bob', user_intra_ip: '10.8.0.3' }] }));
    lab = await Lab.create();
    for (const [ip, mark] of [
      ['10.8.0.2', '101'],
      ['10.8.0.3', '103'],
    ] as const) {
      await lab.exec(lab.ns.gw, 'iptables', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', ip, '-d', '192.0.2.7', '-j', 'MARK', '--set-mark', mark]);
      await lab.exec(lab.ns.gw, 'iptables', ['-t', 'mangle', '-A', 'PREROUTING', '-s', '192.0.2.7', '-d', ip, '-j', 'MARK', '--set-mark', mark]);
    }
    // Steady background traffic: alice about 50 echo requests/s, bob about 5.
    lab.spawn(lab.ns.users, 'ping', ['-q', '-i', '0.02', '-c', '3000', '-I', '10.8.0.2', '192.0.2.7']);
    lab.spawn(lab.ns.users, 'ping', ['-q', '-i', '0.2', '-c', '300', '-I', '10.8.0.3', '192.0.2.7']);
  });

  after(async () => {
    await run('tmux', ['-L', socket, 'kill-server']).catch(() => undefined);
    await lab?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('in a terminal: busiest first, / filters, q exits 0 and restores the screen', async (t) => {
    if (!lab) return t.skip('lab or tmux not available');
    await tmux('new-session', '-d', '-s', 'top', '-x', '120', '-y', '30', `ip netns exec ${lab.ns.gw} ${process.execPath} ${CLI} top --users ${users} --interval 1 ; echo EXIT=$? ; sleep 60`);
    const screen = () => tmux('capture-pane', '-p', '-t', 'top');
    const rows = (text: string) => text.split('\n').filter((l) => /^(alice|bob)\s/.test(l));
    let text = '';
    for (let i = 0; i < 40; i++) {
      await sleep(250);
      text = await screen();
      const first = rows(text)[0];
      if (first?.startsWith('alice') && !/^alice\s+\S+\s+0\.0 /.test(first)) break;
    }
    const first = rows(text)[0] ?? '';
    assert.match(first, /^alice\s+10\.8\.0\.2\s+(\d+(\.\d)?k?)\s/, text);
    const rx = Number(/^alice\s+\S+\s+(\d+(?:\.\d)?)/.exec(first)?.[1]);
    assert.ok(rx > 5, `alice's RX rate ${rx} pkt/s is busy:\n${text}`);
    assert.match(text, /^markmeter top {2}users 2 {2}total /m);
    assert.equal(await tmux('display', '-p', '-t', 'top', '#{alternate_on}').then((s) => s.trim()), '1', 'full screen');

    await tmux('send-keys', '-t', 'top', '/', 'b', 'o', 'b', 'Enter');
    await sleep(1500);
    text = await screen();
    assert.deepEqual(rows(text).map((r) => r.split(/\s+/)[0]), ['bob'], text);
    assert.match(text, /filter: bob/);

    await tmux('send-keys', '-t', 'top', 'q');
    for (let i = 0; i < 20 && !(await screen()).includes('EXIT='); i++) await sleep(250);
    text = await screen();
    assert.match(text, /EXIT=0/, text);
    assert.equal(await tmux('display', '-p', '-t', 'top', '#{alternate_on}').then((s) => s.trim()), '0', 'the terminal is restored');
  });

  test('without a terminal: one plain table per interval', async (t) => {
    if (!lab) return t.skip('lab or tmux not available');
    const child = lab.spawn(lab.ns.gw, process.execPath, [CLI, 'top', '--users', users, '--interval', '0.5']);
    const tables: string[][] = [];
    let current: string[] = [];
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (line === '') {
        if (current.length) tables.push(current);
        current = [];
      } else current.push(line);
    });
    for (let i = 0; i < 40 && tables.length < 3; i++) await sleep(250);
    child.kill('SIGINT');
    assert.ok(tables.length >= 2, `${tables.length} tables`);
    for (const table of tables) {
      assert.match(table[0]!, /^markmeter top {2}users 2 /);
      assert.match(table[2]!, /^USER\s+IP\s+RX pkt\/s\s+TX pkt\/s\s+RX bit\/s\s+TX bit\/s$/);
      assert.deepEqual(table.slice(3).map((l) => l.split(/\s+/)[0]).sort(), ['alice', 'bob']);
    }
    assert.equal(tables.at(-1)![3]!.split(/\s+/)[0], 'alice', 'busiest first');
  });
});
