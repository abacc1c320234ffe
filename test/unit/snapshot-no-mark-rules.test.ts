/** `markmeter snapshot` on a host without MARK rules: the zero rows come with a warning on stderr (still exit 0). */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A mangle table the tunnel client has not written to: rules, but none that marks. */
const NO_MARK_RULES = `*mangle
:PREROUTING ACCEPT [10:840]
:POSTROUTING ACCEPT [10:840]
[4:336] -A PREROUTING -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
`;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-no-mark-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function snapshot(dump: string): Promise<{ stdout: string; stderr: string }> {
  const input = join(dir, `${Math.random()}.iptables-save`);
  await writeFile(input, dump);
  // Exits 0 (execFile rejects otherwise).
  return run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'snapshot', '--input', input, '--format', 'json'], {
    env: { ...process.env, MARKMETER_LOG_LEVEL: 'warn', MARKMETER_USERS_FILE: '', MARKMETER_USERS_URL: '' },
  });
}

test('a reading without MARK rules prints its zero rows and warns on stderr', async () => {
  const { stdout, stderr } = await snapshot(NO_MARK_RULES);
  assert.deepEqual(JSON.parse(stdout).users, []);
  const warnings = stderr.trim().split('\n').map((line) => JSON.parse(line) as { level: string; msg: string });
  const warning = warnings.find((w) => /no MARK rule/.test(w.msg));
  assert.equal(warning?.level, 'warn', stderr);
  assert.match(warning!.msg, /found no MARK rule in the mangle table \(1 rule\)/);
});

test('a reading with MARK rules says nothing of the kind', async () => {
  const { stderr } = await snapshot(NO_MARK_RULES.replace('COMMIT', '[3:252] -A PREROUTING -d 10.8.0.2/32 -j MARK --set-xmark 0x65/0xffffffff\nCOMMIT'));
  assert.doesNotMatch(stderr, /no MARK rule/);
});
