/** Small waits the unit tests share: polling for a condition, and a loopback port free a moment ago. */
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

/** Waits (polling every 10 ms) until `condition` holds; throws naming `what` after `timeoutMs`. */
export async function until(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A loopback port free a moment ago (nothing listens there now; for listeners that take a fixed address). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
