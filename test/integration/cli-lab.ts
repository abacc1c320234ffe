/**
 * For tests that run the built CLI inside a lab namespace: a fresh lab and a
 * temporary folder (for users documents and the like), both removed after
 * `fn`, also when it fails. Skips or fails like requireLab when the lab cannot run.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import type { Lab } from '../../src/demo/netns.js';
import { withLab } from '../lab/gate.js';

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
