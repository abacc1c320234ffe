/**
 * `npm run demo`: it starts, shows every demo user with a non-zero rate
 * within a few seconds, and Ctrl-C (SIGINT to its process group) leaves no
 * namespace and no process behind.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { requireLab } from '../lab/gate.js';

const run = promisify(execFile);

test('the demo shows every demo user with traffic, and Ctrl-C removes everything it made', { timeout: 60_000 }, async (t) => {
  if (!(await requireLab(t))) return;
  if (!existsSync(resolve('dist/demo/demo.js'))) throw new Error('dist/demo/demo.js is missing: run npm run build first (npm test does)');
  const demo = spawn(process.execPath, ['dist/demo/demo.js'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  demo.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const active = new Set<string>();
  createInterface({ input: demo.stdout }).on('line', (line) => {
    const row = /^(alice|bob|carol|dave)\s+\S+\s+(\S+)\s+(\S+)/.exec(line);
    if (row && parseFloat(row[2]!) > 0 && parseFloat(row[3]!) > 0) active.add(row[1]!);
  });
  const exited = new Promise<number | null>((done) => demo.once('exit', (code) => done(code)));
  try {
    for (let i = 0; i < 60 && active.size < 4; i++) await sleep(250);
    assert.deepEqual([...active].sort(), ['alice', 'bob', 'carol', 'dave'], stderr);
  } finally {
    process.kill(-demo.pid!, 'SIGINT'); // what Ctrl-C does in a terminal
  }
  assert.equal(await Promise.race([exited, sleep(20_000).then(() => 'timeout')]), 0, stderr);
  const { stdout: namespaces } = await run('ip', ['netns', 'list']);
  assert.doesNotMatch(namespaces, new RegExp(`mmlab-${demo.pid}-`), 'no namespace left');
  const left = await run('pgrep', ['-f', 'markmeter-demo-|dist/demo/demo.js']).then((r) => r.stdout.trim(), () => '');
  assert.equal(left, '', 'no process left');
});
