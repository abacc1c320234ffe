/**
 * The real agent in a namespace lab through what used to count wrong: a save
 * command that once printed nothing, a sibling rule deleted, the table flushed
 * and the rules added again, a user added together with its rules, a mark
 * given to another user. Every exported counter must equal the packets sent,
 * exactly.
 */
import assert from 'node:assert/strict';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { echoBytes, endProcess, type Lab } from '../../src/demo/netns.js';
import { startAgent, withCliLab } from './cli-lab.js';

type User = { user_code: string; user_intra_ip: string };
type Counts = { rxPackets: number; txPackets: number; rxBytes: number; txBytes: number };
const ALICE = { user_code: 'alice', user_intra_ip: '10.8.0.2' };
const BOB = { user_code: 'bob', user_intra_ip: '10.8.0.3' };
const DAVE = { user_code: 'dave', user_intra_ip: '10.8.0.4', user_name: 'Dave Bowman' };
/** A user's MARK rules towards 192.0.2.7: upload in POSTROUTING, download in PREROUTING. */
const rulesOf = (ip: string, mark: string) => [
  ['POSTROUTING', '-s', ip, '-d', '192.0.2.7', '-j', 'MARK', '--set-mark', mark],
  ['PREROUTING', '-s', '192.0.2.7', '-d', ip, '-j', 'MARK', '--set-mark', mark],
];

/**
 * The agent running in the lab's gateway (its save command through a wrapper
 * that prints nothing while a flag file exists), pushing to a receiver there;
 * what was sent, per user, to compare with what it exports.
 */
async function agentLab(lab: Lab, dir: string, users: object | undefined) {
  const gw = lab.ns.gw;
  const usersFile = join(dir, 'users.json');
  const writeUsers = async (document: object) => {
    await writeFile(`${usersFile}.tmp`, JSON.stringify(document));
    await rename(`${usersFile}.tmp`, usersFile);
  };
  if (users) await writeUsers(users);
  const flag = join(dir, 'print-nothing');
  const save = join(dir, 'save');
  await writeFile(save, `#!/bin/sh\nif [ -e '${flag}' ]; then echo '# nothing'; exit 0; fi\nexec iptables-save "$@"\n`);
  await chmod(save, 0o755);
  const { receiver, agent, log } = await startAgent(lab, dir, {
    users: { file: users ? usersFile : '' },
    collect: { intervalMs: 200 },
    iptables: { ipv6: false, saveCommand: save },
    interfaces: { names: [] },
    health: { listen: '' },
  });

  const expected = new Map<string, Counts>();
  const sent = (user: User) => expected.get(user.user_code) ?? expected.set(user.user_code, { rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 }).get(user.user_code)!;
  /** Pings from `from`, booked for `to` (upload only when `tx`: no upload rule may count them any more). */
  const send = async (from: User, count: number, size: number, { to = from, tx = true } = {}) => {
    await lab.ping({ from: 'users', source: from.user_intra_ip, to: '192.0.2.7', count, size });
    const bytes = count * echoBytes(size, false);
    const e = sent(to);
    e.rxPackets += count;
    e.rxBytes += bytes;
    if (tx) {
      e.txPackets += count;
      e.txBytes += bytes;
    }
  };
  const exported = (user: User): Counts => ({
    rxPackets: receiver.latest('net_user_rx_packets', user) ?? NaN,
    txPackets: receiver.latest('net_user_tx_packets', user) ?? NaN,
    rxBytes: receiver.latest('net_user_rx_bytes', user) ?? NaN,
    txBytes: receiver.latest('net_user_tx_bytes', user) ?? NaN,
  });
  /** Waits until two more exports arrived and every listed user's latest export equals what was sent. */
  const exportsMatch = async (step: string, users: User[]) => {
    const since = receiver.requests.length;
    const now = () => Object.fromEntries(users.map((u) => [u.user_code, exported(u)]));
    const want = () => Object.fromEntries(users.map((u) => [u.user_code, sent(u)]));
    await receiver.waitFor(
      () => receiver.requests.length > since + 1 && JSON.stringify(now()) === JSON.stringify(want()),
      15000,
      () => `${step}: ${JSON.stringify({ expected: want(), exported: now(), log: log().slice(-2000) })}`,
    );
  };
  return {
    v4: (...args: string[]) => lab.exec(gw, 'iptables', ['-t', 'mangle', ...args]),
    flag,
    log,
    writeUsers,
    send,
    exported,
    exportsMatch,
    stop: () => endProcess(agent),
  };
}

const inLab = (t: TestContext, users: object | undefined, fn: (agent: Awaited<ReturnType<typeof agentLab>>) => Promise<void>) =>
  withCliLab(t, async (lab, dir) => {
    const agent = await agentLab(lab, dir, users);
    try {
      await fn(agent);
    } finally {
      await agent.stop();
    }
  });

