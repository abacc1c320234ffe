/**
 * The Prometheus recording rules and alerts in docker/prometheus/ checked and
 * unit-tested by Debian's promtool: the anomaly alert fires on a spike and
 * stays silent for an idle user and for steady traffic; the shaper drops
 * alert fires for sustained drops and not under its floors.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function promtool(t: { skip(message: string): void }): Promise<boolean> {
  try {
    await run('promtool', ['--version']);
    return true;
  } catch {
    const reason = 'promtool is not installed (apt-get install prometheus)';
    if (process.env.CI && !['false', '0'].includes(process.env.CI)) throw new Error(`cannot run in CI: ${reason}`);
    process.stderr.write(`\n!!! SKIPPING the promtool tests: ${reason} !!!\n\n`);
    t.skip(reason);
    return false;
  }
}

test('promtool check rules: the rules file is valid', async (t) => {
  if (!(await promtool(t))) return;
  const { stdout } = await run('promtool', ['check', 'rules', 'docker/prometheus/rules.yml']);
  assert.match(stdout, /SUCCESS: 13 rules found/);
});

test('promtool test rules: anomaly on a spike only; agent silence; collection errors; unattributed share; shaper drops over both floors only', async (t) => {
  if (!(await promtool(t))) return;
  const { stdout } = await run('promtool', ['test', 'rules', 'rules.test.yml'], { cwd: 'docker/prometheus' });
  assert.match(stdout, /SUCCESS/);
});
