import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Accumulator } from '../../src/totals/accumulator.js';
import { buildMarkMap } from '../../src/attribution/mark-map.js';
import { Collector } from '../../src/sources/collect.js';
import { IptablesSource, saveCommandDump } from '../../src/sources/iptables/source.js';
import { DumpError, ParseError } from '../../src/errors.js';
import { execaRunner, readTableDump, type CommandRunner } from '../../src/sources/iptables/save-command.js';
import { parseIptablesSave, SaveModelBuilder } from '../../src/sources/iptables/model.js';
import { labGate } from '../lab/gate.js';

// A tiny real program that prints a file and exits with a chosen code, so the
// execa wiring runs for real without root (see test/bin/fake-iptables-save).
const FAKE = resolve('test/bin/fake-iptables-save');
const RUN = { timeoutMs: 2000, maxOutputBytes: 1 << 20 };

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-dump-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const DUMP = `*mangle
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
[7:588] -A PREROUTING -d 10.8.0.2/32 -j MARK --set-xmark 0x65/0xffffffff
COMMIT
`;

function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  return fn().finally(() => {
    for (const key of Object.keys(env)) delete process.env[key];
    Object.assign(process.env, saved);
  });
}

describe('readTableDump with the real execa runner', () => {
  test('runs <command> -c -t <table> and parses its output', async () => {
    const file = join(dir, 'ok.txt');
    await writeFile(file, DUMP);
    const args: string[] = [];
    const recording: CommandRunner = (f, a, o, onOutput) => {
      args.push(f, ...a);
      return execaRunner(f, a, o, onOutput);
    };
    const model = new SaveModelBuilder();
    await withEnv({ FAKE_SAVE_OUTPUT: file }, () => readTableDump({ command: FAKE, table: 'mangle' }, RUN, model, recording));
    assert.deepEqual(model.tables, parseIptablesSave(DUMP));
    assert.deepEqual(args, [FAKE, '-c', '-t', 'mangle']);
  });

  test('a large dump arrives in many chunks and parses exactly as a whole', async () => {
    const rules = Array.from({ length: 20000 }, (_, i) => `[${i}:${i * 84}] -A PREROUTING -d 10.9.${i >> 8}.${i & 255}/32 -m comment --comment "user u${i}" -j MARK --set-xmark 0x${i.toString(16)}/0xffffffff`);
    const text = `*mangle\n:PREROUTING ACCEPT [0:0]\n${rules.join('\n')}\nCOMMIT\n`;
    const file = join(dir, 'large.txt');
    await writeFile(file, text);
    let chunks = 0;
    const counting: CommandRunner = (f, a, o, onOutput) => execaRunner(f, a, o, (chunk) => (chunks++, onOutput(chunk)));
    const model = new SaveModelBuilder();
    await withEnv({ FAKE_SAVE_OUTPUT: file }, () => readTableDump({ command: FAKE, table: 'mangle' }, { ...RUN, maxOutputBytes: 8 << 20 }, model, counting));
    assert.ok(chunks > 1, `streamed in ${chunks} chunks`);
    assert.deepEqual(model.tables, parseIptablesSave(text));
    assert.equal(model.tables[0]!.rules.length, 20000);
  });

  test('output that is not a dump stops the program at once with a ParseError', async () => {
    const file = join(dir, 'garbage.txt');
    await writeFile(file, 'Fatal: cannot initialize nf_tables\n');
    const started = Date.now();
    await assert.rejects(
      withEnv({ FAKE_SAVE_OUTPUT: file, FAKE_SAVE_AFTER: '5' }, () => readTableDump({ command: FAKE, table: 'mangle' }, { ...RUN, timeoutMs: 10000 }, new SaveModelBuilder())),
      (error: unknown) => error instanceof ParseError && /not an iptables-save line \(line 1/.test(error.message),
    );
    assert.ok(Date.now() - started < 3000, 'did not wait for the program to finish');
  });

  const failures: [string, Record<string, string>, string, Partial<typeof RUN>, RegExp][] = [
    ['a missing binary', {}, '/nonexistent/iptables-save', {}, /was not found: install iptables/],
    ['a non-zero exit', { FAKE_SAVE_EXIT: '4', FAKE_SAVE_STDERR: 'iptables-save: Permission denied' }, FAKE, {}, /exited with code 4: iptables-save: Permission denied; the agent needs CAP_NET_ADMIN/],
    ['a timeout', { FAKE_SAVE_SLEEP: '5' }, FAKE, { timeoutMs: 200 }, /did not finish within 200 ms.*collect\.timeoutMs/],
    ['too much output', {}, FAKE, { maxOutputBytes: 10 }, /printed more than 10 bytes: raise collect\.maxOutputBytes/],
  ];
  const kinds = ['missing_binary', 'exit_code', 'timeout', 'max_buffer'];
  failures.forEach(([name, env, command, options, message], i) => {
    test(`${name} becomes one DumpError of kind ${kinds[i]}`, async () => {
      const file = join(dir, 'big.txt');
      await writeFile(file, DUMP);
      await assert.rejects(
        withEnv({ FAKE_SAVE_OUTPUT: file, ...env }, () => readTableDump({ command, table: 'mangle' }, { ...RUN, ...options }, new SaveModelBuilder())),
        (error: unknown) => {
          assert.ok(error instanceof DumpError);
          assert.equal(error.code, kinds[i]);
          assert.match(error.message, message);
          return true;
        },
      );
    });
  });
});

/** Runs test/bin/run-save-command.ts (the real runner in its own process) under `wrapper`; its JSON outcome lines. */
async function runSaveCommandIn(wrapper: string[], command: string, ...flags: string[]): Promise<Record<string, unknown>[]> {
  const [file, ...args] = [...wrapper, process.execPath, '--import', 'tsx', 'test/bin/run-save-command.ts', command, ...flags];
  // A crash (an unhandled 'error' event) rejects here with the stack in the message.
  const { stdout } = await promisify(execFile)(file!, args, { timeout: 20_000 });
  return JSON.parse(stdout) as Record<string, unknown>[];
}

describe('spawn failures are DumpErrors, never a crash', () => {
  test('out of file descriptors (EMFILE): a DumpError saying so, the process lives on, and the next reading works', async () => {
    // Real: the helper opens loopback sockets until EMFILE under RLIMIT_NOFILE=256, then spawns
    // (64 was too few for the module loader: under tsx it opens many of execa's files at once, and once ran out before the test began).
    const [starved, after] = await runSaveCommandIn(['prlimit', '--nofile=256:256'], FAKE, '--exhaust-fds');
    assert.ok(Number(starved!.sockets) > 10, `opened ${starved!.sockets} connections first`);
    assert.equal(starved!.name, 'DumpError');
    assert.equal(starved!.code, 'spawn');
    assert.equal(starved!.causeCode, 'EMFILE');
    assert.match(String(starved!.message), /could not run .*fake-iptables-save/);
    assert.match(String(starved!.message), /out of file descriptors \(EMFILE\).*ulimit -n/);
    assert.deepEqual(after, { ok: true });
  });

  test('not executable (EACCES) is a DumpError that names the file', async () => {
    const file = join(dir, 'not-executable');
    await writeFile(file, '#!/bin/sh\n');
    await chmod(file, 0o644);
    await assert.rejects(readTableDump({ command: file, table: 'mangle' }, RUN, new SaveModelBuilder()), (error: unknown) => {
      assert.ok(error instanceof DumpError);
      assert.equal(error.code, 'spawn');
      assert.match(error.message, /not-executable -c -t mangle.*cannot be executed \(EACCES\)/);
      return true;
    });
  });

  test('file capabilities the container lacks (EPERM): the message says to add NET_ADMIN and NET_RAW', async (t) => {
    // Real: a copy of /bin/true with file capabilities cap_net_admin,cap_net_raw+ep, run from a process
    // whose bounding set lacks them (capsh --drop), is refused by execve with EPERM, as in a container
    // without cap_add. Needs root (setcap) and capsh.
    const tools = await Promise.all(['setcap', 'capsh'].map((tool) => promisify(execFile)('sh', ['-c', `command -v ${tool}`]).then(() => true, () => false)));
    const support = process.getuid?.() === 0 && tools.every(Boolean) ? { ok: true as const } : { ok: false as const, reason: 'needs root, setcap and capsh' };
    if (!labGate(support, t)) return;
    const capped = join(dir, 'capped-iptables-save');
    await copyFile('/bin/true', capped);
    await chmod(capped, 0o755);
    await promisify(execFile)('setcap', ['cap_net_admin,cap_net_raw+ep', capped]);
    const [result] = await runSaveCommandIn(['capsh', '--drop=cap_net_admin,cap_net_raw', '--', '-c', 'exec "$0" "$@"'], capped);
    assert.equal(result!.code, 'spawn');
    assert.equal(result!.causeCode, 'EPERM');
    assert.match(String(result!.message), /the kernel refused to run .*capped-iptables-save with its file capabilities \(EPERM\).*lacks NET_ADMIN or NET_RAW.*cap_add: \[NET_ADMIN, NET_RAW\]/);
  });
});

describe('a grandchild holding the output pipe', () => {
  const GRANDCHILD = resolve('test/bin/fake-save-leaving-grandchild');

  test('a complete dump from a save command that exited 0 is read within collect.timeoutMs', async (t) => {
    const file = join(dir, 'complete.txt');
    const pidFile = join(dir, 'grandchild.pid');
    await writeFile(file, DUMP);
    t.after(async () => {
      const pid = Number(await readFile(pidFile, 'utf8').catch(() => ''));
      if (pid > 0) process.kill(pid, 'SIGTERM');
    });
    const model = new SaveModelBuilder();
    const started = Date.now();
    await withEnv({ FAKE_SAVE_OUTPUT: file, FAKE_GRANDCHILD_PID_FILE: pidFile }, () =>
      readTableDump({ command: GRANDCHILD, table: 'mangle' }, { ...RUN, timeoutMs: 1000 }, model),
    );
    assert.ok(Date.now() - started < 1500, `read in ${Date.now() - started} ms, not the grandchild's 30 s`);
    assert.deepEqual(model.tables, parseIptablesSave(DUMP));
  });

  test('a truncated dump is still refused (the parser sees no COMMIT), within the timeout', async (t) => {
    const file = join(dir, 'truncated.txt');
    const pidFile = join(dir, 'grandchild2.pid');
    await writeFile(file, DUMP.replace('COMMIT\n', ''));
    t.after(async () => {
      const pid = Number(await readFile(pidFile, 'utf8').catch(() => ''));
      if (pid > 0) process.kill(pid, 'SIGTERM');
    });
    const started = Date.now();
    await assert.rejects(
      withEnv({ FAKE_SAVE_OUTPUT: file, FAKE_GRANDCHILD_PID_FILE: pidFile }, () =>
        readTableDump({ command: GRANDCHILD, table: 'mangle' }, { ...RUN, timeoutMs: 1000 }, new SaveModelBuilder()),
      ),
      /without COMMIT/,
    );
    assert.ok(Date.now() - started < 1500, `refused in ${Date.now() - started} ms`);
  });

  test('a hung save command whose grandchild holds the pipe is a timeout at collect.timeoutMs', async (t) => {
    const script = join(dir, 'hang-with-grandchild');
    const pidFile = join(dir, 'grandchild3.pid');
    // The child sleeps (a hung save command) after leaving a grandchild on the pipe.
    await writeFile(script, `#!/bin/sh\nsleep 30 &\necho $! > "${pidFile}"\nexec sleep 30\n`);
    await chmod(script, 0o755);
    t.after(async () => {
      const pid = Number(await readFile(pidFile, 'utf8').catch(() => ''));
      if (pid > 0) process.kill(pid, 'SIGTERM');
    });
    const started = Date.now();
    await assert.rejects(readTableDump({ command: script, table: 'mangle' }, { ...RUN, timeoutMs: 500 }, new SaveModelBuilder()), (error: unknown) => {
      assert.ok(error instanceof DumpError);
      assert.equal(error.code, 'timeout');
      return true;
    });
    assert.ok(Date.now() - started < 1000, `gave up in ${Date.now() - started} ms`);
  });
});

describe('collect.timeoutMs bounds a reading', () => {
  test('a save command that ignores SIGTERM is a timeout at collect.timeoutMs, not when it finally dies', async () => {
    const script = join(dir, 'ignores-sigterm');
    // Ignored signals stay ignored across exec; the sleep ends by itself in 3 s.
    await writeFile(script, `#!/bin/sh\ntrap '' TERM\nexec sleep 3\n`);
    await chmod(script, 0o755);
    const started = Date.now();
    await assert.rejects(readTableDump({ command: script, table: 'mangle' }, { ...RUN, timeoutMs: 300 }, new SaveModelBuilder()), (error: unknown) => {
      assert.ok(error instanceof DumpError);
      assert.equal(error.code, 'timeout');
      return true;
    });
    assert.ok(Date.now() - started < 1000, `gave up in ${Date.now() - started} ms`);
  });
});

describe('Collector', () => {
  const users = buildMarkMap({ source: 't', users: [{ user_code: 'alice', user_intra_ip: '10.8.0.2' }], marks: [] });
  const roots = { rx: ['PREROUTING'], tx: ['POSTROUTING'] };
  const source = (name: string, command: string, runner: CommandRunner) => new IptablesSource(name, saveCommandDump(command, 'mangle', RUN, runner), { table: 'mangle', roots, remember: true });

  test('output that is not a dump is a ParseError; the totals keep their values; the next good reading counts', async () => {
    let output = DUMP;
    const runner: CommandRunner = async (_f, _a, _o, onOutput) => onOutput(output);
    const acc = new Accumulator();
    acc.setUsers(users, 0);
    const collector = new Collector([source('ipv4', 'iptables-save', runner)], acc, () => users);
    const [first] = await collector.collect();
    assert.ok(first?.ok);
    const alice = () => [...acc.users()][0]!.totals;
    assert.equal(alice().rxPackets, 7);

    output = 'iptables-save: some garbage\n';
    const [second] = await collector.collect();
    assert.ok(second && !second.ok);
    assert.ok(second.error instanceof ParseError);
    assert.match(second.error.message, /not an iptables-save line \(line 1/);
    assert.equal(alice().rxPackets, 7);

    // A truncated dump (no COMMIT) is refused too: a partial read never counts.
    output = DUMP.replace('COMMIT\n', '');
    const [third] = await collector.collect();
    assert.ok(third && !third.ok);
    assert.match(third.error.message, /without COMMIT/);

    output = DUMP.replace('[7:588]', '[9:756]');
    await collector.collect();
    assert.equal(alice().rxPackets, 9);
    assert.equal(alice().rxBytes, 756);
  });

  test('one failing source does not stop the other', async () => {
    const acc = new Accumulator();
    acc.setUsers(users, 0);
    const failing: CommandRunner = async () => {
      throw new DumpError('missing_binary', 'ip6tables-save', 'ip6tables-save was not found');
    };
    const collector = new Collector([source('ipv4', 'x', async (_f, _a, _o, onOutput) => onOutput(DUMP)), source('ipv6', 'y', failing)], acc, () => users);
    const reports = await collector.collect();
    assert.deepEqual(
      reports.map((r) => [r.source, r.ok]),
      [
        ['ipv4', true],
        ['ipv6', false],
      ],
    );
    assert.equal([...acc.users()][0]!.totals.rxPackets, 7);
  });
});
