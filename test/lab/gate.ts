/**
 * Whether a kernel-level test runs, and a lab per test (the lab itself is src/demo/netns.ts, which
 * the demo and the fixture captures use too).
 *
 *   requireLab(t)   true when a lab can be built; otherwise THROWS in CI (CI set, not 'false'/'0':
 *                   CI never skips kernel tests), elsewhere skips the test with a loud message
 *   labGate(support, t, ci?)   that decision for a given support result
 *   withLab(t, fn)  requireLab, a fresh lab for fn, destroyed afterwards (also when fn throws)
 */
import type { TestContext } from 'node:test';
import { Lab, labSupport, type LabSupport } from '../../src/demo/netns.js';

/** True when running in CI: CI set to anything but '', 'false' or '0'. */
export function inCI(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

export interface GateTarget {
  name?: string;
  skip?: (message?: string) => void;
}

/** `t` is a test's context (skipped) or anything with a name (e.g. for a suite's before hook). */
export async function requireLab(t?: GateTarget): Promise<boolean> {
  return labGate(await labSupport(), t);
}

/** requireLab's decision for a given support result: true, throw (CI), or skip loudly. */
export function labGate(support: LabSupport, t?: GateTarget, ci = inCI()): boolean {
  if (support.ok) return true;
  const what = t?.name ? `"${t.name}"` : 'kernel-level test';
  if (ci) throw new Error(`kernel-level test ${what} cannot run in CI: ${support.reason}`);
  process.stderr.write(`\n!!! SKIPPING ${what}: ${support.reason} (in CI this fails) !!!\n\n`);
  t?.skip?.(support.reason);
  return false;
}

/** Runs `fn` with a fresh lab and always destroys it; resolves undefined when the test was skipped. */
export async function withLab<T>(t: TestContext, fn: (lab: Lab) => Promise<T>): Promise<T | undefined> {
  if (!(await requireLab(t))) return undefined;
  const lab = await Lab.create();
  let failed = false;
  try {
    return await fn(lab);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    try {
      await lab.destroy();
    } catch (error) {
      if (!failed) throw error;
      t.diagnostic(`destroying the lab also failed: ${(error as Error).message}`);
    }
  }
}
