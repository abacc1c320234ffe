/**
 * The reading path logs the iptables backend choice once per change (of the backend, or of why:
 * which tables are empty, hold rules or cannot be read), not at every re-detection of an empty table.
 */
import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { createLogger, type LogFields } from '../../src/log.js';
import { ReadingPath } from '../../src/reading-path.js';
import { loadSettings } from '../../src/settings.js';
import type { CommandRunner } from '../../src/sources/iptables/save-command.js';

const table = (rules: number) =>
  `*mangle\n:PREROUTING ACCEPT [0:0]\n${Array.from({ length: rules }, (_, i) => `[0:0] -A PREROUTING -d 10.8.0.${i + 2}/32 -j MARK --set-xmark 0x${i + 1}/0xffffffff`).join('\n')}\nCOMMIT\n`;

test('an empty table re-detected every 30 s logs its backend choice once; a new choice is logged again', async (t) => {
  // Date only: the selector's 30 s between re-detections passes at once; the readings' own timers run as usual.
  mock.timers.enable({ apis: ['Date'], now: Date.now() });
  t.after(() => mock.timers.reset());
  const rules = { nft: 0, legacy: 0 };
  const runner: CommandRunner = async (file, _args, _options, onOutput) => onOutput(table(file.includes('legacy') ? rules.legacy : rules.nft));
  const lines: LogFields[] = [];
  const keep = (line: string) => void lines.push(JSON.parse(line) as LogFields);
  const settings = loadSettings({ env: { MARKMETER_IPV6: 'false', MARKMETER_IPTABLES_BACKEND: 'auto', MARKMETER_USERS_FILE: '', MARKMETER_USERS_URL: '' } });
  const path = new ReadingPath({ settings, log: createLogger('info', {}, { out: keep, err: keep }), remember: true, runner });
  /** One reading; an empty one asks for a re-detection, as the agent does; then 30 s pass. */
  const reading = async () => {
    const [report] = await path.collect();
    if (report?.ok && report.rules === 0) path.backend.recheck();
    mock.timers.tick(30_001);
  };
  const choices = () => lines.filter((l) => /iptables backend/.test(String(l.msg))).map((l) => String(l.msg));

  for (let i = 0; i < 5; i++) await reading();
  assert.equal(choices().length, 1, choices().join('\n'));
  assert.match(choices()[0]!, /^reading the nft iptables backend: both tables are empty/);

  // The tunnel client writes legacy rules after all: a new choice, logged.
  rules.legacy = 2;
  for (let i = 0; i < 3; i++) await reading();
  assert.equal(choices().length, 2, choices().join('\n'));
  assert.match(choices()[1]!, /^reading the legacy iptables backend \(was nft\): the legacy table holds more rules/);
});
