import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { resolve } from 'node:path';
import { BackendSelector, chooseBackend, countTable, detectBackend, type BackendChoice } from '../../src/sources/iptables/backend.js';
import type { CommandRunner } from '../../src/sources/iptables/save-command.js';

const RUN = { timeoutMs: 1000, maxOutputBytes: 1 << 20 };
const table = (rules: number) =>
  `*mangle\n:PREROUTING ACCEPT [0:0]\n${Array.from({ length: rules }, (_, i) => `[0:0] -A PREROUTING -d 10.8.0.${i + 2}/32 -j MARK --set-xmark 0x${i + 1}/0xffffffff`).join('\n')}\nCOMMIT\n`;

/** A runner whose two backends hold the given numbers of rules (undefined: the binary is missing). */
function backends(nft: number | undefined, legacy: number | undefined, calls: string[] = []): CommandRunner {
  return async (file, _args, _options, onOutput) => {
    calls.push(file);
    const rules = file.includes('legacy') ? legacy : nft;
    if (rules === undefined) throw new Error(`${file} was not found`);
    onOutput(table(rules));
  };
}

describe('chooseBackend', () => {
  const cases: [number | undefined, number | undefined, 'nft' | 'legacy', RegExp][] = [
    [0, 4, 'legacy', /legacy table holds more rules \(nft: 0 rules, legacy: 4 rules\)/],
    [4, 0, 'nft', /nft table holds at least as many rules/],
    [3, 3, 'nft', /at least as many/],
    [0, 0, 'nft', /both tables are empty/],
    [undefined, 2, 'legacy', /nft: cannot be read/],
    [2, undefined, 'nft', /legacy: cannot be read/],
    [undefined, undefined, 'nft', /neither backend can be read/],
  ];
  for (const [nft, legacy, backend, reason] of cases) {
    test(`nft ${nft}, legacy ${legacy}: ${backend}`, () => {
      const choice = chooseBackend({ nft, legacy });
      assert.equal(choice.backend, backend);
      assert.match(choice.reason, reason);
    });
  }
});

describe('detectBackend and BackendSelector', () => {
  test('detection counts the mangle rules each backend prints', async () => {
    const choice = await detectBackend('mangle', RUN, backends(1, 5));
    assert.deepEqual(choice.rules, { nft: 1, legacy: 5 });
    assert.equal(choice.backend, 'legacy');
  });

  test('a fixed backend is never detected', async () => {
    const calls: string[] = [];
    const selector = new BackendSelector('legacy', () => detectBackend('mangle', RUN, backends(9, 0, calls)), () => {});
    assert.equal(await selector.command('ipv4'), 'iptables-legacy-save');
    assert.equal(await selector.command('ipv6'), 'ip6tables-legacy-save');
    assert.deepEqual(calls, []);
  });

  test('auto detects once, logs the choice, and detects again when the chosen table came back empty', async () => {
    let legacy = 0;
    const choices: [BackendChoice, string | undefined][] = [];
    const selector = new BackendSelector(
      'auto',
      () => detectBackend('mangle', RUN, backends(0, legacy)),
      (choice, previous) => choices.push([choice, previous]),
      0,
    );
    assert.equal(await selector.command('ipv4'), 'iptables-nft-save');
    assert.equal(await selector.command('ipv6'), 'ip6tables-nft-save');
    assert.equal(choices.length, 1, 'detected once');
    // The tunnel client turns out to write legacy rules: the empty nft reading asks for a recheck.
    legacy = 3;
    selector.recheck();
    assert.equal(await selector.command('ipv4'), 'iptables-legacy-save');
    assert.equal(choices.length, 2);
    assert.equal(choices[1]![1], 'nft');
    assert.equal(selector.backend, 'legacy');
  });
});

describe('what detection keeps of each backend', () => {
  test('the MARK rules apart from the other rules', async () => {
    const withAccept = (rules: number) => table(rules).replace('COMMIT', '[0:0] -A PREROUTING -j ACCEPT\nCOMMIT');
    const runner: CommandRunner = async (file, _args, _options, onOutput) => onOutput(file.includes('legacy') ? withAccept(2) : withAccept(3));
    const choice = await detectBackend('mangle', RUN, runner);
    assert.deepEqual(choice.rules, { nft: 4, legacy: 3 });
    assert.deepEqual(choice.tables, { nft: { rules: 4, markRules: 3 }, legacy: { rules: 3, markRules: 2 } });
  });

  test("why a backend cannot be read: its save command's error, or a dump without the table", async () => {
    const runner: CommandRunner = async (file, _args, _options, onOutput) => {
      if (file.includes('legacy')) throw new Error(`${file} was not found: install iptables`);
      onOutput('*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n');
    };
    const choice = await detectBackend('mangle', RUN, runner);
    assert.deepEqual(choice.rules, { nft: undefined, legacy: undefined });
    assert.deepEqual(choice.tables, {
      nft: { error: 'iptables-nft-save printed no mangle table' },
      legacy: { error: 'iptables-legacy-save was not found: install iptables' },
    });
  });

  test('countTable runs any save command (iptables.saveCommand) and says why it failed', async () => {
    const fake = resolve('test/bin/fake-iptables-save');
    process.env.FAKE_SAVE_OUTPUT = resolve('test/fixtures/nft-v4-users.iptables-save');
    try {
      assert.deepEqual(await countTable(fake, 'mangle', RUN), { rules: 22, markRules: 12 });
      process.env.FAKE_SAVE_EXIT = '3';
      assert.match((await countTable(fake, 'mangle', RUN) as { error: string }).error, /fake-iptables-save -c -t mangle exited with code 3/);
    } finally {
      delete process.env.FAKE_SAVE_OUTPUT;
      delete process.env.FAKE_SAVE_EXIT;
    }
  });
});
