/**
 * The agent process and its signals, without root: a fake save command prints
 * a fixture, the users document is served over HTTP with a long poll interval,
 * so only SIGHUP can make the agent see a change in time.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

const CLI = resolve('dist/cli.js');

test('SIGHUP reloads the users document at once; SIGTERM exits 0', { timeout: 30_000 }, async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
  let users = ['alice'];
  const server = createServer((_request, response) => {
    const body = JSON.stringify({ users: users.map((code, i) => ({ user_code: code, user_intra_ip: `10.8.0.${i + 2}` })) });
    response.writeHead(200, { etag: `"${users.length}"` }).end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const agent = spawn(process.execPath, [CLI, 'run'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      MARKMETER_USERS_URL: `http://127.0.0.1:${(server.address() as { port: number }).port}/users.json`,
      MARKMETER_USERS_POLL_MS: '600000',
      MARKMETER_IPTABLES_SAVE: resolve('test/bin/fake-iptables-save'),
      FAKE_SAVE_OUTPUT: resolve('test/fixtures/nft-v4-users.iptables-save'),
      MARKMETER_IPV6: 'false',
      MARKMETER_INTERFACES: 'none0',
      MARKMETER_HEALTH_LISTEN: '',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
    },
  });
  let log = '';
  agent.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
  agent.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const waitForLog = async (pattern: RegExp) => {
    for (let i = 0; i < 100 && !pattern.test(log); i++) await sleep(100);
    assert.match(log, pattern);
  };
  try {
    await waitForLog(/"msg":"users document loaded".*"users":1/);
    users = ['alice', 'bob'];
    agent.kill('SIGHUP');
    await waitForLog(/SIGHUP received/);
    await waitForLog(/"msg":"users document loaded".*"users":2/);
    agent.kill('SIGTERM');
    const [code] = (await once(agent, 'exit')) as [number | null];
    assert.equal(code, 0, log.slice(-2000));
  } finally {
    if (agent.exitCode === null) agent.kill('SIGKILL');
    server.closeAllConnections();
    server.close();
  }
});
