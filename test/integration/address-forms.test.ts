/**
 * IPv6 user addresses in the forms a users document may write them, against
 * the form ip6tables-save prints (glibc's inet_ntop, which ends IPv4-mapped and
 * IPv4-compatible addresses with a dotted quad). A user whose marks the pool
 * lacks is found by the rule's own addresses, so both must come out the same.
 * Real rules in a lab namespace, read by `markmeter snapshot` run inside it.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, withCliLab } from './cli-lab.js';

/** [as the users document writes it, as the rule is written with ip6tables]. */
const FORMS: [document: string, rule: string][] = [
  ['::ffff:10.0.0.1', '::ffff:a00:1'],
  ['::ffff:a00:2', '::ffff:10.0.0.2'],
  ['::10.0.0.3', '::a00:3'],
  ['::ffff:0.0.0.0', '::ffff:0:0'],
  ['::ffff:0:10.0.0.4', '::ffff:0:a00:4'],
  ['64:ff9b::10.1.2.3', '64:ff9b::a01:203'],
  ['FD00:0:0:0:0:0:0:2', 'fd00::2'],
  ['::2', '0:0:0:0:0:0:0:2'],
];

test('users are found by rule addresses whatever IPv6 form the document writes them in', { timeout: 60_000 }, async (t) => {
  await withCliLab(t, async (lab, dir) => {
    const gw = lab.ns.gw;
    const users = join(dir, 'users.json');
    await writeFile(users, JSON.stringify({ users: FORMS.map(([address], i) => ({ user_code: `u${i}`, user_intra_ip: address })) }));
    for (const [i, [, address]] of FORMS.entries()) {
      // No pool: the rule's -s names the user.
      await lab.exec(gw, 'ip6tables-legacy', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', address, '-c', String(i + 1), String(100 * (i + 1)), '-j', 'MARK', '--set-mark', String(200 + i)]);
    }
    const { stdout } = await lab.run(gw, process.execPath, [CLI, 'snapshot', '--users', users, '--format', 'json'], {
      env: { ...process.env, MARKMETER_IPV6: 'true', MARKMETER_IPTABLES_BACKEND: 'legacy' },
    });
    const printed = JSON.parse(stdout) as { users: { user_code: string; tx_packets: number; tx_bytes: number }[]; unattributed: { tx_packets: number } };
    assert.deepEqual(
      printed.users.map((u) => [u.user_code, u.tx_packets, u.tx_bytes]),
      FORMS.map((_, i) => [`u${i}`, i + 1, 100 * (i + 1)]),
    );
    assert.equal(printed.unattributed.tx_packets, 0);
  });
});
