/**
 * The sidecar's namespace left behind (issue item: after the tunnel client
 * restarts, markmeter kept reading the dead namespace while /readyz stayed
 * ready). The gateway namespace stands for the client's container: its veths
 * are the container's network endpoints, a tun device stands for a wg0 that
 * outlives the client (a kernel WireGuard device lives as long as its
 * namespace, which markmeter holds), `sleep` is the tunnel client. A container
 * stop ends the client and takes the endpoints out of the namespace (Docker
 * moves them back to the host and deletes the veth pair); the real agent then
 * exits non-zero saying why. A client restarted inside a live namespace does
 * not make it exit.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { endProcess, type Lab } from '../../src/demo/netns.js';
import { CLI, withCliLab } from './cli-lab.js';

const INTERVAL_MS = 200;

/** The client's side of the gateway namespace, then markmeter in it; returns the agent and its output so far. */
async function sidecar(lab: Lab, dir: string, settings: object = {}) {
  await lab.exec(lab.ns.gw, 'ip', ['tuntap', 'add', 'dev', 'wg0', 'mode', 'tun']);
  await lab.exec(lab.ns.gw, 'ip', ['link', 'set', 'wg0', 'up']);
  await lab.exec(lab.ns.gw, 'iptables', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', '10.8.0.2', '-j', 'MARK', '--set-mark', '101']);
  const client = lab.spawn(lab.ns.gw, 'sleep', ['600']);
  const file = join(dir, 'settings.json');
  await writeFile(file, JSON.stringify({ collect: { intervalMs: INTERVAL_MS }, interfaces: { names: ['wg0'] }, health: { listen: '' }, iptables: { ipv6: false }, ...settings }));
  const agent = lab.spawn(lab.ns.gw, process.execPath, [CLI, 'run', '--config', file], { env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' } });
  const output = { text: '' };
  agent.stdout!.on('data', (chunk: Buffer) => (output.text += chunk.toString()));
  agent.stderr!.on('data', (chunk: Buffer) => (output.text += chunk.toString()));
  for (let waited = 0; !output.text.includes('markmeter starting') && waited < 10_000; waited += 50) await sleep(50);
  await sleep(4 * INTERVAL_MS);
  return { client, agent, output };
}

/** What a container stop does to the namespace markmeter holds: the client ends, its endpoints leave. */
async function stopContainer(lab: Lab, client: ChildProcess): Promise<void> {
  await endProcess(client);
  await lab.exec(lab.ns.users, 'ip', ['link', 'del', 'u0']);
  await lab.exec(lab.ns.far, 'ip', ['link', 'del', 'f0']);
}

test('the client container stops: markmeter exits 1 within a few readings, saying why', async (t) => {
  await withCliLab(t, async (lab, dir) => {
    const { client, agent, output } = await sidecar(lab, dir);
    try {
      assert.equal(agent.exitCode, null, output.text);
      const stoppedAt = Date.now();
      const exited = once(agent, 'exit');
      await stopContainer(lab, client);
      const [code] = (await Promise.race([exited, sleep(8000).then(() => [undefined])])) as [number | undefined];
      assert.equal(code, 1, output.text);
      assert.ok(Date.now() - stoppedAt < 8000);
      assert.match(output.text, /"level":"error","msg":"the network namespace was left behind: gf0, gu0 are gone and no Ethernet link has been up for 3 readings \(left: [^)]*wg0[^)]*\).*restart policy/);
    } finally {
      await endProcess(agent);
    }
  });
});

test('the client restarts inside a live namespace (wg0 gone and back): markmeter keeps running', async (t) => {
  await withCliLab(t, async (lab, dir) => {
    const { client, agent, output } = await sidecar(lab, dir);
    try {
      await endProcess(client);
      await lab.exec(lab.ns.gw, 'ip', ['link', 'del', 'wg0']);
      await sleep(6 * INTERVAL_MS);
      await lab.exec(lab.ns.gw, 'ip', ['tuntap', 'add', 'dev', 'wg0', 'mode', 'tun']);
      lab.spawn(lab.ns.gw, 'sleep', ['600']);
      await sleep(6 * INTERVAL_MS);
      assert.equal(agent.exitCode, null, output.text);
      assert.doesNotMatch(output.text, /left behind/);
    } finally {
      await endProcess(agent);
    }
  });
});

test('namespace.exitWhenOrphaned false: the agent keeps running after the container stops', async (t) => {
  await withCliLab(t, async (lab, dir) => {
    const { client, agent, output } = await sidecar(lab, dir, { namespace: { exitWhenOrphaned: false } });
    try {
      await stopContainer(lab, client);
      await sleep(10 * INTERVAL_MS);
      assert.equal(agent.exitCode, null, output.text);
      assert.doesNotMatch(output.text, /left behind/);
    } finally {
      await endProcess(agent);
    }
  });
});
