import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseListen, readiness, startHealthServer } from '../../src/sidecar/health.js';
import { LISTENER_LIMITS } from '../../src/shared/listener-limits.js';
import { assertCapAndIdle } from './listener-check.js';

describe('readiness', () => {
  const state = (last: number | undefined, users = true) => ({ lastSuccessAt: () => last, usersLoaded: () => users, collectIntervalMs: 5000 });
  test('ready when a reading succeeded within 3 collect intervals and users are loaded', () => {
    assert.deepEqual(readiness(state(100_000), 114_000), { ready: true });
  });
  test('not ready: no users, no reading yet, or the last reading too old', () => {
    assert.match((readiness(state(100_000, false), 100_000) as { reason: string }).reason, /no users document/);
    assert.match((readiness(state(undefined), 100_000) as { reason: string }).reason, /no reading/);
    assert.match((readiness(state(100_000), 116_000) as { reason: string }).reason, /16 s ago/);
  });
});

describe('health listener', () => {
  test('parses host:port, IPv6 in brackets; refuses the rest', () => {
    assert.deepEqual(parseListen('127.0.0.1:9469'), { host: '127.0.0.1', port: 9469 });
    assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
    assert.throws(() => parseListen('9469'), /host:port/);
    assert.throws(() => parseListen('localhost:70000'), /host:port/);
  });

  test('/healthz is 200; /readyz is 200 or 503 with the reason', async () => {
    let last: number | undefined;
    const server = await startHealthServer('127.0.0.1:0', { lastSuccessAt: () => last, usersLoaded: () => true, collectIntervalMs: 1000 });
    try {
      const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      const notReady = await fetch(`${base}/readyz`);
      assert.equal(notReady.status, 503);
      assert.match(((await notReady.json()) as { reason: string }).reason, /no reading/);
      last = Date.now();
      const ready = await fetch(`${base}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(await ready.json(), { status: 'ready' });
      assert.equal((await fetch(`${base}/metrics`)).status, 404);
    } finally {
      server.close();
    }
  });

  test('a port in use is one clear error naming the setting', async () => {
    const first = await startHealthServer('127.0.0.1:0', { lastSuccessAt: () => undefined, usersLoaded: () => false, collectIntervalMs: 1 });
    try {
      const port = (first.address() as { port: number }).port;
      await assert.rejects(startHealthServer(`127.0.0.1:${port}`, { lastSuccessAt: () => undefined, usersLoaded: () => false, collectIntervalMs: 1 }), /health\.listen 127\.0\.0\.1:\d+: listen EADDRINUSE/);
    } finally {
      first.close();
    }
  });

  test('connections past the cap are closed at once, idle ones after the idle timeout; /healthz answers after', async () => {
    const limits = { maxConnections: 4, idleTimeoutMs: 400, headersTimeoutMs: 400, requestTimeoutMs: 400 };
    const server = await startHealthServer('127.0.0.1:0', { lastSuccessAt: () => undefined, usersLoaded: () => true, collectIntervalMs: 1000 }, limits);
    try {
      const port = (server.address() as { port: number }).port;
      await assertCapAndIdle(port, 4, 400);
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    } finally {
      server.close();
    }
  });

  test('by default: 64 connections, idle ones closed after 5 s', async () => {
    const server = await startHealthServer('127.0.0.1:0', { lastSuccessAt: () => undefined, usersLoaded: () => true, collectIntervalMs: 1000 });
    try {
      assert.equal(server.maxConnections, LISTENER_LIMITS.maxConnections);
      assert.equal(server.timeout, 5000);
      assert.equal(server.headersTimeout, 5000);
    } finally {
      server.close();
    }
  });
});