test('exact through an empty reading, a deleted sibling rule and a flushed table', { timeout: 120_000 }, (t) =>
  inLab(t, { users: [ALICE, BOB] }, async ({ v4, flag, log, send, exported, exportsMatch }) => {
    // bob's upload: two rules that differ only in a length match (the big packets first).
    const bobBig = ['POSTROUTING', '-s', '10.8.0.3', '-d', '192.0.2.7', '-p', 'icmp', '-m', 'length', '--length', '201:65535', '-j', 'MARK', '--set-mark', '103'];
    const bobSmall = ['POSTROUTING', '-s', '10.8.0.3', '-d', '192.0.2.7', '-p', 'icmp', '-m', 'length', '--length', '0:200', '-j', 'MARK', '--set-mark', '103'];
    const bobRx = ['PREROUTING', '-s', '192.0.2.7', '-d', '10.8.0.3', '-j', 'MARK', '--set-mark', '103'];
    for (const rule of [...rulesOf('10.8.0.2', '101'), bobBig, bobSmall, bobRx]) await v4('-A', ...rule);

    await send(ALICE, 5, 100);
    await send(BOB, 4, 300);
    await send(BOB, 3, 56);
    await exportsMatch('first traffic', [ALICE, BOB]);

    // The save command prints nothing for a while: failed readings, logged once, nothing counted twice.
    await writeFile(flag, '');
    await send(ALICE, 2, 100);
    await (async () => {
      for (let waited = 0; !/no \*mangle table/.test(log()); waited += 100) {
        if (waited > 10000) throw new Error(`the empty reading was not logged: ${log().slice(-2000)}`);
        await sleep(100);
      }
    })();
    await sleep(600);
    await rm(flag);
    await exportsMatch('after the empty readings', [ALICE, BOB]);
    assert.equal(log().match(/no \*mangle table/g)?.length, 1, 'the failure is logged once, not every reading');

    // bob's big-packet rule is deleted: the small-packet one keeps its own counter.
    await v4('-D', ...bobBig);
    await send(BOB, 2, 56);
    await send(BOB, 1, 300, { tx: false });
    await exportsMatch('after deleting a sibling rule', [ALICE, BOB]);

    // The table flushed and filled again (counters start at zero): counted once.
    await v4('-F');
    await sleep(600);
    for (const rule of rulesOf('10.8.0.2', '101')) await v4('-A', ...rule);
    await send(ALICE, 3, 100);
    await exportsMatch('after a flush', [ALICE, BOB]);
    assert.deepEqual(exported(ALICE), { rxPackets: 10, txPackets: 10, rxBytes: 1280, txBytes: 1280 });
  }),
);

test("a user added with its rules gets its first packets; a mark given to another user carries only what comes after", { timeout: 120_000 }, (t) =>
  inLab(t, { users: [ALICE, BOB], marks: [{ mark_id: 101, sips: ['10.8.0.2'] }] }, async ({ v4, writeUsers, send, exported, exportsMatch }) => {
    for (const rule of [...rulesOf('10.8.0.2', '101'), ...rulesOf('10.8.0.4', '104')]) await v4('-A', ...rule);
    // dave's rules are there and busy before the users document names him: a reading comes between.
    await send(ALICE, 2, 100);
    await send(DAVE, 3, 200);
    await sleep(600);
    await writeUsers({ users: [ALICE, BOB, DAVE], marks: [{ mark_id: 101, sips: ['10.8.0.2'] }] });
    await send(DAVE, 1, 200);
    await exportsMatch('dave added', [ALICE, DAVE]);
    assert.equal(exported(DAVE).txPackets, 4, "dave's first packets are his (his series carry his user_name)");

    // Mark 101 (alice's rules) now belongs to bob: alice keeps what she had, bob gets only what comes after.
    await writeUsers({ users: [ALICE, BOB, DAVE], marks: [{ mark_id: 101, sips: ['10.8.0.3'] }] });
    await sleep(600);
    await send(ALICE, 3, 100, { to: BOB });
    await exportsMatch('mark 101 moved to bob', [ALICE, BOB, DAVE]);
    assert.equal(exported(ALICE).txPackets, 2);
    assert.equal(exported(BOB).txPackets, 3);
  }),
);

test('without a users document, each address its rules carry is a user (phase 1), exactly', { timeout: 120_000 }, (t) =>
  inLab(t, undefined, async ({ v4, send, exportsMatch }) => {
    for (const rule of [...rulesOf('10.8.0.2', '101'), ...rulesOf('10.8.0.3', '103')]) await v4('-A', ...rule);
    const byAddress = (ip: string) => ({ user_code: ip, user_intra_ip: ip });
    await send(byAddress('10.8.0.2'), 4, 100);
    await send(byAddress('10.8.0.3'), 2, 300);
    await exportsMatch('users by address', [byAddress('10.8.0.2'), byAddress('10.8.0.3')]);
  }),
);
