/**
 * Runs one save command through the real execa runner and prints the outcome
 * as one JSON line, then lingers a moment so that an 'error' event emitted
 * later (on the next tick) would still crash this process.
 *   node --import tsx test/bin/run-save-command.ts COMMAND [--exhaust-fds]
 * --exhaust-fds: first opens loopback sockets until EMFILE (run it under a low
 * RLIMIT_NOFILE), runs the command, then frees them and runs it once more.
 */
import { connect, createServer, type Socket } from 'node:net';
import { execaRunner } from '../../src/sources/iptables/save-command.js';

const [command = '', flag] = process.argv.slice(2);
const RUN = { timeoutMs: 2000, maxOutputBytes: 1 << 20 };

async function attempt(): Promise<Record<string, unknown>> {
  try {
    await execaRunner(command, [], RUN, () => {});
    return { ok: true };
  } catch (error) {
    const e = error as { name?: string; code?: string; failure?: string; message?: string; cause?: { code?: string } };
    return { ok: false, name: e.name, code: e.code, failure: e.failure, message: e.message, causeCode: e.cause?.code };
  }
}

async function exhaustFds(): Promise<Socket[]> {
  const server = createServer(() => {}).listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const port = (server.address() as { port: number }).port;
  const sockets: Socket[] = [];
  for (;;) {
    const socket = connect(port, '127.0.0.1');
    const opened = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
    if (!opened) return sockets;
    sockets.push(socket);
  }
}

// Warm up: execa loads some of its modules on first use, which needs descriptors.
await execaRunner('/bin/true', [], RUN, () => {});
const results: Record<string, unknown>[] = [];
if (flag === '--exhaust-fds') {
  const sockets = await exhaustFds();
  results.push({ sockets: sockets.length, ...(await attempt()) });
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
}
results.push(await attempt());
await new Promise((resolve) => setTimeout(resolve, 300));
process.stdout.write(`${JSON.stringify(results)}\n`, () => process.exit(0));
