/**
 * Backend detection against real rules: iptables-legacy and iptables-nft
 * rules in a lab namespace, `markmeter snapshot` (no --input, iptables.backend
 * auto) run inside it, and the totals read from the backend that holds the rules.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, withCliLab } from './cli-lab.js';

test('auto picks the backend whose mangle table holds the rules', { timeout: 60_000 }, async (t) => {
  await withCliLab(t, async (lab, dir) => {
    const gw = lab.ns.gw;
    const users = join(dir, 'users.json');
    await writeFile(users, JSON.stringify({ users: [{ user_code: 'alice', user_intra_ip: '10.8.0.2' }, { user_code: 'bob', user_intra_ip: '10.8.0.3' }] }));
    const snapshot = async () => {
      const { stdout, stderr } = await lab.run(gw, process.execPath, [CLI, 'snapshot', '--users', users, '--format', 'json'], {
        env: { ...process.env, MARKMETER_IPV6: 'false' },
      });
      return { json: JSON.parse(stdout) as { users: { user_code: string; rx_packets: number; tx_packets: number }[] }, stderr };
    };
    const mark = (tool: string, chain: string, address: string, mark: string, packets: string, bytes: string) =>
      lab.exec(gw, tool, ['-t', 'mangle', '-A', chain, chain === 'PREROUTING' ? '-d' : '-s', address, '-c', packets, bytes, '-j', 'MARK', '--set-mark', mark]);

    // The tunnel client wrote legacy rules (the nft table is empty).
    await mark('iptables-legacy', 'PREROUTING', '10.8.0.2', '101', '7', '700');
    await mark('iptables-legacy', 'POSTROUTING', '10.8.0.2', '101', '9', '900');
    let run = await snapshot();
    assert.match(run.stderr, /reading the legacy iptables backend: the legacy table holds more rules \(nft: 0 rules, legacy: 2 rules\)/);
    assert.deepEqual(run.json.users.map((u) => [u.user_code, u.rx_packets, u.tx_packets]), [['alice', 7, 9], ['bob', 0, 0]]);

    // Now the nft table holds more: nft is read.
    for (const chain of ['PREROUTING', 'POSTROUTING', 'PREROUTING']) await mark('iptables-nft', chain, '10.8.0.3', '102', '4', '400');
    run = await snapshot();
    assert.match(run.stderr, /reading the nft iptables backend: the nft table holds at least as many rules \(nft: 3 rules, legacy: 2 rules\)/);
    assert.deepEqual(run.json.users.map((u) => [u.user_code, u.rx_packets, u.tx_packets]), [['alice', 0, 0], ['bob', 8, 4]]);

    // A fixed backend is read whatever the counts.
    const { stdout } = await lab.run(gw, process.execPath, [CLI, 'snapshot', '--users', users, '--format', 'json'], {
      env: { ...process.env, MARKMETER_IPV6: 'false', MARKMETER_IPTABLES_BACKEND: 'legacy' },
    });
    assert.equal((JSON.parse(stdout) as { users: { rx_packets: number }[] }).users[0]!.rx_packets, 7);
  });
});
