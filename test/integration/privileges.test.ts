/**
 * `markmeter run` under no-new-privileges as a non-root user (Docker's
 * `security_opt: [no-new-privileges]` with the image's `node` user): its
 * start-up says why the readings will fail and what to do.
 */
import assert from 'node:assert/strict';
import { chmod } from 'node:fs/promises';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { endProcess } from '../../src/demo/netns.js';
import { CLI, withCliLab } from './cli-lab.js';

test('markmeter run under no-new-privileges warns at start, naming it and both ways out', async (t) => {
  await withCliLab(t, async (lab, dir) => {
    await chmod(dir, 0o755);
    const agent = lab.spawn(lab.ns.gw, 'setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--no-new-privs', process.execPath, CLI, 'run'], {
      env: { ...process.env, MARKMETER_HEALTH_LISTEN: '', MARKMETER_IPV6: 'false', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' },
    });
    let stderr = '';
    agent.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      for (let waited = 0; !/reading the ipv4 table failed/.test(stderr) && waited < 10_000; waited += 100) await sleep(100);
      const warning = stderr.split('\n').find((line) => line.includes('no-new-privileges is set'));
      assert.ok(warning, stderr);
      const record = JSON.parse(warning) as { level: string; msg: string; uid: number; no_new_privs: boolean };
      assert.equal(record.level, 'warn');
      assert.equal(record.uid, 65534);
      assert.equal(record.no_new_privs, true);
      assert.match(record.msg, /drop the no-new-privileges security option.*run as uid 0 .*cap_drop: \[ALL\], cap_add: \[NET_ADMIN, NET_RAW\]/);
    } finally {
      await endProcess(agent);
    }
  });
});
