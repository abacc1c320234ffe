import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Accumulator } from '../../src/attribution/accumulator.js';
import { buildMarkMap } from '../../src/attribution/mark-map.js';
import { Collector, commandSource } from '../../src/collector.js';
import { DumpError, ParseError } from '../../src/errors.js';
import { execaRunner, readTableDump, type CommandRunner } from '../../src/mangle/dump.js';
import { parseIptablesSave, SaveModelBuilder } from '../../src/mangle/parse.js';

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

describe('Collector', () => {
  const users = buildMarkMap({ source: 't', users: [{ user_code: 'alice', user_intra_ip: '10.8.0.2' }], marks: [] });
  const roots = { rx: ['PREROUTING'], tx: ['POSTROUTING'] };

  test('output that is not a dump is a ParseError; the totals keep their values; the next good reading counts', async () => {
    let output = DUMP;
    const runner: CommandRunner = async (_f, _a, _o, onOutput) => onOutput(output);
    const acc = new Accumulator();
    acc.setUsers(users.users, 0);
    const collector = new Collector([commandSource('ipv4', 'iptables-save', 'mangle', RUN, runner)], { table: 'mangle', roots }, acc, () => users);
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
    acc.setUsers(users.users, 0);
    const failing: CommandRunner = async () => {
      throw new DumpError('missing_binary', 'ip6tables-save', 'ip6tables-save was not found');
    };
    const collector = new Collector(
      [commandSource('ipv4', 'x', 'mangle', RUN, async (_f, _a, _o, onOutput) => onOutput(DUMP)), commandSource('ipv6', 'y', 'mangle', RUN, failing)],
      { table: 'mangle', roots },
      acc,
      () => users,
    );
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
