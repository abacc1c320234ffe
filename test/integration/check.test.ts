/**
 * `markmeter check` inside a namespace lab: healthy (exit 0), then each
 * failure it claims to detect (exit 1 with the message that says what to do).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Lab } from '../../src/demo/netns.js';
import { requireLab } from '../lab/gate.js';
import { NamespacedReceiver } from '../lab/otlp-receiver.js';

const CLI = resolve('dist/cli.js');

describe('markmeter check', { concurrency: false }, () => {
  let lab: Lab | undefined;
  let dir: string;
  let receiver: NamespacedReceiver;
  let ready = false;

  const USERS = { users: [{ user_code: 'alice', user_intra_ip: '10.8.0.2' }], marks: [{ mark_id: 101, sips: ['10.8.0.2'], dips: ['192.0.2.7'] }] };

  /** Runs check in a namespace with settings (written as JSON) and env; returns the exit code and output. */
  async function check(settings: object, env: Record<string, string> = {}, ns = lab!.ns.gw) {
    const file = join(dir, `settings-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(file, JSON.stringify(settings));
    const result = await lab!.run(ns, process.execPath, [CLI, 'check', '--config', file], {
      env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, MARKMETER_IPV6: 'false', ...env },
    });
    return { code: result.code, out: result.stdout + result.stderr };
  }

  const healthy = () => ({ users: { file: join(dir, 'users.json') }, interfaces: { names: ['gu0'] }, health: { listen: '' } });

  before(async () => {
    if (!(await requireLab({ name: 'markmeter check tests' }))) return;
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
    dir = await mkdtemp(join(tmpdir(), 'markmeter-check-'));
    await writeFile(join(dir, 'users.json'), JSON.stringify(USERS));
    lab = await Lab.create();
    await lab.exec(lab.ns.gw, 'iptables', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', '10.8.0.2', '-d', '192.0.2.7', '-j', 'MARK', '--set-mark', '101']);
    await lab.exec(lab.ns.gw, 'iptables', ['-t', 'mangle', '-A', 'PREROUTING', '-s', '192.0.2.7', '-d', '10.8.0.2', '-j', 'MARK', '--set-mark', '101']);
    receiver = await NamespacedReceiver.start(lab, 'gw');
    ready = true;
  });

  after(async () => {
    await lab?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a healthy gateway: every check passes, exit 0', async (t) => {
    if (!ready) return t.skip('lab not available');
    const { code, out } = await check(healthy());
    assert.equal(code, 0, out);
    assert.match(out, /^ok {4}settings: valid .*not default: .*users\.file=.*\(file /m);
    assert.match(out, /^ok {4}iptables: nft 2 rules, legacy 0 rules in the mangle table; auto reads nft$/m);
    assert.match(out, /^ok {4}users document: .*users\.json: 1 users, 1 marks$/m);
    assert.match(out, /^ok {4}attribution \(ipv4\): 2 MARK rules, 2 attributed$/m);
    assert.match(out, /^ok {4}interfaces: gu0$/m);
    assert.match(out, /^ok {4}otlp endpoint: http:\/\/127\.0\.0\.1:\d+\/v1\/metrics accepted an export \(HTTP 200\)$/m);
  });

  const failures: [string, () => object, Record<string, string>, RegExp][] = [
    ['settings that do not validate', () => ({ colect: {} }), {}, /^FAIL {2}settings \(\S+settings-\w+\.json\): configuration param 'colect' not declared in the schema \(did you mean collect\?\)/m],
    ['a broken users document', () => ({ ...healthy(), users: { file: join(dir, 'broken.json') } }), {}, /^FAIL {2}users document: .*broken\.json.*cannot be read \(ENOENT\)/m],
    ['a missing interface', () => ({ ...healthy(), interfaces: { names: ['wg0'] } }), {}, /^FAIL {2}interfaces: not found: wg0: fix interfaces\.names \(this namespace has: .*gu0/m],
    ['a collector that is down', healthy, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' }, /^FAIL {2}otlp endpoint: http:\/\/127\.0\.0\.1:9\/v1\/metrics: cannot connect \(ECONNREFUSED\): start the collector/m],
    ['an OTLP endpoint without a scheme', healthy, { OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318' }, /^FAIL {2}settings: OTEL_EXPORTER_OTLP_ENDPOINT must be an http:\/\/ or https:\/\/ URL, the collector's base such as http:\/\/localhost:4318 \(\/v1\/metrics is added\), got "localhost:4318"$/m],
    ['a metrics endpoint without a scheme', healthy, { OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'localhost:4318/v1/metrics' }, /^FAIL {2}settings: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT must be an http:\/\/ or https:\/\/ URL, the full metrics URL/m],
    ['a mark no user owns', () => ({ ...healthy(), users: { file: join(dir, 'nobody.json') } }), {}, /^FAIL {2}attribution \(ipv4\): 2 MARK rules, 0 attributed; 2 owned by no user \(marks 101\): add those users or marks/m],
  ];
  for (const [name, settings, env, message] of failures) {
    test(`${name}: exit 1 with the message`, async (t) => {
      if (!ready) return t.skip('lab not available');
      await writeFile(join(dir, 'nobody.json'), JSON.stringify({ users: [{ user_code: 'zed', user_intra_ip: '10.8.0.9' }] }));
      const { code, out } = await check(settings(), env);
      assert.equal(code, 1, out);
      assert.match(out, message);
      assert.doesNotMatch(out, /unexpected error|\n\s+at /, 'no crash, no stack trace');
    });
  }

  test('with the TC source: each device, its classes and the classes no user owns; a device that is not there fails', async (t) => {
    if (!ready) return t.skip('lab not available');
    const tc = (...args: string[]) => lab!.exec(lab!.ns.gw, 'tc', args);
    await tc('qdisc', 'add', 'dev', 'gf0', 'root', 'handle', '1:', 'htb', 'default', '99');
    try {
      await tc('class', 'add', 'dev', 'gf0', 'parent', '1:', 'classid', '1:1', 'htb', 'rate', '100mbit');
      for (const id of ['1:10', '1:99']) await tc('class', 'add', 'dev', 'gf0', 'parent', '1:1', 'classid', id, 'htb', 'rate', '10mbit');
      await tc('filter', 'add', 'dev', 'gf0', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip', 'src', '10.8.0.2/32', 'flowid', '1:10');
      const { code, out } = await check({ ...healthy(), collect: { sources: ['iptables', 'tc'] }, tc: { devices: [{ name: 'gf0', direction: 'tx' }, { name: 'nope0', direction: 'rx' }] } });
      assert.equal(code, 1, out);
      assert.match(out, /^ok {4}attribution \(tc gf0\): 3 classes, 2 leaf classes counted, 1 owned by a user; 1 owned by no user \(1:99\): tie each/m);
      assert.match(out, /^FAIL {2}attribution \(tc nope0\): tc -s class show dev nope0 exited with code 1: Cannot find device "nope0"; check that tc\.devices names devices/m);
    } finally {
      await tc('qdisc', 'del', 'dev', 'gf0', 'root');
    }
  });

  test('no iptables binaries: exit 1, saying to install them', async (t) => {
    if (!ready) return t.skip('lab not available');
    const file = join(dir, 'no-path.json');
    await writeFile(file, JSON.stringify(healthy()));
    // PATH is emptied inside the namespace only, for markmeter and what it starts.
    const result = await lab!.run(lab!.ns.gw, '/usr/bin/env', ['PATH=/nonexistent', process.execPath, CLI, 'check', '--config', file], {
      env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, MARKMETER_IPV6: 'false' },
    });
    const code = result.code;
    const out = result.stdout + result.stderr;
    assert.equal(code, 1, out);
    // The first backend's own error, not a guess.
    assert.match(out, /^FAIL {2}iptables: nft cannot be read, legacy cannot be read: iptables-nft-save was not found: install iptables \(Debian's package has both backends\)/m);
  });

  test('one backend that cannot be read: the line says why', async (t) => {
    if (!ready) return t.skip('lab not available');
    // Only the nft save command on PATH (the multi-binary picks its tool by the name it is run as).
    const bin = join(dir, 'nft-only');
    await mkdir(bin, { recursive: true });
    await symlink('/usr/sbin/xtables-nft-multi', join(bin, 'iptables-nft-save')).catch(() => {});
    const file = join(dir, 'nft-only.json');
    await writeFile(file, JSON.stringify(healthy()));
    const result = await lab!.run(lab!.ns.gw, '/usr/bin/env', [`PATH=${bin}`, process.execPath, CLI, 'check', '--config', file], {
      env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, MARKMETER_IPV6: 'false' },
    });
    const out = result.stdout + result.stderr;
    assert.match(out, /^ok {4}iptables: nft 2 rules, legacy cannot be read in the mangle table; auto reads nft \(legacy cannot be read: iptables-legacy-save was not found: install iptables/m);
    // The backend set is the one read: that it cannot be read fails, whatever the other holds.
    await writeFile(file, JSON.stringify({ ...healthy(), iptables: { backend: 'legacy' } }));
    const fixed = await lab!.run(lab!.ns.gw, '/usr/bin/env', [`PATH=${bin}`, process.execPath, CLI, 'check', '--config', file], {
      env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, MARKMETER_IPV6: 'false' },
    });
    assert.match(fixed.stdout, /^FAIL {2}iptables: nft 2 rules, legacy cannot be read in the mangle table; iptables\.backend is legacy, which cannot be read: iptables-legacy-save was not found/m);
  });

  test('iptables.backend set to the empty backend while the other holds the rules: fail, saying which to set', async (t) => {
    if (!ready) return t.skip('lab not available');
    const { code, out } = await check({ ...healthy(), iptables: { backend: 'legacy' } });
    assert.equal(code, 1, out);
    assert.match(out, /^FAIL {2}iptables: nft 2 rules, legacy 0 rules in the mangle table; iptables\.backend is legacy, whose table is empty: set iptables\.backend to nft or auto$/m);
  });

  test('MARK rules in both backends: a warning that the other backend\'s rules are not read (exit 0)', async (t) => {
    if (!ready) return t.skip('lab not available');
    const rule = ['-t', 'mangle', 'POSTROUTING', '-s', '10.8.0.3', '-d', '192.0.2.7', '-j', 'MARK', '--set-mark', '102'];
    const legacy = (op: string) => lab!.exec(lab!.ns.gw, 'iptables-legacy', [rule[0]!, rule[1]!, op, ...rule.slice(2)]);
    await legacy('-A');
    try {
      const { code, out } = await check(healthy());
      assert.equal(code, 0, out);
      assert.match(out, /^WARN {2}iptables: nft 2 rules, legacy 1 rules in the mangle table; auto reads nft, but legacy holds 1 MARK rules too, which are not read: their traffic is not counted; remove them or have the tunnel client write every rule to nft$/m);
      const fixed = await check({ ...healthy(), iptables: { backend: 'nft' } });
      assert.match(fixed.out, /^WARN {2}iptables: .*; iptables\.backend is nft, but legacy holds 1 MARK rules too, which are not read/m);
    } finally {
      await legacy('-D');
    }
  });

  test('iptables.saveCommand set: the iptables line reads that command, not the backends', async (t) => {
    if (!ready) return t.skip('lab not available');
    const fake = resolve('test/bin/fake-iptables-save');
    const settings = { ...healthy(), iptables: { saveCommand: fake } };
    const { out } = await check(settings, { FAKE_SAVE_OUTPUT: resolve('test/fixtures/nft-v4-users.iptables-save') });
    assert.match(out, new RegExp(`^ok {4}iptables: iptables\\.saveCommand ${fake}: 22 rules \\(12 MARK rules\\) in the mangle table$`, 'm'));
    const failing = await check(settings, { FAKE_SAVE_EXIT: '4' });
    assert.match(failing.out, new RegExp(`^FAIL {2}iptables: iptables\\.saveCommand ${fake} cannot be read: ${fake} -c -t mangle exited with code 4`, 'm'));
  });

  test('credentials in users.url and users.token are printed nowhere', async (t) => {
    if (!ready) return t.skip('lab not available');
    const settings = { interfaces: { names: ['gu0'] }, health: { listen: '' } };
    // A closed port: the users document cannot be fetched, so its error is printed too.
    const env = { MARKMETER_USERS_URL: 'http://user:secret@127.0.0.1:9/users', MARKMETER_USERS_TOKEN: 'tokensecret' };
    const { code, out } = await check(settings, env);
    assert.equal(code, 1, out);
    assert.match(out, /^ok {4}settings: .*users\.url="http:\/\/\*\*\*@127\.0\.0\.1:9\/users" \(env MARKMETER_USERS_URL\)/m);
    assert.match(out, /^FAIL {2}users document: .*http:\/\/127\.0\.0\.1:9\/users: cannot be fetched \(ECONNREFUSED\)/m);
    assert.doesNotMatch(out, /secret/);
    const invalid = await check(settings, { MARKMETER_USERS_URL: 'ftp://user:secret@127.0.0.1:9/users' });
    assert.match(invalid.out, /^FAIL {2}settings: .*users\.url must be an http:\/\/ or https:\/\/ URL, got "ftp:\/\/\*\*\*@127\.0\.0\.1:9\/users"/m);
    assert.doesNotMatch(invalid.out, /secret/);
    const endpoint = await check(healthy(), { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otlp:secret@127.0.0.1:9' });
    assert.match(endpoint.out, /^FAIL {2}otlp endpoint: http:\/\/\*\*\*@127\.0\.0\.1:9\/v1\/metrics: cannot connect/m);
    assert.doesNotMatch(endpoint.out, /secret/);
  });

  /** Runs check under setpriv (changed uid, capabilities or no_new_privs), with `path` first on PATH. */
  async function checkUnder(setpriv: string[], path = '') {
    // The unprivileged user must be able to read the settings and the users document.
    await chmod(dir, 0o755);
    const file = join(dir, `settings-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(file, JSON.stringify(healthy()), { mode: 0o644 });
    const env = { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, MARKMETER_IPV6: 'false', PATH: `${path}${process.env.PATH}` };
    const result = await lab!.run(lab!.ns.gw, 'setpriv', [...setpriv, process.execPath, CLI, 'check', '--config', file], { env });
    return { code: result.code, out: result.stdout + result.stderr };
  }
  const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

  test('no-new-privileges as a non-root user: the privileges line names it and both ways out', async (t) => {
    if (!ready) return t.skip('lab not available');
    const { code, out } = await checkUnder([...NOBODY, '--no-new-privs']);
    assert.equal(code, 1, out);
    assert.match(out, /^FAIL {2}iptables: nft cannot be read, legacy cannot be read: no-new-privileges keeps the capabilities from iptables-save \(see privileges\)$/m);
    assert.match(out, /^FAIL {2}privileges: no-new-privileges is set \(NoNewPrivs: 1\) and uid 65534 holds neither CAP_NET_ADMIN nor CAP_NET_RAW: .*drop the no-new-privileges security option.*run as uid 0 .*cap_drop: \[ALL\], cap_add: \[NET_ADMIN, NET_RAW\]/m);
    assert.doesNotMatch(out, /run with CAP_NET_ADMIN/);
  });

  test('the image\'s way: a non-root user and save commands with file capabilities pass', async (t) => {
    if (!ready) return t.skip('lab not available');
    const bin = join(dir, 'bin');
    await mkdir(bin, { recursive: true, mode: 0o755 });
    for (const [name, multi] of [['iptables-nft-save', 'xtables-nft-multi'], ['iptables-legacy-save', 'xtables-legacy-multi']] as const) {
      await copyFile(join('/usr/sbin', multi), join(bin, name));
      await chmod(join(bin, name), 0o755);
      execFileSync('setcap', ['cap_net_admin,cap_net_raw+ep', join(bin, name)]);
    }
    const { code, out } = await checkUnder(NOBODY, `${bin}:`);
    assert.equal(code, 0, out);
    assert.match(out, /^ok {4}iptables: nft 2 rules, legacy 0 rules/m);
    assert.match(out, /^ok {4}privileges: uid 65534; .*no-new-privileges is off, so iptables-save gets them from its file capabilities$/m);
  });

  test('uid 0 with only NET_ADMIN and NET_RAW under no-new-privileges passes', async (t) => {
    if (!ready) return t.skip('lab not available');
    const { code, out } = await checkUnder(['--bounding-set=-all,+net_admin,+net_raw', '--inh-caps=-all', '--no-new-privs']);
    assert.equal(code, 0, out);
    assert.match(out, /^ok {4}privileges: uid 0 holds CAP_NET_ADMIN and CAP_NET_RAW \(so no-new-privileges does not matter\)$/m);
  });

  test('no rules in either backend (not the tunnel client\'s namespace): exit 1', async (t) => {
    if (!ready) return t.skip('lab not available');
    const { code, out } = await check({ ...healthy(), interfaces: { names: ['f0'] } }, {}, lab!.ns.far);
    assert.equal(code, 1, out);
    assert.match(out, /^FAIL {2}iptables: nft 0 rules, legacy 0 rules in the mangle table: is the tunnel client running in this network namespace\?$/m);
  });
});
