/**
 * service.instance.id as real agents export it: two `markmeter run` processes
 * started one after the other in one network namespace push the same id (a
 * restart starts no new series), an agent in another namespace (the lab's
 * gateway) pushes another, and OTEL_RESOURCE_ATTRIBUTES=service.instance.id=...
 * wins. Each agent pushes OTLP/JSON to a tiny receiver in its own namespace.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { endProcess, type Lab } from '../../src/demo/netns.js';
import { withLab } from '../lab/gate.js';

const CLI = resolve('dist/cli.js');

/** Listens on the namespace's loopback; prints {"port"} once, then {"id"} (the resource's service.instance.id) per push. */
const RECEIVER = `
const server = require('node:http').createServer((request, response) => {
  let body = '';
  request.setEncoding('utf8').on('data', (chunk) => (body += chunk)).on('end', () => {
    response.writeHead(200).end();
    const attribute = JSON.parse(body).resourceMetrics[0].resource.attributes.find((a) => a.key === 'service.instance.id');
    process.stdout.write(JSON.stringify({ id: attribute.value.stringValue }) + '\\n');
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: server.address().port }) + '\\n'));
`;

/** Where to start a process: this namespace, or a lab namespace. */
type Start = (file: string, args: string[], env: NodeJS.ProcessEnv) => ChildProcess;
const here: Start = (file, args, env) => spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
const inLab = (lab: Lab): Start => (file, args, env) => lab.spawn(lab.ns.gw, file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });

/** The first line of `child`'s stdout that `pick` accepts. */
function firstLine<T>(child: ChildProcess, pick: (line: Record<string, unknown>) => T | undefined, what: string): Promise<T> {
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`timed out waiting for ${what}`)), 15_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      const value = pick(parsed);
      if (value !== undefined) {
        clearTimeout(timer);
        done(value);
      }
    });
    child.once('exit', (code) => fail(new Error(`exited (${code}) before ${what}`)));
  });
}

/** Starts one agent, waits for its first push, ends it by PID: the id it logged at start and the id it exported. */
async function runAgentOnce(start: Start, env: Record<string, string> = {}): Promise<{ logged: unknown; exported: unknown }> {
  const receiver = start(process.execPath, ['-e', RECEIVER], process.env);
  let agent: ChildProcess | undefined;
  try {
    const port = await firstLine(receiver, (l) => l.port, 'the receiver to listen');
    const exported = firstLine(receiver, (l) => l.id, 'the first push');
    const base: NodeJS.ProcessEnv = { ...process.env };
    delete base.OTEL_RESOURCE_ATTRIBUTES;
    agent = start(process.execPath, [CLI, 'run'], {
      ...base,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json',
      MARKMETER_IPTABLES_SAVE: resolve('test/bin/fake-iptables-save'),
      FAKE_SAVE_OUTPUT: resolve('test/fixtures/nft-v4-users.iptables-save'),
      MARKMETER_IPV6: 'false',
      MARKMETER_USERS_FILE: '',
      MARKMETER_USERS_URL: '',
      MARKMETER_HEALTH_LISTEN: '',
      MARKMETER_INTERFACES: 'none0',
      ...env,
    });
    const logged = await firstLine(agent, (l) => (l.msg === 'markmeter starting' ? l.service_instance_id : undefined), 'the start-up line');
    return { logged, exported: await exported };
  } finally {
    if (agent) await endProcess(agent);
    await endProcess(receiver);
  }
}

test('service.instance.id: the same across restarts in one network namespace, another in another, OTEL_RESOURCE_ATTRIBUTES wins', { timeout: 120_000 }, async (t) => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
  await withLab(t, async (lab) => {
    const first = await runAgentOnce(here);
    const restarted = await runAgentOnce(here);
    assert.match(String(first.exported), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(first.logged, first.exported, 'the start-up line names the exported id');
    assert.equal(restarted.exported, first.exported, 'a restart keeps the id');

    const elsewhere = await runAgentOnce(inLab(lab));
    const elsewhereRestarted = await runAgentOnce(inLab(lab));
    assert.notEqual(elsewhere.exported, first.exported, 'another network namespace, another id');
    assert.equal(elsewhereRestarted.exported, elsewhere.exported);

    const named = await runAgentOnce(here, { OTEL_RESOURCE_ATTRIBUTES: 'service.instance.id=gw-paris-1' });
    assert.equal(named.exported, 'gw-paris-1');
    assert.equal(named.logged, 'gw-paris-1');
  });
});
