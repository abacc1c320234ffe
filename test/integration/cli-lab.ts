/**
 * For tests that run the built CLI inside a lab namespace: a fresh lab and a
 * temporary folder (for users documents and the like), both removed after
 * `fn`, also when it fails. Skips or fails like requireLab when the lab cannot run.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import type { Lab } from '../../src/demo/netns.js';
import { withLab } from '../lab/gate.js';
import { NamespacedReceiver } from '../lab/otlp-receiver.js';

export const CLI = resolve('dist/cli.js');

export function withCliLab(t: TestContext, fn: (lab: Lab, dir: string) => Promise<void>): Promise<void | undefined> {
  return withLab(t, async (lab) => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
    const dir = await mkdtemp(join(tmpdir(), 'markmeter-cli-lab-'));
    try {
      await fn(lab, dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

/** The real agent (`markmeter run` with `settings`) in the lab's gateway, pushing every 300 ms to a receiver there; its log kept. */
export async function startAgent(lab: Lab, dir: string, settings: object) {
  const file = join(dir, 'agent.json');
  await writeFile(file, JSON.stringify(settings));
  const receiver = await NamespacedReceiver.start(lab, lab.ns.gw);
  const agent = lab.spawn(lab.ns.gw, process.execPath, [CLI, 'run', '--config', file], {
    env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_METRIC_EXPORT_INTERVAL: '300', OTEL_METRIC_EXPORT_TIMEOUT: '300' },
  });
  let log = '';
  agent.stdout!.on('data', (chunk: Buffer) => (log += chunk.toString()));
  agent.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
  return { receiver, agent, log: () => log };
}
