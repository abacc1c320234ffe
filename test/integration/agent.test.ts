/**
 * The real agent in a network-namespace lab with real traffic: MARK rules in
 * the gateway's mangle table (iptables and ip6tables), pings of known sizes
 * through the gateway, `markmeter run` (dist/cli.js) inside the gateway
 * namespace pushing OTLP to a receiver there, and every exported per-user
 * counter compared with what was sent, exactly.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { echoBytes, endProcess, GW_USERS_IFACE, Lab } from '../../src/demo/netns.js';
import { requireLab } from '../lab/gate.js';
import { NamespacedReceiver } from '../lab/otlp-receiver.js';

const CLI = resolve('dist/cli.js');

interface Expected {
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
  txBytes: number;
}
const zero = (): Expected => ({ rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 });

const USERS = {
  alice: { user_code: 'alice', user_intra_ip: '10.8.0.2' },
  bob: { user_code: 'bob', user_intra_ip: '10.8.0.3' },
  carol: { user_code: 'carol', user_intra_ip: 'fd00:8::2' },
  dave: { user_code: 'dave', user_intra_ip: '10.8.0.4' },
};
type Name = keyof typeof USERS;

const MARKS = [
  { mark_id: 101, sips: ['10.8.0.2'], dips: ['192.0.2.7'] },
  { mark_id: 102, sips: ['10.8.0.2'], dips: ['192.0.2.8'] },
  { mark_id: 103, sips: ['10.8.0.3'], dips: ['192.0.2.7'] },
  { mark_id: 201, sips: ['fd00:8::2'], dips: ['fd00:9::7'] },
];

describe('markmeter run in a namespace lab', { concurrency: false }, () => {
  let lab: Lab | undefined;
  let receiver: NamespacedReceiver;
  let agent: ChildProcess;
  let agentLog = '';
  let dir: string;
  let usersFile: string;
  let ready = false;
  const expected: Record<Name | 'unattributed', Expected> = { alice: zero(), bob: zero(), carol: zero(), dave: zero(), unattributed: zero() };

  /** Sends pings from a user and books them: requests count as tx, replies as rx. */
  async function traffic(who: Name | 'unattributed', source: string, to: string, count: number, size: number): Promise<void> {
    await lab!.ping({ from: 'users', source, to, count, size });
    const bytes = count * echoBytes(size, to.includes(':'));
    const e = expected[who];
    e.txPackets += count;
    e.rxPackets += count;
    e.txBytes += bytes;
    e.rxBytes += bytes;
  }

  function exported(name: Name): Expected | undefined {
    const attrs = { user_code: USERS[name].user_code, user_intra_ip: USERS[name].user_intra_ip };
    const rxPackets = receiver.latest('net_user_rx_packets', attrs);
    const txPackets = receiver.latest('net_user_tx_packets', attrs);
    const rxBytes = receiver.latest('net_user_rx_bytes', attrs);
    const txBytes = receiver.latest('net_user_tx_bytes', attrs);
    if ([rxPackets, txPackets, rxBytes, txBytes].includes(undefined)) return undefined;
    return { rxPackets: rxPackets!, txPackets: txPackets!, rxBytes: rxBytes!, txBytes: txBytes! };
  }

  function exportedUnattributed(): Expected {
    const get = (metric: string, direction: string) => receiver.latest(metric, { direction }) ?? NaN;
    return {
      rxPackets: get('markmeter_unattributed_packets', 'rx'),
      txPackets: get('markmeter_unattributed_packets', 'tx'),
      rxBytes: get('markmeter_unattributed_bytes', 'rx'),
      txBytes: get('markmeter_unattributed_bytes', 'tx'),
    };
  }

  /** Waits until the latest export of every listed user (and the unattributed totals) equals what was sent. */
  async function exportsMatch(names: Name[], timeoutMs = 15000): Promise<void> {
    const requestsBefore = receiver.requests.length;
    const check = () =>
      receiver.requests.length > requestsBefore &&
      names.every((n) => JSON.stringify(exported(n)) === JSON.stringify(expected[n])) &&
      JSON.stringify(exportedUnattributed()) === JSON.stringify(expected.unattributed);
    await receiver.waitFor(check, timeoutMs, () =>
      JSON.stringify({
        expected,
        exported: Object.fromEntries(names.map((n) => [n, exported(n)])),
        unattributed: exportedUnattributed(),
        log: agentLog.slice(-3000),
      }),
    );
  }

  async function writeUsers(users: (typeof USERS)[Name][], marks: object[]): Promise<void> {
    // An atomic replace, as a config manager does it.
    const temp = `${usersFile}.tmp`;
    await writeFile(temp, JSON.stringify({ users, marks }, null, 2));
    await rename(temp, usersFile);
  }

  before(async (t) => {
    if (!(await requireLab({ name: 'the namespace-lab integration test' }))) return;
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
    dir = await mkdtemp(join(tmpdir(), 'markmeter-it-'));
    usersFile = join(dir, 'users.json');
    lab = await Lab.create();
    const gw = lab.ns.gw;
    const v4 = (...args: string[]) => lab!.exec(gw, 'iptables', ['-t', 'mangle', ...args]);
    const v6 = (...args: string[]) => lab!.exec(gw, 'ip6tables', ['-t', 'mangle', ...args]);
    // alice: two marks, one per destination, in the builtin chains.
    for (const [mark, far] of [
      ['101', '192.0.2.7'],
      ['102', '192.0.2.8'],
    ]) {
      await v4('-A', 'POSTROUTING', '-s', '10.8.0.2', '-d', far!, '-j', 'MARK', '--set-mark', mark!);
      await v4('-A', 'PREROUTING', '-s', far!, '-d', '10.8.0.2', '-j', 'MARK', '--set-mark', mark!);
    }
    // bob: rules in custom chains jumped to from the builtin ones.
    await v4('-N', 'MM_RX');
    await v4('-N', 'MM_TX');
    await v4('-A', 'PREROUTING', '-j', 'MM_RX');
    await v4('-A', 'POSTROUTING', '-j', 'MM_TX');
    await v4('-A', 'MM_TX', '-s', '10.8.0.3', '-d', '192.0.2.7', '-m', 'comment', '--comment', 'user bob', '-j', 'MARK', '--set-xmark', '0x67/0xffffffff');
    await v4('-A', 'MM_RX', '-s', '192.0.2.7', '-d', '10.8.0.3', '-m', 'comment', '--comment', 'user bob', '-j', 'MARK', '--set-xmark', '0x67/0xffffffff');
    // dave: a mark the pool lacks, and not in the users document yet: unattributed.
    await v4('-A', 'POSTROUTING', '-s', '10.8.0.4', '-d', '192.0.2.7', '-j', 'MARK', '--set-mark', '104');
    await v4('-A', 'PREROUTING', '-s', '192.0.2.7', '-d', '10.8.0.4', '-j', 'MARK', '--set-mark', '104');
    // carol: an IPv6 user.
    await v6('-A', 'POSTROUTING', '-s', 'fd00:8::2', '-d', 'fd00:9::7', '-j', 'MARK', '--set-mark', '201');
    await v6('-A', 'PREROUTING', '-s', 'fd00:9::7', '-d', 'fd00:8::2', '-j', 'MARK', '--set-mark', '201');

    await writeUsers([USERS.alice, USERS.bob, USERS.carol], MARKS);
    const settings = join(dir, 'agent.json');
    await writeFile(
      settings,
      JSON.stringify({
        users: { file: usersFile, removedGraceMs: 2000 },
        collect: { intervalMs: 200 },
        interfaces: { names: [GW_USERS_IFACE] },
        log: { level: 'info' },
      }),
    );
    receiver = await NamespacedReceiver.start(lab, gw);
    agent = lab.spawn(gw, process.execPath, [CLI, 'run', '--config', settings], {
      env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_METRIC_EXPORT_INTERVAL: '300', OTEL_METRIC_EXPORT_TIMEOUT: '300' },
    });
    agent.stdout!.on('data', (chunk: Buffer) => (agentLog += chunk.toString()));
    agent.stderr!.on('data', (chunk: Buffer) => (agentLog += chunk.toString()));
    ready = true;
    void t;
  });

  after(async () => {
    await lab?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('every exported per-user packet and byte counter equals what was sent', async (t) => {
    if (!ready) return t.skip('lab not available');
    await traffic('alice', '10.8.0.2', '192.0.2.7', 5, 100);
    await traffic('alice', '10.8.0.2', '192.0.2.8', 3, 200);
    await traffic('bob', '10.8.0.3', '192.0.2.7', 4, 56);
    await traffic('carol', 'fd00:8::2', 'fd00:9::7', 6, 80);
    await traffic('unattributed', '10.8.0.4', '192.0.2.7', 2, 300);
    await exportsMatch(['alice', 'bob', 'carol']);
    assert.deepEqual(exported('alice'), { rxPackets: 8, txPackets: 8, rxBytes: 1324, txBytes: 1324 });
    assert.deepEqual([...receiver.encodings], ['protobuf'], 'http/protobuf is the default export protocol');
  });

  test('after iptables -Z the totals keep rising: nothing is lost, nothing goes back', async (t) => {
    if (!ready) return t.skip('lab not available');
    const before = exported('alice')!;
    await lab!.exec(lab!.ns.gw, 'iptables', ['-t', 'mangle', '-Z']);
    await lab!.exec(lab!.ns.gw, 'ip6tables', ['-t', 'mangle', '-Z']);
    await traffic('alice', '10.8.0.2', '192.0.2.7', 2, 100);
    await traffic('bob', '10.8.0.3', '192.0.2.7', 1, 56);
    await traffic('carol', 'fd00:8::2', 'fd00:9::7', 1, 80);
    await exportsMatch(['alice', 'bob', 'carol']);
    assert.ok(exported('alice')!.txPackets > before.txPackets);
  });

  test('a collector that is down loses no counts once it is back', async (t) => {
    if (!ready) return t.skip('lab not available');
    receiver.setStatus(503);
    await traffic('alice', '10.8.0.2', '192.0.2.8', 2, 200);
    const refusedBefore = receiver.refused;
    await sleep(1500);
    assert.ok(receiver.refused > refusedBefore, 'the agent kept trying while the collector was down');
    receiver.setStatus(200);
    await exportsMatch(['alice', 'bob', 'carol']);
    assert.match(agentLog, /OTLP push failed/);
  });

  test('a changed users document adds a user without a restart', async (t) => {
    if (!ready) return t.skip('lab not available');
    await writeUsers([USERS.alice, USERS.bob, USERS.carol, USERS.dave], [...MARKS, { mark_id: 104, sips: ['10.8.0.4'], dips: ['192.0.2.7'] }]);
    // dave's earlier traffic stays unattributed; from the sync on, his rules count for him.
    await exportsMatch(['alice', 'bob', 'carol', 'dave']);
    await traffic('dave', '10.8.0.4', '192.0.2.7', 3, 300);
    await exportsMatch(['alice', 'bob', 'carol', 'dave']);
    assert.deepEqual(exported('dave'), { rxPackets: 3, txPackets: 3, rxBytes: 984, txBytes: 984 });
  });

  test('a removed user is exported for the grace period, then not at all; the others continue', async (t) => {
    if (!ready) return t.skip('lab not available');
    await writeUsers([USERS.alice, USERS.carol, USERS.dave], MARKS.filter((m) => m.mark_id !== 103).concat({ mark_id: 104, sips: ['10.8.0.4'], dips: ['192.0.2.7'] }));
    const bobSeen = () => receiver.requests.at(-1)!.some((p) => p.attributes.user_code === 'bob');
    const removedAt = Date.now();
    await receiver.waitFor(() => !bobSeen(), 15000, () => 'bob is still exported');
    assert.ok(Date.now() - removedAt >= 1500, 'bob stayed for the grace period');
    // bob's traffic now is nobody's; the others' totals are unchanged and still exported.
    await traffic('unattributed', '10.8.0.3', '192.0.2.7', 1, 56);
    await traffic('alice', '10.8.0.2', '192.0.2.7', 1, 100);
    await exportsMatch(['alice', 'carol', 'dave']);
    assert.equal(bobSeen(), false);
  });

  test('the interface total counts at least what the users sent', async (t) => {
    if (!ready) return t.skip('lab not available');
    const sent = (['alice', 'bob', 'carol', 'dave', 'unattributed'] as const).reduce((n, k) => n + expected[k].txPackets, 0);
    const rx = receiver.latest('net_interface_rx_packets', { iface: GW_USERS_IFACE });
    assert.ok(rx !== undefined && rx >= sent, `net_interface_rx_packets{iface=${GW_USERS_IFACE}} = ${rx}, sent ${sent}`);
  });

  test('SIGTERM: a last reading is pushed and the agent exits 0 within a few seconds', async (t) => {
    if (!ready) return t.skip('lab not available');
    await traffic('alice', '10.8.0.2', '192.0.2.8', 1, 200);
    const requests = receiver.requests.length;
    const started = Date.now();
    const exit = new Promise<number | null>((resolveExit) => agent.once('exit', (code) => resolveExit(code)));
    agent.kill('SIGTERM');
    const code = await Promise.race([exit, sleep(8000).then(() => 'timeout' as const)]);
    if (code === 'timeout') await endProcess(agent);
    assert.equal(code, 0, agentLog.slice(-2000));
    assert.ok(Date.now() - started < 5000);
    assert.ok(receiver.requests.length > requests, 'the last reading was pushed');
    assert.deepEqual(exported('alice'), expected.alice);
    assert.match(agentLog, /SIGTERM received/);
  });
});
