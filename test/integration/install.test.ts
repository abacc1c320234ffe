/**
 * The `markmeter` command as the README installs it: the package packed and
 * installed globally (here into a temporary prefix), run from outside the
 * clone; and the systemd unit it ships: systemd-analyze verifies it, and the
 * agent run with the unit's user and capabilities (uid 65534, ambient
 * CAP_NET_ADMIN and CAP_NET_RAW, no_new_privs) reads both backends' tables in
 * a lab exactly as root does.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { inCI, withLab } from '../lab/gate.js';

const run = promisify(execFile);
const FIXTURE = resolve('test/fixtures/nft-v4-users.iptables-save');
const version = (JSON.parse(await readFile('package.json', 'utf8')) as { version: string }).version;

/** The [Service] keys of a unit file (a key given twice keeps its last value). */
function serviceKeys(unit: string): Map<string, string> {
  const section = /^\[Service\]$([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(unit)?.[1] ?? '';
  return new Map(section.split('\n').filter((l) => /^\w+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

describe('markmeter installed from the package (npm pack, npm install -g)', () => {
  let dir = '';
  let bin = '';
  let installed = '';

  before(async () => {
    if (!existsSync('dist/cli.js')) throw new Error('dist/cli.js is missing: run npm run build first (npm test does)');
    dir = await mkdtemp(join(tmpdir(), 'markmeter-install-'));
    await chmod(dir, 0o755); // the unit's user (uid 65534) runs the installed copy below
    const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', dir]);
    const tarball = join(dir, stdout.trim().split('\n').pop()!);
    const prefix = join(dir, 'prefix');
    await run('npm', ['install', '--global', '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: dir });
    bin = join(prefix, 'bin', 'markmeter');
    installed = join(prefix, 'lib', 'node_modules', 'markmeter');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('markmeter --version, from outside the clone, prints the package version', async () => {
    const { stdout } = await run(bin, ['--version'], { cwd: dir });
    assert.equal(stdout.trim(), version);
    assert.equal((await lstat(installed)).isSymbolicLink(), false, 'a copy, not a link into the clone');
    for (const file of ['config/markmeter.service', 'config/agent.yaml', 'config/users.example.json']) assert.ok(existsSync(join(installed, file)), file);
  });

  test('markmeter snapshot --input the capture: every user by address, exact counters', async () => {
    const { stdout } = await run(bin, ['snapshot', '--input', FIXTURE, '--format', 'json'], { cwd: dir });
    const users = (JSON.parse(stdout) as { users: { user_intra_ip: string; rx_packets: number; tx_packets: number; rx_bytes: number; tx_bytes: number }[] }).users;
    // test/fixtures/README.md: 10.8.0.2 has marks 101 and 102 (lines 15, 16, 22, 23), 10.8.0.3 mark 103 and 0x10 (33, 34, 36).
    const row = (ip: string) => users.find((u) => u.user_intra_ip === ip);
    assert.deepEqual(row('10.8.0.2'), { user_code: '10.8.0.2', user_intra_ip: '10.8.0.2', rx_packets: 5, tx_packets: 5, rx_bytes: 508, tx_bytes: 508 });
    assert.deepEqual(row('10.8.0.3'), { user_code: '10.8.0.3', user_intra_ip: '10.8.0.3', rx_packets: 5, tx_packets: 4, rx_bytes: 1240, tx_bytes: 912 });
    const table = await run(bin, ['snapshot', '--input', FIXTURE, '--users', join(installed, 'config/users.example.json')], { cwd: dir });
    assert.match(table.stdout, /^alice +10\.8\.0\.2 +5 +5 +508 +508$/m);
  });

  test('config/markmeter.service: its own user, the image\'s two capabilities and no more, ambient, a clean stop', async () => {
    const unit = serviceKeys(await readFile(join(installed, 'config/markmeter.service'), 'utf8'));
    assert.equal(unit.get('User'), 'markmeter');
    const caps = (key: string) => unit.get(key)?.split(/\s+/).sort();
    assert.deepEqual(caps('AmbientCapabilities'), ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
    assert.deepEqual(caps('CapabilityBoundingSet'), ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
    assert.match(unit.get('ExecStart') ?? '', /^\/\S+\/markmeter run --config \/etc\/markmeter\/agent\.yaml$/);
    assert.equal(unit.get('KillMode'), 'mixed', 'SIGTERM to the agent only, not to its save command');
  });

  test('systemd-analyze verify accepts the unit without a warning', async (t) => {
    try {
      await run('systemd-analyze', ['--version']);
    } catch {
      if (inCI()) throw new Error('systemd-analyze is not installed (apt-get install systemd)');
      t.skip('systemd-analyze is not installed (apt-get install systemd)');
      return;
    }
    // The unit as installed, with ExecStart where this test installed the command.
    const unit = (await readFile(join(installed, 'config/markmeter.service'), 'utf8')).replace(/^ExecStart=\S+/m, `ExecStart=${bin}`);
    await mkdir(join(dir, 'unit'));
    const file = join(dir, 'unit', 'markmeter.service');
    await writeFile(file, unit);
    const { stdout, stderr } = await run('systemd-analyze', ['verify', file]);
    assert.equal(`${stdout}${stderr}`, '');
  });

  test('with the unit\'s user and capabilities, the agent reads nft and legacy tables as root does; without the capabilities it cannot', async (t) => {
    const unit = serviceKeys(await readFile(join(installed, 'config/markmeter.service'), 'utf8'));
    const caps = unit.get('AmbientCapabilities')!.split(/\s+/).map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');
    const asUser = ['--reuid=65534', '--regid=65534', '--clear-groups', ...(unit.get('NoNewPrivileges') === 'yes' ? ['--no-new-privs'] : [])];
    const asUnit = [...asUser, `--inh-caps=${caps}`, `--ambient-caps=${caps}`, `--bounding-set=-all,${unit.get('CapabilityBoundingSet')!.split(/\s+/).map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',')}`];
    await withLab(t, async (lab) => {
      await lab.exec(lab.ns.gw, 'iptables-nft', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', '10.8.0.2', '-j', 'MARK', '--set-mark', '101']);
      await lab.exec(lab.ns.gw, 'iptables-legacy', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', '10.8.0.3', '-j', 'MARK', '--set-mark', '102']);
      await lab.ping({ from: 'users', source: '10.8.0.2', to: '192.0.2.7', count: 3, size: 56 });
      await lab.ping({ from: 'users', source: '10.8.0.3', to: '192.0.2.7', count: 2, size: 56 });
      for (const [backend, ip, packets] of [['nft', '10.8.0.2', 3], ['legacy', '10.8.0.3', 2]] as const) {
        const env = { ...process.env, MARKMETER_IPTABLES_BACKEND: backend, MARKMETER_IPV6: 'false', MARKMETER_LOG_LEVEL: 'error' };
        const snapshot = (setpriv: string[]) => lab.run(lab.ns.gw, 'setpriv', [...setpriv, bin, 'snapshot', '--format', 'json'], { env, cwd: dir });
        const asRoot = await lab.exec(lab.ns.gw, bin, ['snapshot', '--format', 'json'], { env, cwd: dir });
        const users = (JSON.parse(asRoot) as { users: { user_intra_ip: string; tx_packets: number }[] }).users;
        assert.deepEqual(users.map((u) => [u.user_intra_ip, u.tx_packets]), [[ip, packets]], `${backend}: root's reading`);
        const withUnit = await snapshot(asUnit);
        assert.equal(withUnit.code, 0, `${backend} with the unit's capabilities: ${withUnit.stderr}`);
        assert.equal(withUnit.stdout, asRoot, backend);
        const without = await snapshot(asUser);
        assert.equal(without.code, 1, `${backend} without capabilities fails`);
        assert.match(without.stderr, /Permission denied|EPERM|not permitted/i, backend);
      }
    });
  });
});
