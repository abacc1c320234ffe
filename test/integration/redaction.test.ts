/**
 * The agent (`markmeter run`) with credentials in users.url and a token: its
 * start-up line and the fetch errors it logs never show them.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { endProcess } from '../../src/demo/netns.js';
import { CLI, withCliLab } from './cli-lab.js';

test('markmeter run prints no credentials of users.url or users.token', async (t) => {
  await withCliLab(t, async (lab) => {
    const agent = lab.spawn(lab.ns.gw, process.execPath, [CLI, 'run'], {
      env: {
        ...process.env,
        // A closed port: every poll fails and is logged.
        MARKMETER_USERS_URL: 'http://user:secret@127.0.0.1:9/users',
        MARKMETER_USERS_TOKEN: 'tokensecret',
        MARKMETER_USERS_POLL_MS: '100',
        MARKMETER_COLLECT_INTERVAL_MS: '100',
        MARKMETER_HEALTH_LISTEN: '',
        MARKMETER_IPV6: 'false',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
      },
    });
    let out = '';
    agent.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    agent.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    try {
      for (let waited = 0; !/cannot be fetched/.test(out) && waited < 10_000; waited += 100) await sleep(100);
      assert.match(out, /"msg":"markmeter starting".*"users_source":"http:\/\/127\.0\.0\.1:9"/);
      assert.match(out, /users document http:\/\/127\.0\.0\.1:9\/users: cannot be fetched \(ECONNREFUSED\)/);
      agent.kill('SIGTERM');
      await once(agent, 'exit');
      assert.doesNotMatch(out, /secret/);
    } finally {
      await endProcess(agent);
    }
  });
});
