/**
 * The image's privilege model on a real kernel, without Docker: the
 * Dockerfile's own `setcap` lines applied to copies of the xtables binaries,
 * and the built CLI run as a non-root user in a lab whose bounding set is
 * what compose's cap_add grants. File capabilities are all or nothing: with
 * NET_ADMIN alone the nft tools (which carry only that) still read, and the
 * legacy tools (which carry both) are not even started.
 */
import assert from 'node:assert/strict';
import { copyFile, chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, withCliLab } from './cli-lab.js';

/** `setcap <caps> /usr/sbin/<binary>` lines of the Dockerfile. */
async function imageFileCaps(): Promise<Map<string, string>> {
  const dockerfile = await readFile('docker/Dockerfile', 'utf8');
  return new Map([...dockerfile.matchAll(/setcap (\S+) \/usr\/sbin\/(\S+)/g)].map((m) => [m[2]!, m[1]!]));
}

test('the image\'s file capabilities: both backends read with NET_ADMIN and NET_RAW granted; with NET_ADMIN alone nft still reads and legacy cannot start', async (t) => {
  const caps = await imageFileCaps();
  const bin = await mkdtemp(join(tmpdir(), 'markmeter-image-caps-'));
  try {
    await chmod(bin, 0o755);
    for (const [save, multi] of [['iptables-nft-save', 'xtables-nft-multi'], ['iptables-legacy-save', 'xtables-legacy-multi']] as const) {
      await copyFile(join('/usr/sbin', multi), join(bin, save));
      await chmod(join(bin, save), 0o755);
      execFileSync('setcap', [caps.get(multi)!, join(bin, save)]);
    }
    await withCliLab(t, async (lab, dir) => {
      await chmod(dir, 0o755);
      await lab.exec(lab.ns.gw, 'iptables-nft', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', '10.8.0.2', '-j', 'MARK', '--set-mark', '101']);
      await lab.exec(lab.ns.gw, 'iptables-legacy', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', '10.8.0.3', '-j', 'MARK', '--set-mark', '102']);
      await lab.ping({ from: 'users', source: '10.8.0.2', to: '192.0.2.7', count: 2, size: 56 });
      await lab.ping({ from: 'users', source: '10.8.0.3', to: '192.0.2.7', count: 3, size: 56 });
      const snapshot = (backend: string, granted: string) =>
        lab.run(lab.ns.gw, 'setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', `--bounding-set=-all,${granted}`, process.execPath, CLI, 'snapshot', '--format', 'json'], {
          env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, MARKMETER_IPTABLES_BACKEND: backend, MARKMETER_IPV6: 'false', MARKMETER_LOG_LEVEL: 'error' },
          cwd: dir,
        });
      const tx = (stdout: string) => (JSON.parse(stdout) as { users: { user_intra_ip: string; tx_packets: number }[] }).users.map((u) => [u.user_intra_ip, u.tx_packets]);
      for (const [backend, ip, packets] of [['nft', '10.8.0.2', 2], ['legacy', '10.8.0.3', 3]] as const) {
        const both = await snapshot(backend, '+net_admin,+net_raw');
        assert.equal(both.code, 0, `${backend}: ${both.stderr}`);
        assert.deepEqual(tx(both.stdout), [[ip, packets]], backend);
      }
      const nft = await snapshot('nft', '+net_admin');
      assert.equal(nft.code, 0, `nft with NET_ADMIN alone: ${nft.stderr}`);
      assert.deepEqual(tx(nft.stdout), [['10.8.0.2', 2]]);
      const legacy = await snapshot('legacy', '+net_admin');
      assert.equal(legacy.code, 1);
      assert.match(legacy.stderr, /the kernel refused to run iptables-legacy-save with its file capabilities \(EPERM\)/);
    });
  } finally {
    await rm(bin, { recursive: true, force: true });
  }
});
