/**
 * The real agent in a namespace lab through what used to over-count: a save
 * command that once printed nothing, a sibling rule deleted, the table flushed
 * and the rules added again. Every exported counter must equal the packets
 * sent, exactly.
 */
import assert from 'node:assert/strict';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { echoBytes, endProcess } from '../../src/demo/netns.js';
import { NamespacedReceiver } from '../lab/otlp-receiver.js';
import { CLI, withCliLab } from './cli-lab.js';

const ALICE = { user_code: 'alice', user_intra_ip: '10.8.0.2' };
const BOB = { user_code: 'bob', user_intra_ip: '10.8.0.3' };
type Counts = { rxPackets: number; txPackets: number; rxBytes: number; txBytes: number };

test('exact through an empty reading, a deleted sibling rule and a flushed table', { timeout: 120_000 }, async (t) => {
  await withCliLab(t, async (lab, dir) => {
    const gw = lab.ns.gw;
    const v4 = (...args: string[]) => lab.exec(gw, 'iptables', ['-t', 'mangle', ...args]);
    const aliceRules = [
      ['POSTROUTING', '-s', '10.8.0.2', '-d', '192.0.2.7', '-j', 'MARK', '--set-mark', '101'],
      ['PREROUTING', '-s', '192.0.2.7', '-d', '10.8.0.2', '-j', 'MARK', '--set-mark', '101'],
    ];
    // bob's upload: two rules that differ only in a length match (the big packets first).
    const bobBig = ['POSTROUTING', '-s', '10.8.0.3', '-d', '192.0.2.7', '-p', 'icmp', '-m', 'length', '--length', '201:65535', '-j', 'MARK', '--set-mark', '103'];
    const bobSmall = ['POSTROUTING', '-s', '10.8.0.3', '-d', '192.0.2.7', '-p', 'icmp', '-m', 'length', '--length', '0:200', '-j', 'MARK', '--set-mark', '103'];
    const bobRx = ['PREROUTING', '-s', '192.0.2.7', '-d', '10.8.0.3', '-j', 'MARK', '--set-mark', '103'];
    for (const rule of [...aliceRules, bobBig, bobSmall, bobRx]) await v4('-A', ...rule);

    const users = join(dir, 'users.json');
    await writeFile(users, JSON.stringify({ users: [ALICE, BOB] }));
    // The save command, through a wrapper that prints nothing (and exits 0) while a flag file exists.
    const flag = join(dir, 'print-nothing');
    const save = join(dir, 'save');
    await writeFile(save, `#!/bin/sh\nif [ -e '${flag}' ]; then echo '# nothing'; exit 0; fi\nexec iptables-save "$@"\n`);
    await chmod(save, 0o755);
    const settings = join(dir, 'agent.json');
    await writeFile(settings, JSON.stringify({ users: { file: users }, collect: { intervalMs: 200 }, iptables: { ipv6: false, saveCommand: save }, interfaces: { names: [] }, health: { listen: '' } }));

    const receiver = await NamespacedReceiver.start(lab, gw);
    const agent = lab.spawn(gw, process.execPath, [CLI, 'run', '--config', settings], {
      env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_METRIC_EXPORT_INTERVAL: '300', OTEL_METRIC_EXPORT_TIMEOUT: '300' },
    });
    let log = '';
    agent.stdout!.on('data', (chunk: Buffer) => (log += chunk.toString()));
    agent.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));

    const expected: Record<string, Counts> = {
      alice: { rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 },
      bob: { rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0 },
    };
    /** Pings from a user; `tx` false when no upload rule counts them any more. */
    const send = async (who: 'alice' | 'bob', count: number, size: number, tx = true) => {
      await lab.ping({ from: 'users', source: who === 'alice' ? ALICE.user_intra_ip : BOB.user_intra_ip, to: '192.0.2.7', count, size });
      const bytes = count * echoBytes(size, false);
      expected[who]!.rxPackets += count;
      expected[who]!.rxBytes += bytes;
      if (tx) {
        expected[who]!.txPackets += count;
        expected[who]!.txBytes += bytes;
      }
    };
    const exported = (user: typeof ALICE): Counts => ({
      rxPackets: receiver.latest('net_user_rx_packets', user) ?? NaN,
      txPackets: receiver.latest('net_user_tx_packets', user) ?? NaN,
      rxBytes: receiver.latest('net_user_rx_bytes', user) ?? NaN,
      txBytes: receiver.latest('net_user_tx_bytes', user) ?? NaN,
    });
    const exportsMatch = async (step: string) => {
      const since = receiver.requests.length;
      const now = () => ({ alice: exported(ALICE), bob: exported(BOB) });
      await receiver.waitFor(
        () => receiver.requests.length > since + 1 && JSON.stringify(now()) === JSON.stringify(expected),
        15000,
        () => `${step}: ${JSON.stringify({ expected, exported: now(), log: log.slice(-2000) })}`,
      );
    };

    try {
      await send('alice', 5, 100);
      await send('bob', 4, 300);
      await send('bob', 3, 56);
      await exportsMatch('first traffic');

      // The save command prints nothing for a while: failed readings, logged once, nothing counted twice.
      await writeFile(flag, '');
      await send('alice', 2, 100);
      await receiver.waitFor(() => /no \*mangle table/.test(log), 10000, () => log.slice(-2000));
      await sleep(600);
      await rm(flag);
      await exportsMatch('after the empty readings');
      assert.equal(log.match(/no \*mangle table/g)?.length, 1, 'the failure is logged once, not every reading');

      // bob's big-packet rule is deleted: the small-packet one keeps its own counter.
      await v4('-D', ...bobBig);
      await send('bob', 2, 56);
      await send('bob', 1, 300, false);
      await exportsMatch('after deleting a sibling rule');

      // The table flushed and filled again (counters start at zero): counted once.
      await v4('-F');
      await sleep(600);
      for (const rule of aliceRules) await v4('-A', ...rule);
      await send('alice', 3, 100);
      await exportsMatch('after a flush');
      assert.deepEqual(exported(ALICE), { rxPackets: 10, txPackets: 10, rxBytes: 1280, txBytes: 1280 });
    } finally {
      await endProcess(agent);
    }
  });
});
