/**
 * Runs work written as a generator (it yields where it may pause) in slices of
 * about SLICE_MS, with a setImmediate between slices: timers, I/O and readings
 * due meanwhile run there. The work's state stays inside the generator, so
 * nothing outside sees it half done.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';

/** How long one slice may hold the event loop. */
export const SLICE_MS = 8;

/** `onPause` is told before each pause: the work is large, and others get their turn now. */
export async function inSlices<T>(steps: Generator<void, T>, onPause: () => void = () => {}, sliceMs = SLICE_MS): Promise<T> {
  let began = performance.now();
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    if (performance.now() - began >= sliceMs) {
      onPause();
      await nextTurn();
      began = performance.now();
    }
  }
}
