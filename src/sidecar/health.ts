/**
 * The health listener (`health.listen`): `/healthz` answers while the process
 * lives; `/readyz` answers 200 only when a reading succeeded within the last
 * three collect intervals and a users mapping is loaded, else 503 with the
 * reason as JSON (what a Docker HEALTHCHECK or a Kubernetes probe reads).
 * Connections are capped and idle ones closed (see listener-limits.ts).
 */
import type { Server } from 'node:http';
import { createLimitedServer, LISTENER_LIMITS, type ListenerLimits } from '../shared/listener-limits.js';

export interface Readiness {
  /** ms since epoch of the last successful reading of every source, or undefined. */
  lastSuccessAt(): number | undefined;
  usersLoaded(): boolean;
  collectIntervalMs: number;
}

/** Pure: ready or the reason why not. */
export function readiness(state: Readiness, now: number): { ready: true } | { ready: false; reason: string } {
  if (!state.usersLoaded()) return { ready: false, reason: 'no users document loaded yet: check users.file / users.url' };
  const last = state.lastSuccessAt();
  const window = 3 * state.collectIntervalMs;
  if (last === undefined) return { ready: false, reason: 'no reading of the mangle table has succeeded yet' };
  if (now - last > window) return { ready: false, reason: `the last successful reading was ${Math.round((now - last) / 1000)} s ago (more than 3 collect intervals)` };
  return { ready: true };
}

/** Parses `host:port` ([v6]:port too); port 0 picks a free one. */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new Error(`health.listen must be host:port (e.g. 127.0.0.1:9469), got ${JSON.stringify(text)}`);
  return { host: match[1] ?? match[2]!, port };
}

export async function startHealthServer(listen: string, state: Readiness, limits: ListenerLimits = LISTENER_LIMITS): Promise<Server> {
  const { host, port } = parseListen(listen);
  const server = createLimitedServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/healthz') {
      response.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"alive"}\n');
    } else if (path === '/readyz') {
      const result = readiness(state, Date.now());
      const body = result.ready ? { status: 'ready' } : { status: 'not ready', reason: result.reason };
      response.writeHead(result.ready ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
    } else {
      response.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found: try /healthz or /readyz"}\n');
    }
  }, limits);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(new Error(`health.listen ${listen}: ${(error as Error).message}`, { cause: error })));
    server.listen(port, host, resolve);
  });
  server.unref();
  return server;
}
